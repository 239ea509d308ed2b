// Model `graph`: a network described node by node in the config, for
// researchers who want their own architecture (residual, branching) without
// C++. Each node names its op (any registered op, `run --list`), its inputs
// ('input' or earlier nodes' names; default: the node listed before it) and
// the op's keys:
//
//   model:
//     name: graph
//     output: fc                       # default: the last node listed
//     nodes:
//       - {name: stem, op: conv2d, inputs: [input], out_channels: 16, padding: 1}
//       - {name: stem_relu, op: relu}
//       - {name: c1, op: conv2d, out_channels: 16, padding: 1}
//       - {name: sum, op: add, inputs: [c1, stem_relu]}
//       - {name: gap, op: global_avg_pool}
//       - {name: fc, op: linear, out_features: 10}
//
// Errors carry file:line:col and the node (Model::Build checks every graph,
// YAML or C++, when the model is built, before anything runs; --validate too):
// an unknown input, a duplicate name, a cycle (as a path), an unknown output
// node, shapes that do not fit (naming every input's shape and producer); a
// node whose output nothing reads is a warning.
#ifndef QUANT_NN_GRAPH_MODEL_H_
#define QUANT_NN_GRAPH_MODEL_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class GraphModel : public Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "graph"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape&, int) override;

 private:
  GraphSpec spec_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_GRAPH_MODEL_H_
