// `percentile`: clip at a percentile of the histogram (e.g. 99.99). Symmetric
// specs clip |x| at the percentile; affine specs clip each tail at
// (100 - p)% and p%.
#ifndef QUANT_CALIBRATION_PERCENTILE_CALIBRATION_H_
#define QUANT_CALIBRATION_PERCENTILE_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class PercentileCalibration : public CalibrationMethod {
 public:
  explicit PercentileCalibration(double percentile) : percentile_(percentile) {}
  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return true; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

 private:
  double percentile_;
};

}  // namespace quant

#endif  // QUANT_CALIBRATION_PERCENTILE_CALIBRATION_H_
