// A Model defined by a list of LayerSpecs: the common base of the built-in
// models (mlp, cnn, cnn_bn), which compute their list from the input shape, and
// of `sequential`, which reads it from YAML.
#ifndef QUANT_NN_SPEC_MODEL_H_
#define QUANT_NN_SPEC_MODEL_H_

#include <string>
#include <vector>

#include "quant/nn/layer_spec.h"
#include "quant/nn/model.h"

namespace quant::nn {

class SpecModel : public Model {
 protected:
  virtual absl::StatusOr<std::vector<LayerSpec>> Specs(const Shape& sample_shape,
                                                       int num_classes) const = 0;
  absl::StatusOr<std::vector<std::unique_ptr<Layer>>> MakeLayers(const Shape& sample_shape,
                                                                 int num_classes) override;
};

}  // namespace quant::nn

#endif  // QUANT_NN_SPEC_MODEL_H_
