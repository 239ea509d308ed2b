#include "quant/observers/observer.h"

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
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::fabs(x[i]) <= FLT_MAX;  // false for NaN
  return ok;
}

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
    for (int64_t i = 0; i < x.numel(); ++i) {
      mn = std::min(mn, d[i]);
      mx = std::max(mx, d[i]);
    }
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
        for (int64_t i = 0; i < s.inner; ++i) {
          mn = std::min(mn, row[i]);
          mx = std::max(mx, row[i]);
        }
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
