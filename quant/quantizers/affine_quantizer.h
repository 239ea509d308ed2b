// `affine`: uniform affine (or symmetric) quantization with PyTorch-exact
// fake quantization and STE, its qparams from an observer (`observer:`,
// default minmax) optionally through a calibration method (`calibration:`).
//
// Subclasses that only change how qparams are derived (e.g. a power-of-two
// scale, contrib/pow2_quantizer) reuse everything by overriding
// AdjustQParams() and building with ReadComponents().
#ifndef QUANT_QUANTIZERS_AFFINE_QUANTIZER_H_
#define QUANT_QUANTIZERS_AFFINE_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/calibration/calibration.h"
#include "quant/observers/observer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {

class AffineQuantizer : public Quantizer {
 public:
  // What an affine-style quantizer is made of.
  struct Components {
    QuantSpec spec;
    std::string observer_name;
    std::unique_ptr<Observer> observer;
    std::string calibration_name;  // empty (`calibration: none`): the observer's own qparams
    std::unique_ptr<CalibrationMethod> calibration;  // may be null
  };

  // Reads the spec keys, `observer:` (default minmax) with its keys and
  // `calibration:` (optional) with its keys from `p`, and checks that they fit
  // together (errors recorded on `p` naming the key). `default_bits` is the
  // bit width when the map has none.
  static absl::Status ReadComponents(ParamReader& p, Components* c, int default_bits = 8);
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);

  explicit AffineQuantizer(Components c);

  absl::Status Observe(const Tensor& x) override;
  absl::Status ComputeQParams() override;
  bool calibrated() const override { return calibrated_; }
  const QParams& qparams() const override { return qparams_; }
  absl::StatusOr<QParams> IntegerGrid() const override;
  const QuantSpec& spec() const override { return c_.spec; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;

  const Observer& observer() const { return *c_.observer; }

 protected:
  // Hook for subclasses: adjust freshly computed qparams (default: none).
  virtual absl::Status AdjustQParams(QParams* qp) const { return absl::OkStatus(); }
  virtual const char* name() const { return "affine"; }

  Components c_;
  QParams qparams_;
  bool calibrated_ = false;
  std::vector<uint8_t> mask_;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_AFFINE_QUANTIZER_H_
