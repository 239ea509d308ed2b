// `pow2`: an affine quantizer whose scales are powers of two, so that
// rescaling is a bit shift on integer hardware. A research plugin that lives
// outside quant/: it reuses the affine quantizer (spec keys, observer,
// calibration) and only changes how the scale is chosen. See
// docs/adding_a_quantizer.md, which walks through this file.
#ifndef CONTRIB_POW2_QUANTIZER_POW2_QUANTIZER_H_
#define CONTRIB_POW2_QUANTIZER_POW2_QUANTIZER_H_

#include <memory>

#include "quant/quantizers/affine_quantizer.h"

namespace contrib {

class Pow2Quantizer : public quant::AffineQuantizer {
 public:
  enum class Rounding { kCeil, kNearest, kFloor };

  // Reads `rounding` (ceil|nearest|floor; default ceil, which never clips
  // more than the affine scale would) plus every key of `affine`.
  static absl::StatusOr<std::unique_ptr<quant::Quantizer>> Create(quant::ParamReader& p);

  Pow2Quantizer(Components c, Rounding rounding)
      : AffineQuantizer(std::move(c)), rounding_(rounding) {}

  // 2^round(log2(scale)) in the chosen direction.
  static float PowerOfTwoScale(float scale, Rounding rounding);

 protected:
  // Replaces each scale by a power of two and recomputes the affine zero
  // point for the same real minimum (symmetric zero points do not move).
  absl::Status AdjustQParams(quant::QParams* qp) const override;
  const char* name() const override { return "pow2"; }

 private:
  Rounding rounding_;
};

}  // namespace contrib

#endif  // CONTRIB_POW2_QUANTIZER_POW2_QUANTIZER_H_
