// Per-layer sensitivity analysis (the `analysis:` section; registry kind
// "analysis_metric"): how much each conv/linear of the BN-folded float net hurts
// when quantized at each candidate bit width, measured with a plugin per metric:
//
//   analysis:
//     bits: [2, 3, 4, 8]
//     metrics: [one_layer, all_but_one, sqnr, {name: hessian_trace, samples: 32}]
//     images: 1024            # held-out training images the metrics are measured on
//
// PrepareSensitivity builds, once per candidate bit width b, the static conversion
// of the `quant:` specs with bits b (weights and activations; every other setting of
// the specs and overrides kept): the fake-quantized weights of every layer and the
// calibrated grid of every activation, exactly the grids `ptq: {method: static}` at b
// bits would use. Metrics then simulate in float with those grids.
//
// The evaluation images are training images the calibration did not see (the same
// seeded order CalibrationImages draws from, continued), so the analysis never looks
// at the test set.
//
// EvaluateChanges is the engine of the accuracy metrics: one forward pass of a base
// state (float, or every layer quantized) keeps every tensor; each change of one layer
// then re-runs only the ops from that layer on, reusing the tensors before it.
#ifndef QUANT_ANALYSIS_SENSITIVITY_H_
#define QUANT_ANALYSIS_SENSITIVITY_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/data/dataset.h"
#include "quant/nn/model.h"
#include "quant/ptq/converter.h"
#include "quant/ptq/ptq_pass.h"
#include "quant/qmath/qparams.h"
#include "yaml-cpp/yaml.h"

namespace quant::analysis {

// What a layer's quantization covers in a measurement.
enum class Target { kWeights, kActivations, kBoth };
const char* TargetName(Target t);  // "weights", "activations", "both"

// One number of the table: `metric` of `layer` at `bits` (0: independent of bits) for `target`.
struct SensitivityEntry {
  std::string layer;
  int bits = 0;
  std::string target;
  std::string metric;
  double value = 0;
};

struct SensitivityTable {
  std::vector<std::string> layers;  // the weighted layers, in op order
  std::vector<int> bits;
  std::vector<SensitivityEntry> entries;
  // Scalars of the whole net (float_accuracy, float_loss, uniform_<b>_accuracy, ...).
  std::map<std::string, double> scalars;
  std::vector<std::string> notes;  // what each metric did, in numbers

  void Add(const std::string& layer, int bits, Target target, const std::string& metric, double value);
  void AddIndependent(const std::string& layer, const std::string& metric, double value);
  std::optional<double> Find(const std::string& layer, int bits, const std::string& target,
                             const std::string& metric) const;
  // The distinct metric names, in first-added order.
  std::vector<std::string> Metrics() const;
  // A Markdown table: one row per layer and bit width, one column per (metric, target).
  std::string Markdown() const;
};

// The quantized state of the net at one bit width.
struct QuantizedAtBits {
  // Per FloatNet::weighted: the weights dequantized from the integer model (model layout).
  std::vector<std::vector<float>> weights;
  // Activation grids by tensor index (the input and every op output with qparams of its own).
  std::map<int, QParams> grids;
  backends::QuantizedModel integer_model;  // the uniform conversion at these bits
};

struct SensitivityContext {
  nn::Model* model = nullptr;  // the trained float model (gradient-based metrics)
  ptq::FloatNet net;           // BN-folded, lowered
  std::vector<int> bits;
  std::map<int, QuantizedAtBits> at_bits;
  // Held-out training images: NHWC (the float net) and NCHW (the nn model), with labels.
  int64_t images = 0;
  std::vector<float> nhwc;
  Tensor nchw;
  std::vector<int32_t> labels;
  // The calibration images (NHWC) the conversions at each bit width calibrated on.
  std::vector<float> calibration;
  int64_t calibration_images = 0;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  FILE* log = nullptr;
  std::string name;  // progress prefix
};

struct PrepareOptions {
  std::vector<int> bits;
  // PTQ passes (e.g. gptq) run on a copy of the float net at each bit width before its
  // conversion, so that the metrics see the weights the deployment will round them to.
  std::vector<ptq::PtqPass*> passes;
  int64_t images = 1024;
  int64_t calibration_images = 1024;
  int64_t batch_size = 256;
  uint64_t seed = 0;
  FILE* log = nullptr;
  std::string name;
};

// The `quant:` section with `bits` set to b for weights and (unless `activations` is
// false) activations: in the base specs, and removed from every override so that b
// reaches every layer; "none" specs stay.
YAML::Node QuantSectionAtBits(const YAML::Node& quant, int bits, bool activations = true);

// `quant` is the experiment's `quant:` section (its file and origins locate errors).
absl::StatusOr<SensitivityContext> PrepareSensitivity(nn::Model& model, const YAML::Node& quant,
                                                      const std::string& file, const Dataset& dataset,
                                                      const PrepareOptions& options);

// A change of one layer against the base state: its weights and its output quantized
// (at the call's bits) or float.
struct LayerChange {
  int layer = 0;  // index into net.weighted
  bool quantize_weights = false;
  bool quantize_output = false;
};
struct Score {
  double loss = 0;      // mean cross-entropy over the images
  double accuracy = 0;  // top-1
};
struct BaseState {
  bool weights = false;  // every layer's weights quantized at `bits`
  bool outputs = false;  // the input and every activation quantized at `bits`
};
// The base state's score, and one per change (in the order given).
absl::Status EvaluateChanges(const SensitivityContext& ctx, int bits, BaseState base,
                             const std::vector<LayerChange>& changes, Score* base_score, std::vector<Score>* scores);

// A metric plugin: adds its entries (and scalars, notes) to the table.
class SensitivityMetric {
 public:
  static constexpr char kRegistryKind[] = "analysis_metric";
  virtual ~SensitivityMetric() = default;
  virtual std::string Describe() const = 0;
  virtual absl::Status Compute(const SensitivityContext& ctx, SensitivityTable* table) = 0;
  // Whether its entries cover `target` (an allocation objective needs its targets).
  virtual bool Covers(Target target) const {
    (void)target;
    return true;
  }
};

// Reads a metric's `targets:` ([weights, activations, both] by default).
std::vector<Target> ReadTargets(ParamReader& p);

// A metric measured per target, chosen by `targets:` in its map (one_layer, all_but_one, sqnr).
class TargetedMetric : public SensitivityMetric {
 public:
  TargetedMetric(std::string name, std::vector<Target> targets)
      : name_(std::move(name)), targets_(std::move(targets)) {}
  std::string Describe() const override;  // "one_layer (weights, both)"
  bool Covers(Target t) const override;

 protected:
  const std::vector<Target>& targets() const { return targets_; }

 private:
  std::string name_;
  std::vector<Target> targets_;
};

// The registry factory of a TargetedMetric subclass M (constructed from its targets).
template <typename M>
absl::StatusOr<std::unique_ptr<SensitivityMetric>> CreateTargetedMetric(ParamReader& p) {
  std::vector<Target> targets = ReadTargets(p);
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<SensitivityMetric>(new M(std::move(targets)));
}

// Reads `metrics:` (names or {name: ..., params} maps).
absl::StatusOr<std::vector<std::unique_ptr<SensitivityMetric>>> ReadMetrics(ParamReader& analysis);

// Spearman's rank correlation of two equally long lists (ties get their mean rank).
double SpearmanCorrelation(const std::vector<double>& a, const std::vector<double>& b);

// 10 log10(sum x^2 / sum (x - y)^2); +inf when identical.
double SqnrDb(const float* x, const float* y, int64_t n);

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_SENSITIVITY_H_
