// `one_layer`: for every layer and candidate bit width, the accuracy drop and loss
// increase when only that layer is quantized (its weights, its output activation, or
// both) and everything else stays float: the measured one-layer-at-a-time
// sensitivity (e.g. AIMET's per-layer analysis, HAWQ's ablations).
#ifndef QUANT_ANALYSIS_ONE_LAYER_METRIC_H_
#define QUANT_ANALYSIS_ONE_LAYER_METRIC_H_

#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

class OneLayerMetric : public TargetedMetric {
 public:
  explicit OneLayerMetric(std::vector<Target> targets) : TargetedMetric("one_layer", std::move(targets)) {}
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_ONE_LAYER_METRIC_H_
