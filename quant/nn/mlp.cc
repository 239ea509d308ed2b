#include "quant/nn/mlp.h"

#include "quant/core/registry.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/linear.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Model>> Mlp::Create(ParamReader& p) {
  std::vector<int64_t> hidden = p.IntList("hidden", {256, 128}, "widths of the hidden layers");
  if (!p.describing()) {
    for (int64_t h : hidden) {
      if (h < 1) p.Fail("hidden", "every width must be positive");
    }
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(new Mlp(std::move(hidden)));
}

absl::StatusOr<GraphSpec> Mlp::MakeGraph(const Shape&, int num_classes) {
  GraphSpec g;
  g.Add(std::make_unique<Flatten>(""));
  for (int64_t h : hidden_) {
    g.Add(std::make_unique<Linear>("", -1, h));
    g.Add(std::make_unique<Clamp>("", Clamp::Kind::kReLU));
  }
  g.Add(std::make_unique<Linear>("", -1, num_classes));
  return g;
}

QUANTLAB_REGISTER(Model, "mlp", Mlp::Create,
                  "Linear(in,256)-ReLU-Linear(256,128)-ReLU-Linear(128,classes)");

}  // namespace quant::nn
