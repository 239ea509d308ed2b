// Model `resnet_mini`: a small ResNet (He et al. 2016, basic blocks) for
// 28x28 grey images, sized so that an fp32 epoch on Fashion-MNIST costs at most
// 3 `cnn` epochs. With the defaults (channels [16, 32, 64], one block per
// stage), for an input [C, 28, 28]:
//
//   stem        conv3x3(C -> 16, stride 1, pad 1, no bias) - stem_bn - stem_relu
//               - stem_pool (max pool 2x2)                                  [16, 14, 14]
//   stage s = 1, 2, 3 (channels 16, 32, 64), each block b = 1..blocks:
//     the first block of stages 2 and 3 has stride 2 (14 -> 7 -> 4), all others stride 1:
//     s{s}b{b}_conv1  conv3x3(stride, pad 1, no bias) - s{s}b{b}_bn1 - s{s}b{b}_relu1
//     s{s}b{b}_conv2  conv3x3(stride 1, pad 1, no bias) - s{s}b{b}_bn2
//     shortcut: identity, or where the shape changes (stride 2 or new width)
//               s{s}b{b}_proj conv1x1(stride, no bias) - s{s}b{b}_proj_bn
//     s{s}b{b}_add (bn2 + shortcut) - s{s}b{b}_relu2
//   gap         global average pool                                        [64]
//   fc          linear(64 -> classes)
//
// Every conv is followed by BatchNorm (momentum 0.1, eps 1e-5); PyTorch's
// default initialisation throughout (quant/nn/init.h). The same network in
// PyTorch: torchvision's BasicBlock with these widths, one block per stage, a
// 3x3 stride-1 stem with a 2x2 max pool, AdaptiveAvgPool2d(1) and a Linear head.
#ifndef QUANT_NN_RESNET_MINI_H_
#define QUANT_NN_RESNET_MINI_H_

#include <memory>
#include <vector>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class ResnetMini : public Model {
 public:
  ResnetMini(std::vector<int64_t> channels, int64_t blocks) : channels_(std::move(channels)), blocks_(blocks) {}
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "resnet_mini"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape& sample_shape, int num_classes) override;

 private:
  std::vector<int64_t> channels_;
  int64_t blocks_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_RESNET_MINI_H_
