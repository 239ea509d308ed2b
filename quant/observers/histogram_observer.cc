#include "quant/observers/histogram_observer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

// Above this many floats the combined grid is not built; the histogram is
// restarted from the batch instead (later PyTorch versions do the same).
constexpr int64_t kMaxCombineGrid = int64_t{1} << 28;

int64_t CeilLog2(int64_t x) {
  if (x <= 2) return 1;
  int64_t v = x - 1, last = -1;
  while (v) {
    ++last;
    v >>= 1;
  }
  return last + 1;
}

// ATen's multi_row_sum / row_sum (SumKernel.cpp) for an accumulator type T
// (float, or an 8-lane vector), over elements given by `load(i)`.
struct Lanes8 {
  std::array<float, 8> v{};
  Lanes8& operator+=(const Lanes8& o) {
    for (int k = 0; k < 8; ++k) v[k] += o.v[k];
    return *this;
  }
};

template <typename T, typename Load>
T RowSum(Load load, int64_t size) {
  constexpr int64_t kIlp = 4;
  constexpr int64_t kLevels = 4;
  const int64_t rows = size / kIlp;
  const int64_t level_power = std::max<int64_t>(4, CeilLog2(rows) / kLevels);
  const int64_t level_step = int64_t{1} << level_power;
  const int64_t level_mask = level_step - 1;
  T acc[kLevels][kIlp] = {};
  int64_t i = 0;
  for (; i + level_step <= rows;) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += load(i * kIlp + k);
    }
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int64_t k = 0; k < kIlp; ++k) {
        acc[j][k] += acc[j - 1][k];
        acc[j - 1][k] = T{};
      }
      const int64_t mask = level_mask << (j * level_power);
      if ((i & mask) != 0) break;
    }
  }
  for (; i < rows; ++i) {
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += load(i * kIlp + k);
  }
  for (int64_t j = 1; j < kLevels; ++j) {
    for (int64_t k = 0; k < kIlp; ++k) acc[0][k] += acc[j][k];
  }
  for (int64_t r = rows * kIlp; r < size; ++r) acc[0][0] += load(r);
  for (int64_t k = 1; k < kIlp; ++k) acc[0][0] += acc[0][k];
  return acc[0][0];
}

// Python-style floor division of float32 (ATen's div_floor for floats).
float FloorDiv(float a, float b) {
  if (b == 0) return a / b;
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0f;
  float floordiv;
  if (div != 0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5f) floordiv += 1.0f;
  } else {
    floordiv = std::copysign(0.0f, a / b);
  }
  return floordiv;
}

// HistogramObserver._compute_quantization_error of 1.13, in its float32 steps.
double QuantizationError(const std::vector<float>& hist, float min_val, float max_val,
                         int dst_nbins, int64_t next_start_bin, int64_t next_end_bin,
                         std::vector<float>* scratch) {
  const int64_t bins = static_cast<int64_t>(hist.size());
  const double bin_width_d = (static_cast<double>(max_val) - static_cast<double>(min_val)) / bins;
  const double dst_bin_width_d =
      bin_width_d * static_cast<double>(next_end_bin - next_start_bin + 1) / dst_nbins;
  if (dst_bin_width_d == 0.0) return 0.0;
  const float bw = static_cast<float>(bin_width_d);
  const float dbw = static_cast<float>(dst_bin_width_d);
  const float half = static_cast<float>(dst_bin_width_d / 2);
  const float neg_half = static_cast<float>(-dst_bin_width_d / 2);
  const float dmax = static_cast<float>(dst_nbins - 1);
  const float mid = (half * half * half - neg_half * neg_half * neg_half) / 3.0f;
  scratch->resize(bins);
  float* norm = scratch->data();
  for (int64_t i = 0; i < bins; ++i) {
    const float begin = static_cast<float>(i - next_start_bin) * bw;
    const float end = begin + bw;
    const float dob = std::min(std::max(FloorDiv(begin, dbw), 0.0f), dmax);
    const float dob_center = (dob + 0.5f) * dbw;
    const float doe = std::min(std::max(FloorDiv(end, dbw), 0.0f), dmax);
    const float density = hist[i] / bw;
    const float db = begin - dob_center;
    float n = 0.0f + density * ((half * half * half - db * db * db) / 3.0f);
    n = n + ((doe - dob) - 1.0f) * (density * mid);
    const float doe_center = doe * dbw + half;
    const float de = end - doe_center;
    n = n + density * ((de * de * de - neg_half * neg_half * neg_half) / 3.0f);
    norm[i] = n;
  }
  return TorchSum(norm, bins);
}

}  // namespace

