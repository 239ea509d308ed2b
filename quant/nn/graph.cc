#include "quant/nn/graph.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"

namespace quant::nn {

std::string AddConvBn(GraphSpec* g, const std::string& conv, const std::string& bn, const std::string& input,
                      int64_t out_channels, int64_t kernel, int64_t stride, int64_t groups) {
  Conv2dOptions o;
  o.out_channels = out_channels;
  o.kernel = kernel;
  o.stride = stride;
  o.padding = kernel / 2;
  o.bias = false;
  o.groups = groups;
  g->Add(std::make_unique<Conv2d>(conv, o), {input});
  g->Add(std::make_unique<BatchNorm>(bn, /*spatial=*/true));
  return bn;
}

absl::StatusOr<std::unique_ptr<Layer>> CreateOp(ParamReader& p, std::string_view type_key,
                                                std::string_view default_type) {
  return Registry<Layer>::Get().CreateFrom(p, type_key, default_type,
                                           "the node's op: a registered op (run --list shows them)");
}

absl::StatusOr<GraphNode> ReadGraphNode(ParamReader& p, std::string_view type_key, bool with_inputs,
                                        std::string_view default_type) {
  GraphNode node;
  node.origin = p.Location("");
  const std::string name = p.String("name", "", "node name, for inputs and quantization overrides (default: conv1, fc2, ...)");
  if (with_inputs) {
    if (p.Has("inputs") && !p.describing() && p.node()["inputs"].IsScalar()) {
      node.inputs = {p.String("inputs", "", "")};
    } else {
      node.inputs = p.StringList("inputs", {}, "names of the values it reads: 'input' or earlier nodes "
                                               "(default: the node listed before it)");
    }
  }
  absl::StatusOr<std::unique_ptr<Layer>> op = CreateOp(p, type_key, default_type);
  if (!op.ok()) return op.status();
  if (absl::Status s = p.status(); !s.ok()) return s;
  node.op = std::move(op).value();
  node.op->set_name(name);
  return node;
}

}  // namespace quant::nn
