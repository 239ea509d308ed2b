#include "quant/calibration/percentile_calibration.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<CalibrationMethod>> PercentileCalibration::Create(ParamReader& p) {
  const double pct = p.Double("percentile", 99.99, "percentile of the data kept inside the range, in (0, 100]");
  if (!p.describing() && p.status().ok() && !(pct > 0 && pct <= 100)) {
    p.Fail("percentile", absl::StrCat("percentile must be in (0, 100], got ", pct));
  }
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<CalibrationMethod>(new PercentileCalibration(pct));
}

absl::StatusOr<std::vector<Range>> PercentileCalibration::ChooseRanges(
    const Observer& observer) const {
  auto h = RequireHistogram(observer, "percentile");
  if (!h.ok()) return h.status();
  const HistogramStats& hs = **h;
  const double f = percentile_ / 100.0;
  Range r;
  if (observer.spec().symmetric) {
    HistogramStats abs_h;
    double amax;
    const std::vector<double> a = AbsHistogram(hs, static_cast<int>(hs.counts.size()), &amax);
    abs_h.counts.assign(a.begin(), a.end());
    abs_h.edge_lo = 0;
    abs_h.edge_hi = static_cast<float>(amax);
    const float t = static_cast<float>(HistogramQuantile(abs_h, f));
    r = Range{std::max(-t, hs.min_val), std::min(t, hs.max_val)};
  } else {
    r = Range{static_cast<float>(HistogramQuantile(hs, 1.0 - f)),
              static_cast<float>(HistogramQuantile(hs, f))};
    // Both ends inside the observed [min, max]: a bin edge of an all-zero tensor's histogram
    // (9.8e-08) must not become a lower end above its max of 0.
    r.lo = std::min(std::max(r.lo, hs.min_val), hs.max_val);
    r.hi = std::min(std::max(r.hi, r.lo), hs.max_val);
  }
  return std::vector<Range>{r};
}

QUANTLAB_REGISTER(CalibrationMethod, "percentile", PercentileCalibration::Create,
                  "clip at a percentile of the histogram (|x| for symmetric specs)");

}  // namespace quant
