#include "quant/calibration/max_calibration.h"

#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<CalibrationMethod>> MaxCalibration::Create(ParamReader& p) {
  (void)p;
  return std::unique_ptr<CalibrationMethod>(new MaxCalibration());
}

absl::StatusOr<std::vector<Range>> MaxCalibration::ChooseRanges(const Observer& observer) const {
  return observer.Ranges();
}

QUANTLAB_REGISTER(CalibrationMethod, "max", MaxCalibration::Create,
                  "the observed min/max, unclipped");

}  // namespace quant
