#include "quant/nn/mlp.h"

#include "quant/core/registry.h"

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

absl::StatusOr<std::vector<LayerSpec>> Mlp::Specs(const Shape&, int num_classes) const {
  std::vector<LayerSpec> specs;
  specs.push_back({.type = "flatten"});
  for (int64_t h : hidden_) {
    specs.push_back({.type = "linear", .out = h});
    specs.push_back({.type = "relu"});
  }
  specs.push_back({.type = "linear", .out = num_classes});
  return specs;
}

QUANTLAB_REGISTER(Model, "mlp", Mlp::Create,
                  "Linear(in,256)-ReLU-Linear(256,128)-ReLU-Linear(128,classes)");

}  // namespace quant::nn
