// `all_but_one`: for every layer and candidate bit width, the accuracy and loss
// recovered when every layer is quantized (weights, activations or both, at that bit
// width) except that one, which stays float.
#ifndef QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_
#define QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_

#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

class AllButOneMetric : public TargetedMetric {
 public:
  explicit AllButOneMetric(std::vector<Target> targets) : TargetedMetric("all_but_one", std::move(targets)) {}
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_
