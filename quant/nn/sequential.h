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
// Layer keys are in layer_spec.h. Sizes may be left out (inferred); sizes given
// are checked when the model is built, before training, and a mismatch names
// the layer index and both shapes.
#ifndef QUANT_NN_SEQUENTIAL_H_
#define QUANT_NN_SEQUENTIAL_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/nn/spec_model.h"

namespace quant::nn {

class Sequential : public SpecModel {
 public:
  explicit Sequential(std::vector<LayerSpec> specs) : specs_(std::move(specs)) {}
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p);
  std::string name() const override { return "sequential"; }

 protected:
  absl::StatusOr<std::vector<LayerSpec>> Specs(const Shape&, int) const override { return specs_; }

 private:
  std::vector<LayerSpec> specs_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_SEQUENTIAL_H_
