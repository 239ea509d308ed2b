#include "quant/calibration/calibration.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/qmath/fake_quant.h"

namespace quant {

absl::StatusOr<const HistogramStats*> RequireHistogram(const Observer& observer,
                                                       const char* method) {
  const HistogramStats* h = observer.histogram();
  if (h == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "calibration '", method,
        "' needs a histogram: use `observer: histogram` and observe data first"));
  }
  return h;
}

double HistogramQuantile(const HistogramStats& h, double fraction) {
  const int bins = static_cast<int>(h.counts.size());
  const double total = h.total();
  if (total <= 0 || bins == 0) return h.min_val;
  const double width = (static_cast<double>(h.edge_hi) - h.edge_lo) / bins;
  // The relative slack keeps 99.9/100 * 1000 (= 999.0000000000001) at 999.
  const double target = std::min(std::max(fraction, 0.0), 1.0) * total * (1 - 1e-12);
  double cum = 0;
  for (int b = 0; b < bins; ++b) {
    const double c = h.counts[b];
    if (c > 0 && cum + c >= target) {
      const double inside = (target - cum) / c;
      return h.edge_lo + (b + inside) * width;
    }
    cum += c;
  }
  return h.edge_hi;
}

std::vector<double> AbsHistogram(const HistogramStats& h, int bins, double* amax) {
  const int src = static_cast<int>(h.counts.size());
  const double lo = h.edge_lo, hi = h.edge_hi;
  *amax = std::max(std::fabs(lo), std::fabs(hi));
  std::vector<double> out(bins, 0.0);
  if (*amax <= 0 || src == 0) return out;
  const double w = (hi - lo) / src;
  const double dst_w = *amax / bins;
  // Adds `count` spread uniformly over |x| in [a, b] (0 <= a <= b).
  auto spread = [&](double a, double b, double count) {
    if (count == 0) return;
    if (b <= a) {
      out[std::min(bins - 1, static_cast<int>(a / dst_w))] += count;
      return;
    }
    const int first = std::min(bins - 1, static_cast<int>(a / dst_w));
    const int last = std::min(bins - 1, static_cast<int>(b / dst_w));
    for (int k = first; k <= last; ++k) {
      const double s = std::max(a, k * dst_w), e = std::min(b, (k + 1) * dst_w);
      if (e > s) out[k] += count * (e - s) / (b - a);
    }
  };
  for (int i = 0; i < src; ++i) {
    const double a = lo + i * w, b = a + w, c = h.counts[i];
    if (a >= 0) {
      spread(a, b, c);
    } else if (b <= 0) {
      spread(-b, -a, c);
    } else {
      spread(0, -a, c * (-a) / w);
      spread(0, b, c * b / w);
    }
  }
  return out;
}

double ExpectedFakeQuantMse(const HistogramStats& h, const QuantSpec& spec, float lo, float hi) {
  float scale;
  int32_t zp;
  if (!TorchObserverQParams(spec, lo, hi, &scale, &zp).ok()) return HUGE_VAL;
  const int bins = static_cast<int>(h.counts.size());
  const double w = (static_cast<double>(h.edge_hi) - h.edge_lo) / bins;
  constexpr int kSamples = 4;
  double err = 0;
  float xs[kSamples], ys[kSamples];
  for (int b = 0; b < bins; ++b) {
    if (h.counts[b] == 0) continue;
    for (int s = 0; s < kSamples; ++s) {
      xs[s] = static_cast<float>(h.edge_lo + (b + (s + 0.5) / kSamples) * w);
    }
    FakeQuantizeSpan(xs, ys, nullptr, kSamples, scale, zp, spec.quant_min, spec.quant_max);
    double e = 0;
    for (int s = 0; s < kSamples; ++s) e += (static_cast<double>(xs[s]) - ys[s]) * (xs[s] - ys[s]);
    err += h.counts[b] * e / kSamples;
  }
  return err / std::max(1.0, h.total());
}

}  // namespace quant
