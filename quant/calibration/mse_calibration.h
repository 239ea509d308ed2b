// `mse`: the range with the least expected fake-quant MSE over `candidates`
// ranges shrinking from the observed one toward zero (symmetric: [-T, T] with
// T = k/K * max|x|; affine: both ends scaled by k/K), the error measured on the
// histogram with the spec's own qparams and rounding.
#ifndef QUANT_CALIBRATION_MSE_CALIBRATION_H_
#define QUANT_CALIBRATION_MSE_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class MseCalibration : public CalibrationMethod {
 public:
  explicit MseCalibration(int candidates) : candidates_(candidates) {}
  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return true; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

 private:
  int candidates_;
};

}  // namespace quant

#endif  // QUANT_CALIBRATION_MSE_CALIBRATION_H_