float TorchSum(const float* x, int64_t n) {
  if (n >= 8) {
    const int64_t vecs = n / 8;
    const Lanes8 acc = RowSum<Lanes8>(
        [x](int64_t i) {
          Lanes8 l;
          for (int k = 0; k < 8; ++k) l.v[k] = x[i * 8 + k];
          return l;
        },
        vecs);
    float final_acc = 0;
    for (int64_t k = vecs * 8; k < n; ++k) final_acc += x[k];
    for (int k = 0; k < 8; ++k) final_acc += acc.v[k];
    return final_acc;
  }
  return RowSum<float>([x](int64_t i) { return x[i]; }, n);
}

void TorchHistc(const float* x, int64_t n, int bins, double lo, double hi, std::vector<float>* out,
                float* edge_lo, float* edge_hi) {
  if (lo == hi && n > 0) {
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
    }
    lo = mn;
    hi = mx;
  }
  if (lo == hi) {
    lo -= 1;
    hi += 1;
  }
  const float left = static_cast<float>(lo);
  const float right = static_cast<float>(hi);
  out->assign(bins, 0.0f);
  const float fbins = static_cast<float>(bins);
  for (int64_t i = 0; i < n; ++i) {
    const float e = x[i];
    if (!(e >= left && e <= right)) continue;
    int64_t pos = static_cast<int64_t>((e - left) * fbins / (right - left));
    if (pos >= bins) pos = bins - 1;
    if (pos < 0) pos = 0;
    (*out)[pos] += 1.0f;
  }
  *edge_lo = left;
  *edge_hi = right;
}

Range TorchNonLinearParamSearch(const std::vector<float>& hist, float min_val, float max_val,
                                int dst_nbins) {
  const int64_t bins = static_cast<int64_t>(hist.size());
  const float bin_width = (max_val - min_val) / static_cast<float>(bins);
  const double total = TorchSum(hist.data(), bins);
  std::vector<float> csum(bins);
  double acc = 0;
  for (int64_t i = 0; i < bins; ++i) {
    acc += hist[i];
    csum[i] = static_cast<float>(acc);
  }
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start_bin = 0, end_bin = bins - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  std::vector<float> scratch;
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize;
    const double next_beta = beta - stepsize;
    // cSum[l] < next_alpha * total compares float32 with the Python float
    // converted to float32.
    const float ta = static_cast<float>(next_alpha * total);
    const float tb = static_cast<float>(next_beta * total);
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && csum[l] < ta) ++l;
    while (r > start_bin && csum[r] > tb) --r;
    int64_t next_start_bin = start_bin, next_end_bin = end_bin;
    if ((l - start_bin) > (end_bin - r)) {
      next_start_bin = l;
      alpha = next_alpha;
    } else {
      next_end_bin = r;
      beta = next_beta;
    }
    if (next_start_bin == start_bin && next_end_bin == end_bin) continue;
    const double norm = QuantizationError(hist, min_val, max_val, dst_nbins, next_start_bin,
                                          next_end_bin, &scratch);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start_bin;
    end_bin = next_end_bin;
  }
  return Range{min_val + bin_width * static_cast<float>(start_bin),
               min_val + bin_width * static_cast<float>(end_bin + 1)};
}

absl::StatusOr<std::unique_ptr<Observer>> HistogramObserver::Create(ParamReader& p) {
  const int bins = static_cast<int>(p.IntInRange("bins", 2048, 16, 1 << 20, "histogram bins"));
  const int upsample = static_cast<int>(
      p.IntInRange("upsample_rate", 128, 1, 4096, "upsampling when histograms are combined"));
  const bool compat = p.Bool("torch113_compat", false,
                             "reproduce PyTorch 1.13: first histogram over [int(min), int(max)] "
                             "and a 256-bin search grid");
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Observer>(new HistogramObserver(bins, upsample, compat));
}

absl::Status HistogramObserver::Bind(const QuantSpec& spec) {
  if (spec.granularity != Granularity::kPerTensor) {
    return absl::InvalidArgumentError(
        absl::StrCat("observer 'histogram' supports granularity: per_tensor only, got ",
                     GranularityName(spec.granularity)));
  }
  return Observer::Bind(spec);
}

void HistogramObserver::Reset() {
  initialized_ = false;
  stats_ = HistogramStats();
}

int HistogramObserver::dst_nbins() const {
  return compat_ ? 256 : static_cast<int>(spec_.levels());
}

