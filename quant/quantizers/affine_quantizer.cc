#include "quant/quantizers/affine_quantizer.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/qmath/fake_quant.h"

namespace quant {

absl::Status AffineQuantizer::ReadComponents(ParamReader& p, Components* c, int default_bits) {
  c->spec = ReadQuantSpec(p, default_bits);
  c->observer_name = p.String("observer", "minmax", "observer collecting statistics");
  c->calibration_name = p.String(
      "calibration", "none",
      "calibration method choosing the range; none: the observer's own qparams");
  if (c->calibration_name == "none") c->calibration_name.clear();
  if (!p.status().ok() && !p.describing()) return p.status();
  auto obs = Registry<Observer>::Get().CreateFrom(p, "observer", "minmax", "observer");
  if (!obs.ok()) return obs.status();
  c->observer = std::move(*obs);
  // A method's own keys (percentile, ...) are listed under the calibration
  // registry by `run --list`, not here.
  if (!c->calibration_name.empty() && !p.describing()) {
    auto cal = Registry<CalibrationMethod>::Get().CreateFrom(p, "calibration", "max", "calibration");
    if (!cal.ok()) return cal.status();
    c->calibration = std::move(*cal);
  }
  if (p.describing()) return absl::OkStatus();
  if (absl::Status s = c->observer->Bind(c->spec); !s.ok()) {
    p.Fail("observer", std::string(s.message()));
    return p.status();
  }
  if (c->calibration != nullptr && c->calibration->needs_histogram() &&
      !c->observer->keeps_histogram()) {
    p.Fail("calibration", absl::StrCat("calibration '", c->calibration_name,
                                       "' needs a histogram; use `observer: histogram` (got '",
                                       c->observer_name, "')"));
    return p.status();
  }
  return p.status();
}

absl::StatusOr<std::unique_ptr<Quantizer>> AffineQuantizer::Create(ParamReader& p) {
  Components c;
  absl::Status s = ReadComponents(p, &c);
  if (!s.ok()) return s;
  return std::unique_ptr<Quantizer>(new AffineQuantizer(std::move(c)));
}

AffineQuantizer::AffineQuantizer(Components c) : c_(std::move(c)) {}

absl::Status AffineQuantizer::Observe(const Tensor& x) { return c_.observer->Observe(x); }

absl::Status AffineQuantizer::ComputeQParams() {
  QParams qp;
  if (c_.calibration != nullptr) {
    auto ranges = c_.calibration->ChooseRanges(*c_.observer);
    if (!ranges.ok()) return ranges.status();
    std::vector<float> scale(ranges->size());
    std::vector<int32_t> zp(ranges->size());
    for (size_t g = 0; g < ranges->size(); ++g) {
      absl::Status s =
          TorchObserverQParams(c_.spec, (*ranges)[g].lo, (*ranges)[g].hi, &scale[g], &zp[g]);
      if (!s.ok()) return s;
    }
    qp = c_.observer->MakeQParams(std::move(scale), std::move(zp));
  } else {
    auto own = c_.observer->ComputeQParams();
    if (!own.ok()) return own.status();
    qp = std::move(*own);
  }
  absl::Status s = AdjustQParams(&qp);
  if (!s.ok()) return s;
  qparams_ = std::move(qp);
  calibrated_ = true;
  return absl::OkStatus();
}

absl::Status AffineQuantizer::Forward(const Tensor& x, Tensor* y) {
  if (observer_enabled_) {
    absl::Status s = Observe(x);
    if (!s.ok()) return s;
    s = ComputeQParams();
    if (!s.ok()) return s;
  }
  if (!fake_quant_enabled_) {
    if (y != &x) *y = x;
    mask_.assign(x.numel(), 1);
    return absl::OkStatus();
  }
  if (!calibrated_) {
    return absl::FailedPreconditionError(
        "affine quantizer: Forward() before any qparams (observe data and ComputeQParams(), "
        "or enable the observer)");
  }
  auto split = CheckQParamsForShape(qparams_, x.shape(), c_.spec.axis_where, c_.spec.block_size_where);
  if (!split.ok()) return split.status();
  return FakeQuantize(x, qparams_, y, &mask_);
}

absl::Status AffineQuantizer::Backward(const Tensor& grad_y, Tensor* grad_x) {
  return FakeQuantizeBackward(grad_y, mask_, grad_x);
}

absl::Status AffineQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  if (!calibrated_) {
    return absl::FailedPreconditionError("affine quantizer: QuantizeToInt() before calibration");
  }
  auto split = CheckQParamsForShape(qparams_, x.shape(), c_.spec.axis_where, c_.spec.block_size_where);
  if (!split.ok()) return split.status();
  return Quantize(x, qparams_, q);
}

std::string AffineQuantizer::Describe() const {
  return absl::StrCat(name(), " ", c_.spec.Describe(), " observer ", c_.observer_name,
                      c_.calibration_name.empty() ? "" : " calibration ", c_.calibration_name);
}

QUANTLAB_REGISTER(Quantizer, "affine", AffineQuantizer::Create,
                  "uniform affine/symmetric fake quantization, exact to PyTorch 1.13");

absl::StatusOr<QParams> AffineQuantizer::IntegerGrid() const {
  if (!calibrated_) return absl::FailedPreconditionError("affine: no qparams yet (nothing observed)");
  if (qparams_.granularity == Granularity::kPerBlock) {
    return absl::UnimplementedError("affine per_block (per-group) qparams have no integer form in the QuantizedModel");
  }
  return qparams_;
}

}  // namespace quant
