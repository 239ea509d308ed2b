#include "quant/calibration/n_std_calibration.h"

#include <algorithm>

#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<CalibrationMethod>> NStdCalibration::Create(ParamReader& p) {
  const double k = p.DoubleInRange("num_std", 3.0, 0.01, 1000.0, "standard deviations each side of the mean");
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<CalibrationMethod>(new NStdCalibration(k));
}

absl::StatusOr<std::vector<Range>> NStdCalibration::ChooseRanges(const Observer& observer) const {
  auto h = RequireHistogram(observer, "n_std");
  if (!h.ok()) return h.status();
  const HistogramStats& hs = **h;
  const double m = hs.mean(), s = hs.stddev();
  Range r{static_cast<float>(m - k_ * s), static_cast<float>(m + k_ * s)};
  r.lo = std::max(r.lo, hs.min_val);
  r.hi = std::min(r.hi, hs.max_val);
  if (r.hi < r.lo) r = Range{hs.min_val, hs.max_val};
  return std::vector<Range>{r};
}

QUANTLAB_REGISTER(CalibrationMethod, "n_std", NStdCalibration::Create,
                  "mean +- num_std standard deviations, clipped to the observed range");

}  // namespace quant
