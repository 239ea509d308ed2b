#include "contrib/pow2_quantizer/pow2_quantizer.h"

#include <algorithm>
#include <cmath>

#include "quant/core/registry.h"

namespace contrib {

float Pow2Quantizer::PowerOfTwoScale(float scale, Rounding rounding) {
  const double e = std::log2(static_cast<double>(scale));
  const double r = rounding == Rounding::kCeil    ? std::ceil(e)
                   : rounding == Rounding::kFloor ? std::floor(e)
                                                  : std::nearbyint(e);
  return static_cast<float>(std::ldexp(1.0, static_cast<int>(r)));
}

absl::StatusOr<std::unique_ptr<quant::Quantizer>> Pow2Quantizer::Create(quant::ParamReader& p) {
  const std::string rounding = p.Choice("rounding", "ceil", {"ceil", "nearest", "floor"},
                                        "direction in which the scale becomes a power of two");
  Components c;
  absl::Status s = ReadComponents(p, &c);
  if (!s.ok()) return s;
  const Rounding r = rounding == "floor"     ? Rounding::kFloor
                     : rounding == "nearest" ? Rounding::kNearest
                                             : Rounding::kCeil;
  return std::unique_ptr<quant::Quantizer>(new Pow2Quantizer(std::move(c), r));
}

absl::Status Pow2Quantizer::AdjustQParams(quant::QParams* qp) const {
  for (int64_t g = 0; g < qp->size(); ++g) {
    const float old_scale = qp->scale[g];
    const float scale = PowerOfTwoScale(old_scale, rounding_);
    qp->scale[g] = scale;
    if (!spec().symmetric) {
      // Keep the real value at quant_min, (quant_min - zp) * scale, in place.
      const double real_min = static_cast<double>(qp->quant_min - qp->zero_point[g]) * old_scale;
      const double zp = qp->quant_min - std::nearbyint(real_min / scale);
      qp->zero_point[g] = static_cast<int32_t>(
          std::min<double>(std::max<double>(zp, qp->quant_min), qp->quant_max));
    }
  }
  return absl::OkStatus();
}

QUANTLAB_REGISTER(quant::Quantizer, "pow2", Pow2Quantizer::Create,
                  "affine quantizer with power-of-two scales (contrib plugin)");

}  // namespace contrib
