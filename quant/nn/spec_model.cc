#include "quant/nn/spec_model.h"

namespace quant::nn {

absl::StatusOr<std::vector<std::unique_ptr<Layer>>> SpecModel::MakeLayers(const Shape& sample_shape,
                                                                          int num_classes) {
  absl::StatusOr<std::vector<LayerSpec>> specs = Specs(sample_shape, num_classes);
  if (!specs.ok()) return specs.status();
  AssignLayerNames(&*specs);
  std::vector<std::unique_ptr<Layer>> layers;
  for (const LayerSpec& s : *specs) layers.push_back(MakeLayer(s));
  return layers;
}

}  // namespace quant::nn
