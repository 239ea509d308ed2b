// The quantizer interface (registry `quantizer:`): a ready "tensor quantizer"
// built from one YAML map such as
//
//   {quantizer: affine, bits: 4, symmetric: true, granularity: per_channel,
//    axis: 0, observer: minmax, calibration: percentile, percentile: 99.99}
//
// It is what QAT and PTQ call: Observe() batches, ComputeQParams(), then
// Forward() (fake quantization) / Backward() (straight-through estimator) /
// QuantizeToInt(). In training, Forward() with the observer enabled observes
// the batch and recomputes the qparams first, as PyTorch's FakeQuantize does.
//
// Learned quantizers (PACT, LSQ, ...) expose their trainable values through
// parameters(): Backward() accumulates their gradients into `grad`, and the
// optimizer updates `value`; ComputeQParams() then re-derives the qparams.
#ifndef QUANT_QUANTIZERS_QUANTIZER_H_
#define QUANT_QUANTIZERS_QUANTIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/core/tensor.h"
#include "quant/qmath/qparams.h"

namespace quant {

// A trainable value of a quantizer and its gradient (same shape).
struct LearnedParameter {
  std::string name;  // e.g. "alpha", "step_size"
  Tensor value;
  Tensor grad;
};

class Quantizer {
 public:
  static constexpr char kRegistryKind[] = "quantizer";
  virtual ~Quantizer() = default;

  // Adds a batch to the statistics (calibration).
  virtual absl::Status Observe(const Tensor& x) = 0;
  // Computes the qparams from what was observed (FailedPrecondition before).
  virtual absl::Status ComputeQParams() = 0;
  virtual bool calibrated() const = 0;
  virtual const QParams& qparams() const = 0;
  virtual const QuantSpec& spec() const = 0;

  // Fake quantization; remembers what Backward() needs.
  virtual absl::Status Forward(const Tensor& x, Tensor* y) = 0;
  // d(loss)/dx from d(loss)/dy of the last Forward(); accumulates the
  // gradients of parameters().
  virtual absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) = 0;
  // Integer codes with the current qparams.
  virtual absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const = 0;

  // The integer grid Forward()'s outputs lie on, as affine qparams: every output
  // y equals scale * (q - zero_point) for an integer q in [quant_min, quant_max].
  // Conversion of a QAT-trained model to an integer one (ptq: from_qat) reads it,
  // so that the integer model computes exactly what was trained. It may differ
  // from qparams() (DoReFa's weights: codes 2k - n at scale 1/n, zero point 0).
  // Default: Unimplemented naming the quantizer (no integer grid: format_cast,
  // binary, ...). Call after a Forward() with the final learned values.
  virtual absl::StatusOr<QParams> IntegerGrid() const;

  // Trainable values (empty for quantizers with no learned parameters).
  virtual std::vector<LearnedParameter*> parameters() { return {}; }

  // Whether Forward() observes and recomputes qparams (QAT: on while
  // training, off to freeze) and whether it quantizes at all.
  void set_observer_enabled(bool on) { observer_enabled_ = on; }
  void set_fake_quant_enabled(bool on) { fake_quant_enabled_ = on; }
  bool observer_enabled() const { return observer_enabled_; }
  bool fake_quant_enabled() const { return fake_quant_enabled_; }

  // One line for logs: "affine 4-bit signed symmetric ... observer minmax".
  virtual std::string Describe() const = 0;

 protected:
  bool observer_enabled_ = false;
  bool fake_quant_enabled_ = true;
};

// Builds the quantizer named by `quantizer:` (default affine) from the map of
// `p`; every key is read through `p`, so the caller's p.Finish() catches
// unknown ones.
absl::StatusOr<std::unique_ptr<Quantizer>> BuildQuantizer(ParamReader& p);

// The same from YAML text (the whole document is the map); also runs
// Finish(). `file` locates errors.
absl::StatusOr<std::unique_ptr<Quantizer>> BuildQuantizerFromYaml(const std::string& yaml,
                                                                  const std::string& file = "<yaml>");

}  // namespace quant

#endif  // QUANT_QUANTIZERS_QUANTIZER_H_
