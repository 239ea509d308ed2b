// Global average pooling (op `global_avg_pool`, nodes gap1, gap2, ...):
// [C, H, W] -> [C], the mean of each channel's plane. It is PyTorch's
// AdaptiveAvgPool2d(1) followed by flatten(1), the head of ResNet/MobileNet.
#ifndef QUANT_NN_GLOBAL_AVG_POOL_H_
#define QUANT_NN_GLOBAL_AVG_POOL_H_

#include <cstdint>
#include <string>

#include "quant/nn/layer.h"

namespace quant::nn {

// Forward: y[c] = sum(plane) / float(H * W) in float32, bit for bit as PyTorch
// 1.13 on one thread, which computes AdaptiveAvgPool2d(1) as x.mean((-1, -2)):
// a sum with its AVX2 kernel's order of partial sums (the CPU capability it
// picks here; its AVX-512 kernel groups 16 lanes and differs in the last bits),
// then a division by H * W.
// Backward: dx[c, h, w] = dy[c] / float(H * W), PyTorch's mean_backward bit for bit.
class GlobalAvgPool : public Layer {
 public:
  explicit GlobalAvgPool(std::string name) : Layer(std::move(name)) {}
  std::string Describe() const override { return "GlobalAvgPool()"; }
  std::string type() const override { return "global_avg_pool"; }
  std::string name_prefix() const override { return "gap"; }
  // [C, H, W] -> [C]; any other rank is InvalidArgument.
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  int64_t channels() const { return c_; }

 private:
  int64_t c_ = 0, h_ = 0, w_ = 0;
};

}  // namespace quant::nn

#endif  // QUANT_NN_GLOBAL_AVG_POOL_H_
