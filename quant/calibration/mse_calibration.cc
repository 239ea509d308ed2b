#include "quant/calibration/mse_calibration.h"

#include <algorithm>
#include <cmath>

#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<CalibrationMethod>> MseCalibration::Create(ParamReader& p) {
  const int k = static_cast<int>(
      p.IntInRange("candidates", 256, 8, 8192, "number of candidate ranges tried"));
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<CalibrationMethod>(new MseCalibration(k));
}

absl::StatusOr<std::vector<Range>> MseCalibration::ChooseRanges(const Observer& observer) const {
  auto h = RequireHistogram(observer, "mse");
  if (!h.ok()) return h.status();
  const HistogramStats& hs = **h;
  const QuantSpec& spec = observer.spec();
  const float amax = std::max(std::fabs(hs.min_val), std::fabs(hs.max_val));
  Range best{hs.min_val, hs.max_val};
  double best_err = HUGE_VAL;
  for (int k = candidates_; k >= 1; --k) {
    const float f = static_cast<float>(k) / candidates_;
    Range r;
    if (spec.symmetric) {
      r = Range{-amax * f, amax * f};
    } else {
      r = Range{hs.min_val < 0 ? hs.min_val * f : hs.min_val,
                hs.max_val > 0 ? hs.max_val * f : hs.max_val};
    }
    const double err = ExpectedFakeQuantMse(hs, spec, r.lo, r.hi);
    if (err < best_err) {
      best_err = err;
      best = r;
    }
  }
  return std::vector<Range>{best};
}

QUANTLAB_REGISTER(CalibrationMethod, "mse", MseCalibration::Create,
                  "range with the least expected fake-quant MSE on the histogram");

}  // namespace quant
