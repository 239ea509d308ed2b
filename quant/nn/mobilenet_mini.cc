#include "quant/nn/mobilenet_mini.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/nn/add.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/global_avg_pool.h"
#include "quant/nn/linear.h"

namespace quant::nn {
namespace {

// conv (no bias) - BN [- ReLU6]; returns the name of the last node.
std::string ConvBnRelu6(GraphSpec* g, const std::string& name, const std::string& input, int64_t out,
                        int64_t kernel, int64_t stride, int64_t groups, bool relu6) {
  const std::string bn = AddConvBn(g, name, name + "_bn", input, out, kernel, stride, groups);
  if (!relu6) return bn;
  g->Add(std::make_unique<Clamp>(name + "_relu", Clamp::Kind::kReLU6));
  return name + "_relu";
}

struct Block {
  int64_t expansion, out, stride;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> MobilenetMini::Create(ParamReader& p) {
  const int64_t t = p.IntInRange("expansion", 4, 1, 16, "expansion factor t of the inverted residual blocks 2-5");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(new MobilenetMini(t));
}

absl::StatusOr<GraphSpec> MobilenetMini::MakeGraph(const Shape& sample_shape, int num_classes) {
  if (sample_shape.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("mobilenet_mini needs images [C, H, W], the dataset gives ", ShapeToString(sample_shape)));
  }
  GraphSpec g;
  std::string x = ConvBnRelu6(&g, "stem", "input", 16, 3, 2, 1, true);
  int64_t width = 16;
  const Block blocks[] = {{1, 16, 1}, {expansion_, 24, 2}, {expansion_, 24, 1}, {expansion_, 32, 2}, {expansion_, 32, 1}};
  int k = 0;
  for (const Block& b : blocks) {
    const std::string p = absl::StrCat("ir", ++k, "_");
    const int64_t hidden = width * b.expansion;
    std::string h = x;
    if (b.expansion != 1) h = ConvBnRelu6(&g, p + "expand", h, hidden, 1, 1, 1, true);
    h = ConvBnRelu6(&g, p + "dw", h, hidden, 3, b.stride, hidden, true);
    h = ConvBnRelu6(&g, p + "project", h, b.out, 1, 1, 1, false);
    if (b.stride == 1 && b.out == width) {
      g.Add(std::make_unique<Add>(p + "add"), {h, x});
      h = p + "add";
    }
    x = h;
    width = b.out;
  }
  x = ConvBnRelu6(&g, "head", x, 128, 1, 1, 1, true);
  g.Add(std::make_unique<GlobalAvgPool>("gap"), {x});
  g.Add(std::make_unique<Linear>("fc", -1, num_classes));
  return g;
}

QUANTLAB_REGISTER(Model, "mobilenet_mini", MobilenetMini::Create,
                  "small MobileNetV2: stride-2 stem, 5 inverted residual blocks (ReLU6, depthwise 3x3), GAP, linear");

}  // namespace quant::nn
