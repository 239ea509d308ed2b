// Model `mlp`: Flatten - Linear(in, 256) - ReLU - Linear(256, 128) - ReLU -
// Linear(128, classes); layers flatten1, fc1, relu1, fc2, relu2, fc3.
// `hidden` changes the widths.
#ifndef QUANT_NN_MLP_H_
#define QUANT_NN_MLP_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class Mlp : public Model {
 public:
  explicit Mlp(std::vector<int64_t> hidden) : hidden_(std::move(hidden)) {}
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "mlp"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape& sample_shape, int num_classes) override;

 private:
  std::vector<int64_t> hidden_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_MLP_H_