absl::Status HistogramObserver::Observe(const Tensor& x) {
  absl::Status s = CheckInput(x, "histogram");
  if (!s.ok()) return s;
  const float* d = x.data();
  const int64_t n = x.numel();
  float new_min = d[0], new_max = d[0];
  double sum = 0, sum_sq = 0;
  for (int64_t i = 0; i < n; ++i) {
    new_min = std::min(new_min, d[i]);
    new_max = std::max(new_max, d[i]);
    sum += d[i];
    sum_sq += static_cast<double>(d[i]) * d[i];
  }
  const bool same_values = initialized_ && stats_.min_val == stats_.max_val;
  if (!initialized_ || same_values) {
    // 1.13 restarts from this batch when the stored range is a single value.
    stats_.n = 0;
    stats_.sum = stats_.sum_sq = 0;
    const double lo = compat_ ? std::trunc(static_cast<double>(new_min)) : new_min;
    const double hi = compat_ ? std::trunc(static_cast<double>(new_max)) : new_max;
    TorchHistc(d, n, bins_, lo, hi, &stats_.counts, &stats_.edge_lo, &stats_.edge_hi);
    stats_.min_val = new_min;
    stats_.max_val = new_max;
  } else {
    const float min_val = stats_.min_val, max_val = stats_.max_val;
    float cmin = std::min(new_min, min_val);
    float cmax = std::max(new_max, max_val);
    // _adjust_min_max (1.13), float32 tensors.
    const float hbw = (max_val - min_val) / static_cast<float>(int64_t{bins_} * upsample_rate_);
    const float grid = static_cast<float>(bins_) * hbw;
    const int64_t downsample = static_cast<int64_t>(std::ceil((cmax - cmin) / grid));
    const float e = static_cast<float>(downsample) * grid - (cmax - cmin);
    cmax = cmax + e;
    const int64_t start_idx = static_cast<int64_t>(std::nearbyint((min_val - cmin) / hbw));
    std::vector<float> combined;
    float elo, ehi;
    // 1.13 truncates these bounds too (the same int() as the first histogram).
    TorchHistc(d, n, bins_, compat_ ? std::trunc(static_cast<double>(cmin)) : cmin,
               compat_ ? std::trunc(static_cast<double>(cmax)) : cmax, &combined, &elo, &ehi);
    if (cmin == min_val && cmax == max_val) {
      for (int b = 0; b < bins_; ++b) combined[b] += stats_.counts[b];
    } else if (downsample * bins_ > kMaxCombineGrid || downsample < 1) {
      // Too fine a grid to combine: restart from this batch.
      stats_.n = 0;
      stats_.sum = stats_.sum_sq = 0;
      TorchHistc(d, n, bins_, new_min, new_max, &combined, &elo, &ehi);
      cmin = new_min;
      cmax = new_max;
    } else {
      // _combine_histograms: upsample the old histogram, place it at start_idx
      // on a grid of bins*downsample cells, integrate in double, downsample.
      const int64_t len = int64_t{bins_} * downsample;
      const int64_t up_len = int64_t{bins_} * upsample_rate_;
      std::vector<double> integral(bins_);
      double acc = 0;
      int64_t k = 0;
      for (int64_t p = 0; p < len; ++p) {
        const int64_t src = p - start_idx;
        if (src >= 0 && src < up_len) acc += stats_.counts[src / upsample_rate_];
        if ((p + 1) % downsample == 0) integral[k++] = acc;
      }
      for (int b = 0; b < bins_; ++b) {
        const float shifted = b == 0 ? 0.0f : static_cast<float>(integral[b - 1]);
        const double interpolated = (integral[b] - static_cast<double>(shifted)) / upsample_rate_;
        combined[b] = combined[b] + static_cast<float>(interpolated);
      }
    }
    stats_.counts = std::move(combined);
    stats_.min_val = cmin;
    stats_.max_val = cmax;
    stats_.edge_lo = cmin;
    stats_.edge_hi = cmax;
  }
  stats_.n += n;
  stats_.sum += sum;
  stats_.sum_sq += sum_sq;
  initialized_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Range>> HistogramObserver::Ranges() const {
  if (!initialized_) {
    return absl::FailedPreconditionError("observer 'histogram' has observed nothing yet (calibrate first)");
  }
  return std::vector<Range>{Range{stats_.min_val, stats_.max_val}};
}

absl::StatusOr<Range> HistogramObserver::SearchRange() const {
  if (!initialized_) {
    return absl::FailedPreconditionError("observer 'histogram' has observed nothing yet (calibrate first)");
  }
  return TorchNonLinearParamSearch(stats_.counts, stats_.min_val, stats_.max_val, dst_nbins());
}

absl::StatusOr<QParams> HistogramObserver::ComputeQParams() const {
  auto r = SearchRange();
  if (!r.ok()) return r.status();
  float scale;
  int32_t zp;
  absl::Status s = TorchObserverQParams(spec_, r->lo, r->hi, &scale, &zp);
  if (!s.ok()) return s;
  return MakeQParams({scale}, {zp});
}

QUANTLAB_REGISTER(Observer, "histogram", HistogramObserver::Create,
                  "2048-bin histogram with PyTorch's L2 range search (HistogramObserver); "
                  "feeds calibration: percentile/mse/kl/aciq/n_std");

}  // namespace quant
