// The `analysis:` section of an experiment: the sensitivity table of every conv/linear
// (sensitivity.h, one plugin per metric) and, with `allocate:`, the mixed-precision bit
// allocation under a budget, solved as an integer linear program (bit_allocation.h):
//
//   analysis:
//     bits: [2, 3, 4, 8]
//     metrics: [one_layer, sqnr, hessian_trace]
//     images: 1024                      # held-out training images
//     passes: [gptq]                    # the rounding the weights get at each bit width (default: nearest)
//     allocate:
//       weights: [2, 3, 4, 8]           # candidate weight bits per layer
//       activations: [8]                # candidate output-activation bits (default: as quant: says)
//       objective: one_layer_loss_increase
//       budget: {size_bits: 3}          # or size_bytes, bops, bops_bits, latency_ms, latency_bits
//       latency: {backend: xnnpack, repeats: 200}   # the per-layer table of latency budgets
//       apply: true                     # this run's PTQ / QAT uses the allocation
//
// The allocation is written as a ready config (the experiment with the chosen bits as
// `quant.overrides`, one per layer) with its predicted packed size and BOPs.
#ifndef QUANT_ANALYSIS_ANALYSIS_H_
#define QUANT_ANALYSIS_ANALYSIS_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/analysis/bit_allocation.h"
#include "quant/analysis/sensitivity.h"
#include "quant/core/params.h"
#include "quant/data/dataset.h"
#include "quant/nn/model.h"
#include "yaml-cpp/yaml.h"

namespace quant::analysis {

struct AllocateSpec {
  std::vector<int> weight_bits;
  std::vector<int> activation_bits;  // empty: the quant section's, unchanged
  std::string objective;
  AllocationProblem::Budget budget_kind = AllocationProblem::Budget::kSizeBytes;
  // Exactly one of these is set by the config.
  std::optional<double> size_bytes, size_bits, bops, bops_bits, latency_ms, latency_bits;
  // Latency budgets: the backend the per-layer table is measured on, batch 1.
  std::string latency_backend = "xnnpack";
  int latency_repeats = 200;
  bool apply = true;
  double time_limit_seconds = 60;
};

struct AnalysisSpec {
  std::vector<int> bits;
  int64_t images = 1024;
  int64_t calibration_images = 1024;
  int64_t batch_size = 256;
  std::vector<std::unique_ptr<SensitivityMetric>> metrics;
  // PTQ passes run at each bit width before the weights are taken (analysis.passes).
  std::vector<std::unique_ptr<ptq::PtqPass>> passes;
  std::optional<AllocateSpec> allocate;
  std::string Describe() const;
};

// Reads and checks the section (metrics known, objective computed by a listed metric,
// candidates among `bits`, one budget).
absl::StatusOr<std::unique_ptr<AnalysisSpec>> ReadAnalysis(ParamReader& analysis);

struct LayerAllocation {
  std::string layer;
  int weight_bits = 8, activation_bits = 8;
  int64_t weights = 0;  // values
  int64_t size_bytes = 0;
  double bops = 0, cost = 0;
};

struct AnalysisResult {
  SensitivityTable table;
  bool allocated = false;
  std::vector<LayerAllocation> allocation;
  Allocation solution;
  double budget = 0;                     // bytes or BOPs, as the spec's kind
  std::string budget_unit;               // "bytes" / "BOPs"
  int64_t predicted_size_bytes = 0;      // PackedModelBytes of the allocated model
  double predicted_latency_seconds = 0;  // latency budgets: from the measured per-layer table
  double predicted_bops = 0;
  YAML::Node quant;  // the quant section with the allocation's overrides
  std::vector<std::string> notes;
  double seconds = 0;
};

struct AnalysisInputs {
  nn::Model* model = nullptr;  // trained float model
  YAML::Node quant;            // the experiment's `quant:` section
  std::string file;            // the config file (locates errors)
  const Dataset* dataset = nullptr;
  uint64_t seed = 0;
  FILE* log = nullptr;
  std::string name;
};

absl::StatusOr<AnalysisResult> RunAnalysis(AnalysisSpec& spec, const AnalysisInputs& in);

// The allocation as overrides appended to `quant` (one per layer, the name as an
// escaped regex).
YAML::Node QuantWithAllocation(const YAML::Node& quant, const std::vector<LayerAllocation>& allocation,
                               bool activations);

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_ANALYSIS_H_
