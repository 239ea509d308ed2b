// Model `sequential`: a network listed layer by layer in the config, so a
// researcher can try a small net without writing C++:
//
//   model:
//     name: sequential
//     layers:
//       - {type: conv2d, out_channels: 8, kernel: 3, padding: 1}
//       - relu
//       - {type: maxpool2d, kernel: 2}
//       - flatten
//       - {type: linear, out_features: 10}
//
// `type` names any registered op (registry `op:`; `run --list` shows each op's
// keys); each layer reads the one before it (the chain case of `graph`). Sizes
// may be left out (inferred); sizes given are checked when the model is built,
// before training, and a mismatch names the layer and both shapes.
#ifndef QUANT_NN_SEQUENTIAL_H_
#define QUANT_NN_SEQUENTIAL_H_

#include <memory>
#include <vector>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class Sequential : public Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "sequential"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape&, int) override;

 private:
  GraphSpec spec_;  // handed to Build once
};

}  // namespace quant::nn

#endif  // QUANT_NN_SEQUENTIAL_H_
