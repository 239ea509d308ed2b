// The per-tensor numerical debugger (`evaluate: {debug: true}`): for every tensor
// of an integer model, how far the integer computation is from the float one, and
// where each backend departs from the reference.
//
//  - float vs integer, per tensor: the BN-folded float net (same ops and tensors as
//    the integer model) and the `reference` backend run the same images; the
//    reference's codes are dequantized, s * (q - z), and compared with the float
//    values: SQNR = 10 log10(sum x^2 / sum (x - x_q)^2) dB; `clipped` is the
//    fraction of float values beyond the representable range by more than half a
//    step (the range cut them); `saturated` the fraction of codes at the op's
//    output clamp (quant_min or quant_max; an end at the zero point, a fused ReLU's
//    zero, does not count). Errors carried in from earlier tensors
//    are included (this is the error the tensor ends up with), as AIMET's and
//    PyTorch's numeric suites report it.
//  - backend vs reference, per op (EvaluateBackends' per_op): identical / off by
//    one / larger, the largest difference in steps, the op alone on the reference's
//    inputs, and the first op where a backend departs.
// Cost: one float pass and one reference pass over `batch` images (64 in the
// driver), on top of the per-op comparison evaluate already makes per backend.
#ifndef QUANT_PTQ_NUMERICAL_DEBUGGER_H_
#define QUANT_PTQ_NUMERICAL_DEBUGGER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"
#include "quant/ptq/evaluate.h"

namespace quant::ptq {

struct TensorDebug {
  int tensor = -1;
  std::string name;        // the tensor's name (its op's, or "input")
  std::string op, kind;    // the producing op ("" for the model input)
  float scale = 0;
  int32_t zero_point = 0, quant_min = 0, quant_max = 0;
  int64_t values = 0;
  double sqnr_db = 0;      // +inf when identical
  double clipped = 0;      // fraction of float values outside the range
  double saturated = 0;    // fraction of codes at quant_min or quant_max (unless that end is the zero point)
  // The float values' histogram: kHistogramBins equal bins over [histogram_min, histogram_max]
  // (the values' own range), for plotting against the calibrated range s * ([qmin, qmax] - z).
  static constexpr int kHistogramBins = 64;
  double histogram_min = 0, histogram_max = 0;
  std::vector<int64_t> histogram;
};

// Float net vs the integer model on the reference backend, per tensor (the input
// and every op's output), on `batch` NHWC images `x`. `float_net` must be the net
// `model` was quantized from (same tensors).
absl::StatusOr<std::vector<TensorDebug>> CompareWithFloat(const backends::QuantizedModel& float_net,
                                                          const backends::QuantizedModel& model, const float* x,
                                                          int64_t batch);

// One line: "first divergence: xnnpack at conv2 (conv2d), 3.1 % of outputs off by one;
// reference == gemmlowp everywhere; lowest SQNR: fc3 18.2 dB; most clipped: relu1 0.52 %".
std::string DebugSummary(const std::vector<TensorDebug>& tensors, const std::vector<BackendEvaluation>& evals);

// A compact table, one line per tensor, with each integer backend's agreement.
std::vector<std::string> DebugTable(const std::vector<TensorDebug>& tensors,
                                    const std::vector<BackendEvaluation>& evals);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_NUMERICAL_DEBUGGER_H_
