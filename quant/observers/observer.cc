#include "quant/observers/observer.h"

#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/qmath/fake_quant.h"

namespace quant {

double HistogramStats::stddev() const {
  if (n < 2) return 0.0;
  const double m = mean();
  return std::sqrt(std::max(0.0, sum_sq / n - m * m));
}

double HistogramStats::total() const {
  double t = 0;
  for (float c : counts) t += c;
  return t;
}

bool AllFinite(const float* x, int64_t n) {
  int64_t i = 0;
  bool ok = true;
#ifdef __AVX2__
  // |x| <= FLT_MAX, ordered (false for NaN), 8 lanes at a time: the same predicate.
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 limit = _mm256_set1_ps(FLT_MAX);
  __m256 all = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (; i + 8 <= n; i += 8) {
    all = _mm256_and_ps(all, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask), limit, _CMP_LE_OQ));
  }
  ok = _mm256_movemask_ps(all) == 0xff;
#endif
  for (; i < n; ++i) ok &= std::fabs(x[i]) <= FLT_MAX;  // false for NaN
  return ok;
}

namespace {

// *mn = std::min(*mn, x[0], x[1], ...) and *mx likewise, applied in that order, on finite
// values (CheckInput has refused others). The order cannot change the minimum's value, only
// which of +0 / -0 a sequential std::min keeps: it keeps the first element equal to the
// minimum (a tie never replaces). So after the 8-lane reduction a zero result is replaced by
// the first zero of the sequence, and the results equal the sequential loop bit for bit.
void MinMaxSpan(const float* x, int64_t n, float* mn, float* mx) {
  float lo = *mn, hi = *mx;
  int64_t i = 0;
#ifdef __AVX2__
  if (n >= 16) {
    __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      vlo = _mm256_min_ps(vlo, v);
      vhi = _mm256_max_ps(vhi, v);
    }
    alignas(32) float l[8], h[8];
    _mm256_store_ps(l, vlo);
    _mm256_store_ps(h, vhi);
    for (int k = 0; k < 8; ++k) lo = std::min(lo, l[k]), hi = std::max(hi, h[k]);
  }
#endif
  for (; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  auto first_equal = [&](float init, float value) {
    if (init == value) return init;
    for (int64_t j = 0; j < n; ++j) {
      if (x[j] == value) return x[j];
    }
    return value;
  };
  if (lo == 0.0f) lo = first_equal(*mn, lo);
  if (hi == 0.0f) hi = first_equal(*mx, hi);
  *mn = lo;
  *mx = hi;
}

}  // namespace

absl::Status Observer::Bind(const QuantSpec& spec) {
  spec_ = spec;
  bound_ = true;
  shape_.clear();
  Reset();
  return absl::OkStatus();
}

absl::Status Observer::CheckInput(const Tensor& x, const char* name) {
  if (!bound_) {
    return absl::FailedPreconditionError(
        absl::StrCat("observer '", name, "' used before Bind() (no quantization spec)"));
  }
  if (x.numel() == 0) {
    return absl::InvalidArgumentError(absl::StrCat("observer '", name, "': empty tensor"));
  }
  if (!AllFinite(x.data(), x.numel())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "observer '", name, "': the tensor ", x.ShapeString(),
        " contains inf or NaN; observers refuse non-finite values (no usable range)"));
  }
  auto groups = NumGroups(spec_.granularity, spec_.axis, spec_.block_size, x.shape(),
                          spec_.axis_where, spec_.block_size_where);
  if (!groups.ok()) return groups.status();
  if (!shape_.empty() && spec_.granularity != Granularity::kPerTensor) {
    auto before = NumGroups(spec_.granularity, spec_.axis, spec_.block_size, shape_);
    if (!before.ok() || *before != *groups) {
      return absl::InvalidArgumentError(absl::StrCat(
          "observer '", name, "': a tensor of shape ", x.ShapeString(), " has ", *groups, " ",
          GranularityName(spec_.granularity), " groups but earlier ones had ",
          before.ok() ? *before : -1));
    }
  }
  shape_ = x.shape();
  return absl::OkStatus();
}

absl::Status Observer::GroupMinMax(const Tensor& x, std::vector<float>* mins,
                                   std::vector<float>* maxs) const {
  auto groups = NumGroups(spec_.granularity, spec_.axis, spec_.block_size, x.shape(),
                          spec_.axis_where, spec_.block_size_where);
  if (!groups.ok()) return groups.status();
  const float inf = std::numeric_limits<float>::infinity();
  mins->assign(*groups, inf);
  maxs->assign(*groups, -inf);
  const float* d = x.data();
  if (spec_.granularity == Granularity::kPerTensor) {
    float mn = inf, mx = -inf;
    MinMaxSpan(d, x.numel(), &mn, &mx);
    (*mins)[0] = mn;
    (*maxs)[0] = mx;
    return absl::OkStatus();
  }
  QParams layout;
  layout.granularity = spec_.granularity;
  layout.axis = spec_.axis;
  layout.block_size = spec_.block_size;
  layout.scale.assign(*groups, 1.0f);
  layout.zero_point.assign(*groups, 0);
  layout.quant_min = 0;
  layout.quant_max = 1;
  auto split = CheckQParamsForShape(layout, x.shape());
  if (!split.ok()) return split.status();
  const AxisSplit& s = *split;
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t dd = 0; dd < s.dim; ++dd) {
      const float* row = d + (o * s.dim + dd) * s.inner;
      if (spec_.granularity == Granularity::kPerChannel) {
        float mn = (*mins)[dd], mx = (*maxs)[dd];
        MinMaxSpan(row, s.inner, &mn, &mx);
        (*mins)[dd] = mn;
        (*maxs)[dd] = mx;
      } else {
        const int64_t base = (o * (s.dim / spec_.block_size) + dd / spec_.block_size) * s.inner;
        for (int64_t i = 0; i < s.inner; ++i) {
          (*mins)[base + i] = std::min((*mins)[base + i], row[i]);
          (*maxs)[base + i] = std::max((*maxs)[base + i], row[i]);
        }
      }
    }
  }
  return absl::OkStatus();
}

QParams Observer::MakeQParams(std::vector<float> scale, std::vector<int32_t> zero_point) const {
  QParams q;
  q.scale = std::move(scale);
  q.zero_point = std::move(zero_point);
  q.quant_min = spec_.quant_min;
  q.quant_max = spec_.quant_max;
  q.granularity = spec_.granularity;
  q.axis = spec_.axis;
  q.block_size = spec_.block_size;
  return q;
}

absl::StatusOr<QParams> Observer::ComputeQParams() const {
  auto ranges = Ranges();
  if (!ranges.ok()) return ranges.status();
  std::vector<float> scale(ranges->size());
  std::vector<int32_t> zp(ranges->size());
  for (size_t g = 0; g < ranges->size(); ++g) {
    absl::Status s = TorchObserverQParams(spec_, (*ranges)[g].lo, (*ranges)[g].hi, &scale[g], &zp[g]);
    if (!s.ok()) return s;
  }
  return MakeQParams(std::move(scale), std::move(zp));
}

}  // namespace quant
