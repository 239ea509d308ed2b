// Per-layer latency on a backend, measured on this machine, for latency-budgeted
// bit allocation: every op's median time at batch 1 over `repeats` runs (the backend's
// own per-op profiling), and the median time of the whole Run (input quantization and
// output included) with the same images.
#ifndef QUANT_ANALYSIS_LATENCY_TABLE_H_
#define QUANT_ANALYSIS_LATENCY_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"

namespace quant::analysis {

struct LatencyProfile {
  double total_seconds = 0;        // median of whole runs
  std::vector<double> op_seconds;  // per op, median
};

// Runs each of `models` on backend `backend` one image at a time (`images` NHWC, `n` of
// them, cycled), `repeats` timed runs each after one untimed. The models take turns run by
// run, so that a slow spell of the machine hits them alike (ratios measured side by side).
absl::StatusOr<std::vector<LatencyProfile>> MeasureLatencies(const std::vector<const backends::QuantizedModel*>& models,
                                                             const std::string& backend, const float* images, int64_t n,
                                                             int repeats);
absl::StatusOr<LatencyProfile> MeasureLatency(const backends::QuantizedModel& model, const std::string& backend,
                                              const float* images, int64_t n, int repeats);

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_LATENCY_TABLE_H_
