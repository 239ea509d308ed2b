// Model `mobilenet_mini`: a small MobileNetV2 (Sandler et al. 2018) for 28x28
// grey images. Inverted residual blocks: 1x1 expansion (t x channels) - BN -
// ReLU6, 3x3 depthwise (stride s) - BN - ReLU6, linear 1x1 projection - BN,
// and a residual add where stride is 1 and the width is unchanged. For an
// input [C, 28, 28] with the defaults (expansion 4):
//
//   stem       conv3x3(C -> 16, stride 2, pad 1, no bias) - stem_bn - stem_relu (ReLU6)   [16, 14, 14]
//   ir1 (t=1, 16 -> 16, s 1, residual): no expansion; ir1_dw, ir1_dw_bn, ir1_dw_relu,
//                                       ir1_project, ir1_project_bn, ir1_add               [16, 14, 14]
//   ir2 (t, 16 -> 24, s 2)              ir2_expand, _expand_bn, _expand_relu, _dw, ...      [24, 7, 7]
//   ir3 (t, 24 -> 24, s 1, residual)                                                       [24, 7, 7]
//   ir4 (t, 24 -> 32, s 2)                                                                 [32, 4, 4]
//   ir5 (t, 32 -> 32, s 1, residual)                                                       [32, 4, 4]
//   head       conv1x1(32 -> 128, no bias) - head_bn - head_relu (ReLU6)                   [128, 4, 4]
//   gap        global average pool                                                         [128]
//   fc         linear(128 -> classes)
//
// Depthwise convs are conv2d with groups = channels, pad 1; every conv is
// followed by BatchNorm (momentum 0.1, eps 1e-5); no ReLU6 after the
// projection (the "linear bottleneck"). The same network in PyTorch:
// torchvision's InvertedResidual with this table, a stride-2 3x3 stem,
// a 1x1 head conv to 128, AdaptiveAvgPool2d(1) and a Linear head (no dropout).
#ifndef QUANT_NN_MOBILENET_MINI_H_
#define QUANT_NN_MOBILENET_MINI_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class MobilenetMini : public Model {
 public:
  explicit MobilenetMini(int64_t expansion) : expansion_(expansion) {}
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "mobilenet_mini"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape& sample_shape, int num_classes) override;

 private:
  int64_t expansion_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_MOBILENET_MINI_H_
