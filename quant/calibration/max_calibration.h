// `max`: the observed range as is (per group; works with every observer).
#ifndef QUANT_CALIBRATION_MAX_CALIBRATION_H_
#define QUANT_CALIBRATION_MAX_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class MaxCalibration : public CalibrationMethod {
 public:

  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return false; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

};

}  // namespace quant

#endif  // QUANT_CALIBRATION_MAX_CALIBRATION_H_
