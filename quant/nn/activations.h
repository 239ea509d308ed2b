// Smooth and hard activations of MobileNet-style graphs: Hardswish, Sigmoid and
// Tanh (ops `hardswish`, `sigmoid`, `tanh`), element by element on any shape,
// with PyTorch 1.13's CPU formulas for forward and backward.
#ifndef QUANT_NN_ACTIVATIONS_H_
#define QUANT_NN_ACTIVATIONS_H_

#include <cstdint>
#include <string>

#include "quant/nn/layer.h"

namespace quant::nn {

// y = x * min(max(x + 3, 0), 6) / 6 (float32, in that order, bit for bit as
// PyTorch: x <= -3 gives -0, -inf gives NaN (-inf * 0), NaN stays NaN).
// dx = 0 for x < -3, dy for x >= 3, dy * (x / 3 + 0.5) otherwise (NaN for NaN):
// the AVX2 path of PyTorch 1.13's hardswish_backward, which computes all but
// the last (numel mod 16) elements of a contiguous tensor. Its scalar path (those
// last elements, and every element of a tensor of fewer than 16) differs at two
// points only: x == 3 gives 1.5 * dy and NaN gives dy. quantlab uses the vector
// path's values everywhere, so a gradient does not depend on an element's position.
// No fixed output qparams: PyTorch observes hardswish's output like any other.
class Hardswish : public Layer {
 public:
  explicit Hardswish(std::string name) : Layer(std::move(name)) {}
  std::string Describe() const override { return "Hardswish()"; }
  std::string type() const override { return "hardswish"; }
  absl::StatusOr<Shape> Build(const Shape& input) override { return input; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
};

// y = 1 / (1 + exp(-x)) in float32; dx = dy * (1 - y) * y from the output, as
// PyTorch's sigmoid_backward (bit for bit). The forward uses the C library's
// expf where PyTorch uses SLEEF's vectorised expf (1-ulp): outputs agree within
// 4 ulp (96 % identical over [-20, 20], measured against python3-torch 1.13.1).
// Fixed output qparams: scale 1/256, zero point 0, quint8 (PyTorch's
// default_fixed_qparams_range_0to1_observer).
class Sigmoid : public Layer {
 public:
  explicit Sigmoid(std::string name) : Layer(std::move(name)) {}
  std::string Describe() const override { return "Sigmoid()"; }
  std::string type() const override { return "sigmoid"; }
  absl::StatusOr<Shape> Build(const Shape& input) override { return input; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool fixed_output_qparams(float* scale, int32_t* zero_point, bool* is_signed) const override;
};

// y = tanh(x) in float32; dx = dy * fma(-y, y, 1) from the output, as PyTorch's
// tanh_backward (bit for bit: its kernel is built with FMA contraction, so 1 - y*y
// is rounded once). The forward uses the C library's tanhf where PyTorch
// uses SLEEF's (1-ulp): outputs agree within 2 ulp (95 % identical over [-20, 20]).
// Fixed output qparams: scale 2/256, zero point 128, quint8 (PyTorch's
// default_fixed_qparams_range_neg1to1_observer).
class Tanh : public Layer {
 public:
  explicit Tanh(std::string name) : Layer(std::move(name)) {}
  std::string Describe() const override { return "Tanh()"; }
  std::string type() const override { return "tanh"; }
  absl::StatusOr<Shape> Build(const Shape& input) override { return input; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  bool fixed_output_qparams(float* scale, int32_t* zero_point, bool* is_signed) const override;
};

}  // namespace quant::nn

#endif  // QUANT_NN_ACTIVATIONS_H_
