#include "quant/nn/sequential.h"

#include "absl/strings/str_join.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Model>> Sequential::Create(ParamReader& p) {
  YAML::Node layers = p.Node(
      "layers", absl::StrCat("list of layers: {type: ", absl::StrJoin(LayerTypes(), "|"),
                             ", name: ..., sizes...} or a bare type"));
  std::vector<LayerSpec> specs;
  if (p.describing()) return std::unique_ptr<Model>(new Sequential(specs));
  if (!layers.IsDefined() || !layers.IsSequence() || layers.size() == 0) {
    p.Fail("layers", "expected a non-empty list of layers");
    return p.status();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    YAML::Node element = layers[i];
    if (element.IsScalar()) {  // `- relu`: a type with default settings
      YAML::Node map(YAML::NodeType::Map);
      map["type"] = element;
      element = map;
    }
    ParamReader reader = p.ListElement(element, "layers", i);
    specs.push_back(ReadLayerSpec(reader));
    if (absl::Status s = reader.Finish(); !s.ok()) return s;
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(new Sequential(std::move(specs)));
}

QUANTLAB_REGISTER(Model, "sequential", Sequential::Create,
                  "a network listed layer by layer in the config (model.layers)");

}  // namespace quant::nn
