// Runs backends over a test set: accuracy, agreement with `reference`
// (identical / one step / larger, max steps, top-1 agreement), images/s at
// batch 1 and batch 256 (one thread, quantizing the input included), model size.
// ValidateBackendsFor checks at config validation that every selected backend
// can run every layer of the configured model and specs (CheckLayerSpec).
#ifndef QUANT_PTQ_EVALUATE_H_
#define QUANT_PTQ_EVALUATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/data/dataset.h"
#include "quant/ptq/converter.h"
#include "quant/quantizers/quant_config.h"

namespace quant::ptq {

struct AgreementCounts {
  int64_t compared = 0, identical = 0, off_by_one = 0, larger = 0, max_abs_steps = 0;
  double top1_agreement = 0.0;
};

// One op's output tensor against the reference's.
struct OpAgreement {
  std::string op, kind;
  AgreementCounts counts;  // top1_agreement unused
  // The op alone, fed the reference's inputs: its own difference, none carried in.
  AgreementCounts alone;
};

struct BackendEvaluation {
  std::string backend;
  double test_accuracy = 0.0;
  double images_per_s_batch1 = 0.0;
  double images_per_s_batch256 = 0.0;
  int64_t model_size_bytes = 0;
  bool integer_outputs = false;  // agreement counts cover the int outputs (else top-1 only)
  AgreementCounts agreement;
  std::vector<int32_t> predictions;  // top-1 class per test image
  // Integer backends: every op's output vs reference on the first 64 test images, in
  // op order; first_departure = the first op that differs (-1: none).
  std::vector<OpAgreement> per_op;
  int first_departure = -1;
};

struct EvaluateOptions {
  int64_t batch1_images = 500;     // timed one by one (at most batch1_seconds); the median counts
  double batch1_seconds = 3.0;
  int64_t batch256_repeats = 1;    // passes over the test set; the median full-batch time counts
};

// `chw` is the dataset's sample shape; the split's images are NCHW.
absl::StatusOr<std::vector<BackendEvaluation>> EvaluateBackends(const backends::QuantizedModel& model,
                                                                const DataSplit& test,
                                                                const std::vector<int64_t>& chw,
                                                                const std::vector<std::string>& names,
                                                                const EvaluateOptions& options = {});

// Backend `name` running `model` against the reference running `reference_model`
// (normally the same model; a different one checks a backend that was handed a
// wrong tensor), every op's output on `batch` images, into e->per_op and
// e->first_departure.
absl::Status ComparePerOp(const backends::QuantizedModel& reference_model, const backends::QuantizedModel& model,
                          const std::string& name, const float* x, int64_t batch, BackendEvaluation* e);

// Counts how `q` (int outputs) and top-1 of `logits` agree with the reference's.
AgreementCounts CompareOutputs(const std::vector<int32_t>& ref_q, const std::vector<float>& ref_logits,
                               const std::vector<int32_t>& q, const std::vector<float>& logits, int64_t n,
                               bool integer);

// Config-time check: every weighted layer of `net` under `quant`'s specs (static
// conversion) against each backend's profile, and every op kind. The error names
// the layer, the backend and the rule. `quant` null: the op kinds only, with int8
// activations (from_qat, whose grids exist only after training).
absl::Status ValidateBackendsFor(const FloatNet& net, const QuantConfig* quant,
                                 const std::vector<std::string>& names);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_EVALUATE_H_
