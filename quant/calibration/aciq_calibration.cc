#include "quant/calibration/aciq_calibration.h"

#include <algorithm>
#include <cmath>

#include "quant/core/registry.h"

namespace quant {
namespace {

// Expected error for unit b / sigma at clipping alpha with 2^bits levels.
double AciqError(AciqCalibration::Distribution d, double alpha, int bits) {
  const double rounding = alpha * alpha / (3.0 * std::pow(4.0, bits));
  if (d == AciqCalibration::Distribution::kLaplace) return 2.0 * std::exp(-alpha) + rounding;
  const double clip = (alpha * alpha + 1.0) * (1.0 - std::erf(alpha / std::sqrt(2.0))) -
                      std::sqrt(2.0 / M_PI) * alpha * std::exp(-alpha * alpha / 2.0);
  return clip + rounding;
}

}  // namespace

double AciqCalibration::OptimalAlpha(Distribution d, int bits) {
  // The error is unimodal in alpha: golden-section search on [0, 40].
  double a = 0.0, b = 40.0;
  const double g = (std::sqrt(5.0) - 1) / 2;
  double c = b - g * (b - a), e = a + g * (b - a);
  for (int it = 0; it < 200; ++it) {
    if (AciqError(d, c, bits) < AciqError(d, e, bits)) {
      b = e;
    } else {
      a = c;
    }
    c = b - g * (b - a);
    e = a + g * (b - a);
  }
  return (a + b) / 2;
}

absl::StatusOr<std::unique_ptr<CalibrationMethod>> AciqCalibration::Create(ParamReader& p) {
  const std::string d = p.Choice("distribution", "laplace", {"laplace", "gaussian"},
                                 "prior fitted to the data");
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<CalibrationMethod>(
      new AciqCalibration(d == "gaussian" ? Distribution::kGaussian : Distribution::kLaplace));
}

absl::StatusOr<std::vector<Range>> AciqCalibration::ChooseRanges(const Observer& observer) const {
  auto h = RequireHistogram(observer, "aciq");
  if (!h.ok()) return h.status();
  const HistogramStats& hs = **h;
  const double mean = hs.mean();
  double spread;
  if (distribution_ == Distribution::kGaussian) {
    spread = hs.stddev();
  } else {
    // b = E|x - mean|, from the histogram's bin centres.
    const int bins = static_cast<int>(hs.counts.size());
    const double w = (static_cast<double>(hs.edge_hi) - hs.edge_lo) / bins;
    double sum = 0, total = 0;
    for (int k = 0; k < bins; ++k) {
      sum += hs.counts[k] * std::fabs(hs.edge_lo + (k + 0.5) * w - mean);
      total += hs.counts[k];
    }
    spread = total > 0 ? sum / total : 0.0;
  }
  const double alpha = OptimalAlpha(distribution_, observer.spec().bits) * spread;
  Range r{static_cast<float>(mean - alpha), static_cast<float>(mean + alpha)};
  r.lo = std::max(r.lo, hs.min_val);
  r.hi = std::min(r.hi, hs.max_val);
  if (r.hi < r.lo) r = Range{hs.min_val, hs.max_val};
  return std::vector<Range>{r};
}

QUANTLAB_REGISTER(CalibrationMethod, "aciq", AciqCalibration::Create,
                  "analytical clipping for Laplace/Gaussian data (Banner et al. 2019)");

}  // namespace quant
