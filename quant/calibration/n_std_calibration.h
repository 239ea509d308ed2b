// `n_std`: mean +- k standard deviations of everything observed, clipped to
// the observed range (k = `num_std`, default 3).
#ifndef QUANT_CALIBRATION_N_STD_CALIBRATION_H_
#define QUANT_CALIBRATION_N_STD_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class NStdCalibration : public CalibrationMethod {
 public:
  explicit NStdCalibration(double k) : k_(k) {}
  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return true; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

 private:
  double k_;
};

}  // namespace quant

#endif  // QUANT_CALIBRATION_N_STD_CALIBRATION_H_
