// `sqnr`: per layer and candidate bit width, the quantization SQNR of the layer's
// weights, and of its output when the layer alone runs on the float net's inputs with
// its weights, its output activation, or both quantized (no error carried in from
// earlier layers).
#ifndef QUANT_ANALYSIS_SQNR_METRIC_H_
#define QUANT_ANALYSIS_SQNR_METRIC_H_

#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

class SqnrMetric : public TargetedMetric {
 public:
  explicit SqnrMetric(std::vector<Target> targets) : TargetedMetric("sqnr", std::move(targets)) {}
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_SQNR_METRIC_H_
