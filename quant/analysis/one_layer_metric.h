// `one_layer`: for every layer and candidate bit width, the accuracy drop and loss
// increase when only that layer is quantized (its weights, its output activation, or
// both) and everything else stays float: the measured one-layer-at-a-time
// sensitivity (e.g. AIMET's per-layer analysis, HAWQ's ablations).
#ifndef QUANT_ANALYSIS_ONE_LAYER_METRIC_H_
#define QUANT_ANALYSIS_ONE_LAYER_METRIC_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

class OneLayerMetric : public SensitivityMetric {
 public:
  static absl::StatusOr<std::unique_ptr<SensitivityMetric>> Create(ParamReader& p);
  explicit OneLayerMetric(std::vector<Target> targets) : targets_(std::move(targets)) {}
  std::string Describe() const override;
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;
  bool Covers(Target t) const override;

 private:
  std::vector<Target> targets_;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_ONE_LAYER_METRIC_H_
