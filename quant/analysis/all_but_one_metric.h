// `all_but_one`: for every layer and candidate bit width, the accuracy and loss
// recovered when every layer is quantized (weights, activations or both, at that bit
// width) except that one, which stays float.
#ifndef QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_
#define QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

class AllButOneMetric : public SensitivityMetric {
 public:
  static absl::StatusOr<std::unique_ptr<SensitivityMetric>> Create(ParamReader& p);
  explicit AllButOneMetric(std::vector<Target> targets) : targets_(std::move(targets)) {}
  std::string Describe() const override;
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;
  bool Covers(Target t) const override;

 private:
  std::vector<Target> targets_;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_ALL_BUT_ONE_METRIC_H_
