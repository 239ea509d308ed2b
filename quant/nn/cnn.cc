#include "quant/nn/cnn.h"

#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Model>> Cnn::Create(ParamReader& p, bool batch_norm) {
  std::vector<int64_t> channels =
      p.IntList("channels", {16, 32}, "output channels of the conv blocks (one block each)");
  const int64_t hidden = p.IntInRange("hidden", 128, 1, 1 << 20, "width of the hidden linear layer");
  if (!p.describing()) {
    if (channels.empty()) p.Fail("channels", "needs at least one conv block");
    for (int64_t c : channels) {
      if (c < 1) p.Fail("channels", "every channel count must be positive");
    }
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(new Cnn(batch_norm, std::move(channels), hidden));
}

absl::StatusOr<std::unique_ptr<Model>> Cnn::CreateCnn(ParamReader& p) { return Create(p, false); }
absl::StatusOr<std::unique_ptr<Model>> Cnn::CreateCnnBn(ParamReader& p) { return Create(p, true); }

absl::StatusOr<std::vector<LayerSpec>> Cnn::Specs(const Shape&, int num_classes) const {
  std::vector<LayerSpec> specs;
  for (int64_t c : channels_) {
    specs.push_back({.type = "conv2d", .out = c, .kernel = 3, .stride = 1, .padding = 1});
    if (batch_norm_) specs.push_back({.type = "batchnorm2d"});
    specs.push_back({.type = "relu"});
    specs.push_back({.type = "maxpool2d", .kernel = 2});
  }
  specs.push_back({.type = "flatten"});
  specs.push_back({.type = "linear", .out = hidden_});
  specs.push_back({.type = "relu"});
  specs.push_back({.type = "linear", .out = num_classes});
  return specs;
}

QUANTLAB_REGISTER(Model, "cnn", Cnn::CreateCnn,
                  "2x [Conv3x3(pad 1)-ReLU-MaxPool2] (16, 32 ch) - Linear(.,128)-ReLU-Linear(128,classes)");
QUANTLAB_REGISTER(Model, "cnn_bn", Cnn::CreateCnnBn, "cnn with BatchNorm2d after each conv");

}  // namespace quant::nn
