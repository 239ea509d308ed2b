// Post-training quantization methods (registry kind "ptq", the `ptq:` section):
//
//   ptq: {method: static, calibration_batches: 8, batch_size: 128}
//
// A method takes the trained float model and the `quant:` specs (with their
// per-layer overrides) and produces either an integer QuantizedModel for the
// backends (`static`) or a float simulation whose test accuracy it reports
// (`dynamic`, `weight_only`). Check() runs at config validation, on the built
// but untrained model, so that a spec the method cannot honour is rejected
// before any training.
#ifndef QUANT_PTQ_PTQ_METHOD_H_
#define QUANT_PTQ_PTQ_METHOD_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"
#include "quant/data/dataset.h"
#include "quant/nn/model.h"
#include "quant/ptq/converter.h"
#include "quant/quantizers/quant_config.h"

namespace quant::ptq {

struct PtqContext {
  nn::Model* model = nullptr;         // trained, built
  const QuantConfig* quant = nullptr; // the `quant:` section
  const Dataset* dataset = nullptr;   // loaded: calibration from train(), accuracy on test()
  uint64_t seed = 0;
  FILE* log = stderr;
  std::string name;                   // log prefix
};

struct PtqResult {
  std::string method;
  bool has_integer_model = false;
  backends::QuantizedModel model;     // when has_integer_model
  double float_test_accuracy = 0.0;   // the converted float net (BN folded), on the test set
  double test_accuracy = 0.0;         // the quantized model, simulated in float (fake quantization)
  int64_t model_bytes = 0;            // weights at their bit width + qparams
  std::vector<std::string> notes;     // what was done, for logs and the record
  // The BN-folded float net the integer model was made from (same ops and tensors),
  // for the per-tensor numerical debugger; empty for methods without an integer model.
  backends::QuantizedModel float_model;
  // from_qat: the QAT model's top-1 class per test image (the simulation the
  // deployed model is compared with); empty otherwise.
  std::vector<int32_t> simulated_predictions;
};

class PtqMethod {
 public:
  static constexpr char kRegistryKind[] = "ptq";
  virtual ~PtqMethod() = default;
  virtual std::string Describe() const = 0;
  virtual bool produces_integer_model() const = 0;
  // Whether the method converts the quantizers a QAT scheme trained (train.scheme: qat
  // in the same config) rather than a float model.
  virtual bool needs_qat_training() const { return false; }
  // Whether the specs fit the model for this method (no data, no training).
  virtual absl::Status Check(nn::Model& model, const QuantConfig& quant) const = 0;
  virtual absl::StatusOr<PtqResult> Apply(const PtqContext& ctx) = 0;
};

// Top-1 accuracy of `logits` [n, classes] against labels.
double Top1Accuracy(const std::vector<float>& logits, int64_t n, const std::vector<int32_t>& labels);

// Float accuracy of a float net (with optional hooks) over a split, batch by batch.
absl::StatusOr<double> FloatNetAccuracy(const backends::QuantizedModel& net, const DataSplit& split,
                                        const std::vector<int64_t>& chw, int64_t batch_size,
                                        const Hook& before = nullptr);

// The first `n` training images in a seeded shuffled order, NHWC.
std::vector<float> CalibrationImages(const DataSplit& train, int64_t n, uint64_t seed);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_PTQ_METHOD_H_
