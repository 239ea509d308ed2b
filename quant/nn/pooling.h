// MaxPool2d and AvgPool2d over NCHW, square windows, no padding, floor mode
// (PyTorch's defaults; stride defaults to the kernel size).
#ifndef QUANT_NN_POOLING_H_
#define QUANT_NN_POOLING_H_

#include <vector>

#include "quant/nn/layer.h"

namespace quant::nn {

class Pool2d : public Layer {
 public:
  enum class Kind { kMax, kAvg };
  // stride <= 0 means stride = kernel.
  Pool2d(std::string name, Kind kind, int64_t kernel, int64_t stride = 0);

  std::string Describe() const override;
  std::string type() const override { return kind_ == Kind::kMax ? "maxpool2d" : "avgpool2d"; }
  std::string name_prefix() const override { return "pool"; }
  Kind kind() const { return kind_; }
  int64_t kernel() const { return k_; }
  int64_t stride() const { return s_; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;

 private:
  void MaxPool2x2(const Tensor& x, Tensor* y);
  void MaxPool2x2Backward(const Tensor& dy, Tensor* dx);

  Kind kind_;
  int64_t k_, s_;
  int64_t c_ = 0, in_h_ = 0, in_w_ = 0, out_h_ = 0, out_w_ = 0;
  // Max pooling: index within its input plane of each output's maximum.
  std::vector<int32_t> argmax_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_POOLING_H_
