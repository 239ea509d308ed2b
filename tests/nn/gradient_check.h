// Finite-difference checks of the backward pass of any quant::nn::Layer (test
// helper): single-input layers, multi-input ops (add, concat: through
// ForwardInputs/BackwardInputs) and layers with parameters (every entry of
// layer.parameters(), e.g. a conv's weight and bias).
//
// Method. The layer must already be built (Build/BuildInputs) for the inputs'
// sample shapes. With inputs x_i (random U(input_lo, input_hi) from `seed`, or
// given) and a random upstream gradient G ~ U(-1, 1) of the output's shape
// (from `seed`), the scalar L = sum(G * f(x)) is evaluated in double from the
// layer's float32 outputs. One Forward + Backward with dy = G gives the analytic
// gradients; each is compared, at every element (or a deterministic sample of
// max_points elements of larger tensors), with the central difference
//   numeric = (L(v + h) - L(v - h)) / ((v + h) - (v - h))   (the step actually taken in float)
// and must satisfy |numeric - analytic| <= atol + rtol * |numeric|.
// The defaults (h = 5e-3, atol = 2e-3, rtol = 2e-2) are 10x the noise that the
// float32 forward puts into the numeric value (~1e-4); a wrong gradient (sign,
// factor, index, missing term) is off by O(1). Ops with kinks (ReLU at 0,
// Hardswish at -3 and 3) are not differentiable there: list them in `kinks`.
//
// Usage:
//   Hardswish op("hs");
//   ASSERT_TRUE(op.Build({3, 8}).ok());
//   GradientCheckOptions o;  o.input_lo = -5; o.input_hi = 5; o.kinks = {-3, 3};
//   EXPECT_TRUE(CheckInputGradient(op, {2, 3, 8}, /*seed=*/1, o));
//   EXPECT_TRUE(CheckParameterGradients(conv, {2, 3, 8, 8}, 1));   // weight, bias
//   EXPECT_TRUE(CheckInputGradients(add, {{2, 4}, {2, 4}}, 1));     // both inputs
#ifndef TESTS_NN_GRADIENT_CHECK_H_
#define TESTS_NN_GRADIENT_CHECK_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "gtest/gtest.h"
#include "quant/core/tensor.h"
#include "quant/nn/layer.h"

namespace quant::nn::testing {

struct GradientCheckOptions {
  double h = 5e-3;
  double atol = 2e-3;
  double rtol = 2e-2;
  // Tensors with more elements are checked at this many deterministic points.
  int max_points = 200;
  // Range of the random inputs made from a shape.
  float input_lo = -1.0f;
  float input_hi = 1.0f;
  // Points where the op is not differentiable: a random input closer than 2h
  // to one of them is moved to 4h from it (on its side).
  std::vector<float> kinks;
  // Called before every forward (e.g. to replay a dropout mask).
  std::function<void()> before_forward;
};

// Checks d L / d input for random inputs of `input_shape` ([B, ...sample]).
::testing::AssertionResult CheckInputGradient(Layer& layer, const Shape& input_shape, uint64_t seed,
                                              const GradientCheckOptions& options = {});
// The same for every input of a multi-input op, one shape per input.
::testing::AssertionResult CheckInputGradients(Layer& layer, const std::vector<Shape>& input_shapes,
                                               uint64_t seed,
                                               const GradientCheckOptions& options = {});
// Checks d L / d parameter for every entry of layer.parameters() (the input
// gradient is not requested: dx is null, as for a graph's first layer).
::testing::AssertionResult CheckParameterGradients(Layer& layer, const Shape& input_shape,
                                                   uint64_t seed,
                                                   const GradientCheckOptions& options = {});
::testing::AssertionResult CheckParameterGradients(Layer& layer,
                                                   const std::vector<Shape>& input_shapes,
                                                   uint64_t seed,
                                                   const GradientCheckOptions& options = {});

// The general form on given inputs (options' input range and kinks unused):
// the input gradients when `check_inputs`, the parameters' when `check_parameters`.
::testing::AssertionResult CheckGradients(Layer& layer, std::vector<Tensor> inputs, uint64_t seed,
                                          bool check_inputs, bool check_parameters,
                                          const GradientCheckOptions& options = {});

// U(lo, hi) from `seed` (quant::nn::Rng), with values near `kinks` moved as above.
Tensor UniformTensor(const Shape& shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f,
                     const std::vector<float>& kinks = {}, double h = 5e-3);

}  // namespace quant::nn::testing

#endif  // TESTS_NN_GRADIENT_CHECK_H_
