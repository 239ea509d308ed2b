#include "quant/nn/sequential.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Model>> Sequential::Create(ParamReader& p) {
  YAML::Node layers = p.Node(
      "layers", "list of layers: {type: <op>, name: ..., the op's keys} or a bare op name; each reads the one before");
  auto model = std::make_unique<Sequential>();
  if (p.describing()) return std::unique_ptr<Model>(std::move(model));
  if (!layers.IsDefined() || !layers.IsSequence() || layers.size() == 0) {
    p.Fail("layers", "expected a non-empty list of layers");
    return p.status();
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    YAML::Node element = layers[i];
    if (element.IsScalar()) {  // `- relu`: an op with default settings
      YAML::Node map(YAML::NodeType::Map);
      map["type"] = element;
      element = map;
    }
    ParamReader reader = p.ListElement(element, "layers", i);
    absl::StatusOr<GraphNode> node = ReadGraphNode(reader, "type", /*with_inputs=*/false, "relu");
    if (!node.ok()) return node.status();
    if (absl::Status s = reader.Finish(); !s.ok()) return s;
    model->spec_.nodes.push_back(std::move(node).value());
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(std::move(model));
}

absl::StatusOr<GraphSpec> Sequential::MakeGraph(const Shape&, int) {
  if (spec_.nodes.empty()) return absl::FailedPreconditionError("a sequential model is built once");
  return std::move(spec_);
}

QUANTLAB_REGISTER(Model, "sequential", Sequential::Create,
                  "a network listed layer by layer in the config (model.layers)");

}  // namespace quant::nn
