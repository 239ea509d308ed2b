#include "quant/observers/fixed_observer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<Observer>> FixedObserver::Create(ParamReader& p) {
  const double scale = p.RequiredDouble("scale", "the fixed scale (> 0)");
  const int64_t zp = p.Int("zero_point", 0, "the fixed zero point (inside [quant_min, quant_max])");
  if (!p.describing() && p.status().ok() && !(scale > 0 && std::isfinite(scale))) {
    p.Fail("scale", absl::StrCat("scale must be a positive finite number, got ", scale));
  }
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Observer>(
      new FixedObserver(static_cast<float>(scale), static_cast<int32_t>(zp), p.Location("zero_point")));
}

absl::Status FixedObserver::Bind(const QuantSpec& spec) {
  if (spec.granularity != Granularity::kPerTensor) {
    return absl::InvalidArgumentError("observer 'fixed' supports granularity: per_tensor only");
  }
  if (zero_point_ < spec.quant_min || zero_point_ > spec.quant_max) {
    return absl::InvalidArgumentError(absl::StrCat(zero_point_where_, ": zero_point ", zero_point_,
                                                   " is outside [", spec.quant_min, ", ",
                                                   spec.quant_max, "]"));
  }
  return Observer::Bind(spec);
}

absl::StatusOr<std::vector<Range>> FixedObserver::Ranges() const {
  return std::vector<Range>{Range{(spec_.quant_min - zero_point_) * scale_,
                                  (spec_.quant_max - zero_point_) * scale_}};
}

absl::StatusOr<QParams> FixedObserver::ComputeQParams() const {
  return MakeQParams({scale_}, {zero_point_});
}

QUANTLAB_REGISTER(Observer, "fixed", FixedObserver::Create,
                  "fixed scale/zero point from the config (PyTorch FixedQParamsObserver)");

}  // namespace quant
