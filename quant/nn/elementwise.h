// Layers without weights that act element by element or only reshape:
// Clamp (ReLU, ReLU6, Hardtanh), Flatten and Dropout.
#ifndef QUANT_NN_ELEMENTWISE_H_
#define QUANT_NN_ELEMENTWISE_H_

#include "quant/nn/layer.h"

namespace quant::nn {

// out[i] = min(hi, max(lo, in[i])) for i < n (in == out allowed): Clamp's forward
// formula, shared with the conv kernels that fuse it (Layer::SetOutputClamp).
// A NaN stays NaN.
void ClampValues(const float* in, float* out, int64_t n, float lo, float hi);
// out[i] = g[i] where lo < in[i] < hi, else +0 (i < n): Clamp's backward
// formula, shared with the conv that fuses it. The mask is the same whether
// `in` holds the clamp's input or its output (clamped values sit on a bound).
void ClampGradient(const float* in, const float* g, float* out, int64_t n, float lo, float hi);

// y = min(max(x, lo), hi); dy passes where lo < x < hi (PyTorch's hardtanh_backward;
// ReLU's gradient at 0 is 0 as in PyTorch). ReLU is hi = +inf, ReLU6 is [0, 6].
class Clamp : public Layer {
 public:
  enum class Kind { kReLU, kReLU6, kHardtanh };
  Clamp(std::string name, Kind kind, float lo = -1.0f, float hi = 1.0f);
  std::string Describe() const override;
  std::string type() const override;
  std::string name_prefix() const override;
  Kind kind() const { return kind_; }
  float lo() const { return lo_; }
  float hi() const { return hi_; }
  absl::StatusOr<Shape> Build(const Shape& input) override { return input; }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

 private:
  Kind kind_;
  float lo_, hi_;
};

// [C, H, W] -> [C*H*W], in PyTorch's (row-major) order.
class Flatten : public Layer {
 public:
  explicit Flatten(std::string name) : Layer(std::move(name)) {}
  std::string Describe() const override { return "Flatten()"; }
  std::string type() const override { return "flatten"; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

 private:
  int64_t features_ = 0;
};

// Training: zeroes each element with probability p and scales the rest by
// 1/(1-p) (inverted dropout, as PyTorch). Eval: identity. The mask stream is
// seeded from the model's seed at ResetParameters.
class Dropout : public Layer {
 public:
  Dropout(std::string name, float p) : Layer(std::move(name)), p_(p) {}
  std::string Describe() const override;
  std::string type() const override { return "dropout"; }
  float p() const { return p_; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void ResetParameters(Rng& rng) override { rng_ = Rng(rng.Next()); }
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

 private:
  float p_;
  Rng rng_{0};
  Tensor mask_;  // 0 or 1/(1-p); all ones in eval mode
};

}  // namespace quant::nn

#endif  // QUANT_NN_ELEMENTWISE_H_
