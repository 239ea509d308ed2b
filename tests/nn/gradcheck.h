// Finite-difference gradient checks for quant::nn layers (test helper): the
// original string-returning form, now a thin wrapper of CheckGradients in
// tests/nn/gradient_check.h (prefer that for new tests: multi-input ops, input
// ranges, kinks, gtest AssertionResult).
//
// For a layer f and a fixed random upstream gradient G, the scalar
// L = sum(G * f(x)) is evaluated in double from the layer's float outputs.
// The analytic gradients (Backward with dy = G) of x and of every parameter
// are compared with central differences (L(v + h) - L(v - h)) / 2h, h = 5e-3,
// at every element (or a deterministic sample of 200 for large tensors):
//   |numeric - analytic| <= 2e-3 + 2e-2 * |numeric|.
// The float32 forward makes the numeric value noisy at the 1e-4 level; the
// tolerance is 10x that, and a wrong gradient (sign, factor, index) is off by
// O(1).
#ifndef TESTS_NN_GRADCHECK_H_
#define TESTS_NN_GRADCHECK_H_

#include <functional>
#include <string>

#include "quant/nn/conv2d.h"
#include "quant/nn/layer.h"
#include "tests/nn/gradient_check.h"

namespace quant::nn::testing {

// The engine's options (gradient_check.h), plus whether to check d/dx.
struct GradCheckOptions : GradientCheckOptions {
  bool check_input = true;
};

// Returns "" when every checked gradient matches, else a description of the
// first mismatches. `x` is [B, ...sample]; the layer must be built.
std::string GradCheck(Layer& layer, Tensor x, uint64_t seed, const GradCheckOptions& options = {});

// Random tensor U(-1, 1) from a seed.
Tensor RandomTensor(const Shape& shape, uint64_t seed);

// Same shape and the same bits (NaNs and signed zeros included).
bool SameBits(const Tensor& a, const Tensor& b);

// A conv layer for tests that run each Conv2d path: its options, the input's
// height and width, and whether Winograd is on.
struct ConvLayerCase {
  const char* what;
  Conv2dOptions o;
  int64_t hw;
  bool winograd;
};

}  // namespace quant::nn::testing

#endif  // TESTS_NN_GRADCHECK_H_
