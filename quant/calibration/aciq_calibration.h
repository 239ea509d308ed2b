// `aciq`: analytical clipping (Banner, Nahshan, Soudry, "Post training 4-bit
// quantization of convolutional networks for rapid-deployment", NeurIPS 2019).
// Fits a Laplace (b = E|x - mean|) or Gaussian (sigma) to the data and takes the
// alpha minimising the paper's expected error
//   Laplace:  2 b^2 exp(-alpha/b) + alpha^2 / (3 * 4^M)
//   Gaussian: (alpha^2 + s^2)(1 - erf(alpha/(sqrt2 s))) - sqrt(2/pi) alpha s exp(-alpha^2/2s^2)
//             + alpha^2 / (3 * 4^M)
// for M = bits (giving the paper's alpha/b = 2.83, 3.89, 5.03 ... 9.89 for
// M = 2, 3, 4 ... 8); the range is mean +- alpha clipped to the observed one.
#ifndef QUANT_CALIBRATION_ACIQ_CALIBRATION_H_
#define QUANT_CALIBRATION_ACIQ_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class AciqCalibration : public CalibrationMethod {
 public:
  enum class Distribution { kLaplace, kGaussian };
  explicit AciqCalibration(Distribution d) : distribution_(d) {}
  // alpha / b (Laplace) or alpha / sigma (Gaussian) for `bits`.
  static double OptimalAlpha(Distribution d, int bits);
  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return true; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

 private:
  Distribution distribution_;
};

}  // namespace quant

#endif  // QUANT_CALIBRATION_ACIQ_CALIBRATION_H_
