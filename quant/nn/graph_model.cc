#include "quant/nn/graph_model.h"


#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant::nn {
absl::StatusOr<std::unique_ptr<Model>> GraphModel::Create(ParamReader& p) {
  YAML::Node nodes = p.Node("nodes",
                            "list of nodes: {name: ..., op: <op>, inputs: [...], the op's keys}; see docs/nn.md");
  const std::string output = p.String("output", "", "the node whose output is the logits (default: the last listed)");
  auto model = std::make_unique<GraphModel>();
  if (p.describing()) return std::unique_ptr<Model>(std::move(model));
  if (!nodes.IsDefined() || !nodes.IsSequence() || nodes.size() == 0) {
    p.Fail("nodes", "expected a non-empty list of nodes");
    return p.status();
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    YAML::Node element = nodes[i];
    if (element.IsScalar()) {
      YAML::Node map(YAML::NodeType::Map);
      map["op"] = element;
      element = map;
    }
    ParamReader reader = p.ListElement(element, "nodes", i);
    absl::StatusOr<GraphNode> node = ReadGraphNode(reader, "op", /*with_inputs=*/true);
    if (!node.ok()) return node.status();
    if (absl::Status s = reader.Finish(); !s.ok()) return s;
    model->spec_.nodes.push_back(std::move(node).value());
  }
  model->spec_.output = output;
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(std::move(model));
}

absl::StatusOr<GraphSpec> GraphModel::MakeGraph(const Shape&, int) {
  if (spec_.nodes.empty()) return absl::FailedPreconditionError("a graph model is built once");
  return std::move(spec_);
}

QUANTLAB_REGISTER(Model, "graph", GraphModel::Create,
                  "a network described node by node in the config (model.nodes, inputs by name)");

}  // namespace quant::nn
