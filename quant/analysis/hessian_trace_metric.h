// `hessian_trace`: the trace of the Hessian of the loss (mean cross-entropy over held-out
// training images, BatchNorm in eval mode) with respect to each layer's BN-folded
// weights, by Hutchinson's estimator as in HAWQ-V2 (Dong et al. 2020):
//   tr(H_k) = E_v[v_k^T (H v)_k],  v Rademacher over every layer at once,
// with the Hessian-vector product taken as a central difference of two gradients
// (g(w + e v) - g(w - e v)) / 2e, e relative to each layer's weight scale. It reports
// each layer's mean over `samples` draws, its standard error, and HAWQ-V2's
// sensitivity per bit width: Omega = tr(H_k) / n_k * ||Q_b(W_k) - W_k||^2.
//
//   {name: hessian_trace, samples: 32, images: 512, step: 0.01}
#ifndef QUANT_ANALYSIS_HESSIAN_TRACE_METRIC_H_
#define QUANT_ANALYSIS_HESSIAN_TRACE_METRIC_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quant/analysis/sensitivity.h"

namespace quant::analysis {

struct TraceEstimate {
  double mean = 0;
  double stderr_of_mean = 0;  // sample standard deviation / sqrt(samples)
  double stddev = 0;          // of one sample
  int samples = 0;
};

// Hutchinson's estimator of the trace of each diagonal block of an operator: for each
// of `samples` Rademacher vectors v (blocks of `block_sizes`, drawn from `seed`),
// `apply(v, &hv)` gives (H v) block by block, and block k's sample is v_k . hv_k.
using BlockOperator =
    std::function<absl::Status(const std::vector<std::vector<float>>& v, std::vector<std::vector<double>>* hv)>;
absl::StatusOr<std::vector<TraceEstimate>> HutchinsonTrace(const std::vector<int64_t>& block_sizes, int samples,
                                                           uint64_t seed, const BlockOperator& apply,
                                                           const std::function<void(int)>& progress = nullptr);

class HessianTraceMetric : public SensitivityMetric {
 public:
  static absl::StatusOr<std::unique_ptr<SensitivityMetric>> Create(ParamReader& p);
  HessianTraceMetric(int samples, int64_t images, double step) : samples_(samples), images_(images), step_(step) {}
  std::string Describe() const override;
  absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) override;

 private:
  int samples_;
  int64_t images_;
  double step_;
};

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_HESSIAN_TRACE_METRIC_H_
