#include "quant/nn/cnn.h"

#include "quant/core/registry.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"

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

absl::StatusOr<GraphSpec> Cnn::MakeGraph(const Shape&, int num_classes) {
  GraphSpec g;
  for (int64_t c : channels_) {
    g.Add(std::make_unique<Conv2d>("", Conv2dOptions{.out_channels = c, .kernel = 3, .stride = 1, .padding = 1}));
    if (batch_norm_) g.Add(std::make_unique<BatchNorm>("", /*spatial=*/true));
    g.Add(std::make_unique<Clamp>("", Clamp::Kind::kReLU));
    g.Add(std::make_unique<Pool2d>("", Pool2d::Kind::kMax, 2));
  }
  g.Add(std::make_unique<Flatten>(""));
  g.Add(std::make_unique<Linear>("", -1, hidden_));
  g.Add(std::make_unique<Clamp>("", Clamp::Kind::kReLU));
  g.Add(std::make_unique<Linear>("", -1, num_classes));
  return g;
}

QUANTLAB_REGISTER(Model, "cnn", Cnn::CreateCnn,
                  "2x [Conv3x3(pad 1)-ReLU-MaxPool2] (16, 32 ch) - Linear(.,128)-ReLU-Linear(128,classes)");
QUANTLAB_REGISTER(Model, "cnn_bn", Cnn::CreateCnnBn, "cnn with BatchNorm2d after each conv");

}  // namespace quant::nn
