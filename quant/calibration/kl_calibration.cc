#include "quant/calibration/kl_calibration.h"

#include "absl/strings/str_cat.h"

#include <algorithm>
#include <cmath>

#include "quant/core/registry.h"

namespace quant {
namespace {

// MXNet's _smooth_distribution: move eps of mass onto empty bins so the KL
// divergence stays finite. Returns false when everything is empty.
bool Smooth(std::vector<double>* p, double eps = 1e-4) {
  int64_t zeros = 0;
  for (double v : *p) zeros += v == 0;
  const int64_t nonzeros = static_cast<int64_t>(p->size()) - zeros;
  if (nonzeros == 0) return false;
  const double eps1 = eps * static_cast<double>(zeros) / nonzeros;
  for (double& v : *p) v += v == 0 ? eps : -eps1;
  return true;
}

double KlDivergence(std::vector<double> p, std::vector<double> q) {
  double sp = 0, sq = 0;
  for (double v : p) sp += v;
  for (double v : q) sq += v;
  if (sp <= 0 || sq <= 0) return HUGE_VAL;
  for (double& v : p) v /= sp;
  for (double& v : q) v /= sq;
  if (!Smooth(&p) || !Smooth(&q)) return HUGE_VAL;
  double kl = 0;
  for (size_t k = 0; k < p.size(); ++k) {
    if (p[k] > 0 && q[k] > 0) kl += p[k] * std::log(p[k] / q[k]);
  }
  return kl;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CalibrationMethod>> KlCalibration::Create(ParamReader& p) {
  const int bins = static_cast<int>(
      p.IntInRange("kl_bins", 2048, 256, 1 << 16, "bins of the |x| histogram (TensorRT: 2048)"));
  const int start_bin = static_cast<int>(p.IntInRange(
      "kl_start_bin", 128, 2, 1 << 16,
      "smallest candidate threshold, in bins (NVIDIA pytorch-quantization: 128 at every bit width)"));
  if (!p.status().ok()) return p.status();
  if (start_bin > bins) {
    p.Fail("kl_start_bin", absl::StrCat("must be at most kl_bins (", bins, "), got ", start_bin));
    return p.status();
  }
  return std::unique_ptr<CalibrationMethod>(new KlCalibration(bins, start_bin));
}

absl::StatusOr<std::vector<Range>> KlCalibration::ChooseRanges(const Observer& observer) const {
  auto h = RequireHistogram(observer, "kl");
  if (!h.ok()) return h.status();
  const HistogramStats& hs = **h;
  const QuantSpec& spec = observer.spec();
  double amax;
  const std::vector<double> hist = AbsHistogram(hs, bins_, &amax);
  const int levels = static_cast<int>(spec.levels());
  const int nq = std::max(2, NonNegative(hs) ? levels : levels / 2);
  if (amax <= 0 || nq >= bins_) return std::vector<Range>{Range{hs.min_val, hs.max_val}};
  double best_kl = HUGE_VAL;
  int best_i = bins_;
  std::vector<double> p, q;
  // Thresholds below start_bin_ bins are not tried: at few bits (n = 8 or 16)
  // the first candidates merge nothing, and on ReLU outputs (a spike at zero)
  // KL(P||Q) there can be smallest while clipping nearly every non-zero value.
  for (int i = std::max(nq, start_bin_); i <= bins_; ++i) {
    p.assign(hist.begin(), hist.begin() + i);
    double outliers = 0;
    for (int k = i; k < bins_; ++k) outliers += hist[k];
    p[i - 1] += outliers;
    // Merge the i reference bins into nq quantized bins, expand back.
    q.assign(i, 0.0);
    const int merged = i / nq;
    for (int j = 0; j < nq; ++j) {
      const int start = j * merged;
      const int stop = j == nq - 1 ? i : start + merged;
      double sum = 0;
      int nonzero = 0;
      for (int k = start; k < stop; ++k) {
        sum += hist[k];
        nonzero += hist[k] != 0;
      }
      if (nonzero == 0) continue;
      for (int k = start; k < stop; ++k) q[k] = hist[k] != 0 ? sum / nonzero : 0.0;
    }
    const double kl = KlDivergence(p, q);
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  const float t = static_cast<float>(amax * best_i / bins_);
  return std::vector<Range>{Range{std::max(-t, hs.min_val), std::min(t, hs.max_val)}};
}

QUANTLAB_REGISTER(CalibrationMethod, "kl", KlCalibration::Create,
                  "TensorRT entropy calibration: threshold minimising KL(P||Q) on |x|");

}  // namespace quant
