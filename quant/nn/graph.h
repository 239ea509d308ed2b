// What a model plugin hands to Model::Build: the nodes of its graph, unbuilt.
// Built-in models write it in C++ (quant/nn/cnn.cc, resnet_mini.cc), the
// `sequential` and `graph` models read it from YAML, ONNX import will build it
// from a file. Model::Build resolves the names, sorts the nodes
// topologically and checks every shape (quant/nn/model.h).
#ifndef QUANT_NN_GRAPH_H_
#define QUANT_NN_GRAPH_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/layer.h"

namespace quant::nn {

struct GraphNode {
  std::unique_ptr<Layer> op;  // its name() is the node's name; "" = automatic (conv1, fc2, ...)
  // Names of the values it reads: "input" (the model's input) or a node's
  // name. Empty: the output of the node listed before it (chains).
  std::vector<std::string> inputs;
  // Where the node was written ("file:line:col: model.nodes[3]"), for errors; "" for C++ models.
  std::string origin;
};

struct GraphSpec {
  std::vector<GraphNode> nodes;
  std::string output;  // the node whose output is the logits; "" = the last node listed

  // Appends a node reading the previous node's output (or `inputs`), and
  // returns its op for further settings.
  Layer* Add(std::unique_ptr<Layer> op, std::vector<std::string> inputs = {}) {
    nodes.push_back(GraphNode{std::move(op), std::move(inputs), ""});
    return nodes.back().op.get();
  }
};

// A building block of the C++ models: conv2d named `conv` reading `input`
// (square kernel, padding kernel / 2, no bias: the BatchNorm after it has
// one) followed by BatchNorm2d named `bn`. Returns `bn`.
std::string AddConvBn(GraphSpec* g, const std::string& conv, const std::string& bn, const std::string& input,
                      int64_t out_channels, int64_t kernel, int64_t stride, int64_t groups = 1);

// Builds the op a YAML map describes: its type under `type_key` ("op" in
// graphs, "type" in sequential lists) names a registered op (registry `op:`),
// which reads the rest of the map. Unknown types are located at the key.
absl::StatusOr<std::unique_ptr<Layer>> CreateOp(ParamReader& p, std::string_view type_key,
                                                std::string_view default_type = "");

// Reads one node from its YAML map: `name` (optional), `inputs` (a list of
// value names, or one name; only when `with_inputs`), the op under
// `type_key` and the op's own keys; the caller Finish()es the reader. A bare
// string is the op's name with default settings (`- relu`).
absl::StatusOr<GraphNode> ReadGraphNode(ParamReader& p, std::string_view type_key, bool with_inputs,
                                        std::string_view default_type = "");

}  // namespace quant::nn

#endif  // QUANT_NN_GRAPH_H_
