#include "quant/nn/resnet_mini.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/nn/add.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/global_avg_pool.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Model>> ResnetMini::Create(ParamReader& p) {
  std::vector<int64_t> channels = p.IntList("channels", {16, 32, 64}, "widths of the stages (the stem has the first)");
  const int64_t blocks = p.IntInRange("blocks", 1, 1, 16, "basic blocks per stage");
  if (!p.describing()) {
    if (channels.empty()) p.Fail("channels", "needs at least one stage");
    for (int64_t c : channels) {
      if (c < 1 || c > 4096) p.Fail("channels", "every width must be in [1, 4096]");
    }
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(new ResnetMini(std::move(channels), blocks));
}

absl::StatusOr<GraphSpec> ResnetMini::MakeGraph(const Shape& sample_shape, int num_classes) {
  if (sample_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("resnet_mini needs images [C, H, W], the dataset gives ", ShapeToString(sample_shape)));
  }
  GraphSpec g;
  std::string x = AddConvBn(&g, "stem", "stem_bn", "input", channels_[0], 3, 1);
  g.Add(std::make_unique<Clamp>("stem_relu", Clamp::Kind::kReLU));
  g.Add(std::make_unique<Pool2d>("stem_pool", Pool2d::Kind::kMax, 2));
  x = "stem_pool";
  int64_t width = channels_[0];
  for (size_t s = 0; s < channels_.size(); ++s) {
    for (int64_t b = 0; b < blocks_; ++b) {
      const std::string p = absl::StrCat("s", s + 1, "b", b + 1, "_");
      const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      const int64_t out = channels_[s];
      AddConvBn(&g, p + "conv1", p + "bn1", x, out, 3, stride);
      g.Add(std::make_unique<Clamp>(p + "relu1", Clamp::Kind::kReLU));
      const std::string main = AddConvBn(&g, p + "conv2", p + "bn2", p + "relu1", out, 3, 1);
      std::string shortcut = x;
      if (stride != 1 || out != width) shortcut = AddConvBn(&g, p + "proj", p + "proj_bn", x, out, 1, stride);
      g.Add(std::make_unique<Add>(p + "add"), {main, shortcut});
      g.Add(std::make_unique<Clamp>(p + "relu2", Clamp::Kind::kReLU));
      x = p + "relu2";
      width = out;
    }
  }
  g.Add(std::make_unique<GlobalAvgPool>("gap"), {x});
  g.Add(std::make_unique<Linear>("fc", -1, num_classes));
  return g;
}

QUANTLAB_REGISTER(Model, "resnet_mini", ResnetMini::Create,
                  "small ResNet: 3x3 stem, stages of basic blocks (16, 32, 64 ch, stride 2 each), GAP, linear");

}  // namespace quant::nn
