#include "quant/observers/minmax_observer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

float ReadAveragingConstant(ParamReader& p) {
  // PyTorch keeps it as a Python float and multiplies a float32 tensor by it,
  // i.e. by float(c).
  return static_cast<float>(p.DoubleInRange("averaging_constant", 0.01, 0.0, 1.0,
                                            "weight of each new batch's min/max"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Observer>> MinMaxObserver::CreateMinMax(ParamReader& p) {
  (void)p;
  return std::unique_ptr<Observer>(new MinMaxObserver(Options{"minmax"}));
}

absl::StatusOr<std::unique_ptr<Observer>> MinMaxObserver::CreatePerChannel(ParamReader& p) {
  (void)p;
  Options o;
  o.name = "per_channel_minmax";
  o.require_per_channel = true;
  return std::unique_ptr<Observer>(new MinMaxObserver(o));
}

absl::StatusOr<std::unique_ptr<Observer>> MinMaxObserver::CreateMovingAverage(ParamReader& p) {
  Options o;
  o.name = "moving_average_minmax";
  o.moving_average = true;
  o.averaging_constant = ReadAveragingConstant(p);
  return std::unique_ptr<Observer>(new MinMaxObserver(o));
}

absl::StatusOr<std::unique_ptr<Observer>> MinMaxObserver::CreateMovingAveragePerChannel(
    ParamReader& p) {
  Options o;
  o.name = "moving_average_per_channel_minmax";
  o.moving_average = true;
  o.require_per_channel = true;
  o.averaging_constant = ReadAveragingConstant(p);
  return std::unique_ptr<Observer>(new MinMaxObserver(o));
}

absl::StatusOr<std::unique_ptr<Observer>> MinMaxObserver::CreateFused(ParamReader& p) {
  Options o;
  o.name = "fused_moving_average_minmax";
  o.moving_average = true;
  o.fused_formula = true;
  o.averaging_constant = ReadAveragingConstant(p);
  return std::unique_ptr<Observer>(new MinMaxObserver(o));
}

absl::Status MinMaxObserver::Bind(const QuantSpec& spec) {
  if (options_.require_per_channel && spec.granularity != Granularity::kPerChannel) {
    return absl::InvalidArgumentError(
        absl::StrCat("observer '", options_.name, "' needs granularity: per_channel, got ",
                     GranularityName(spec.granularity)));
  }
  if (options_.fused_formula && spec.granularity == Granularity::kPerBlock) {
    return absl::InvalidArgumentError(absl::StrCat(
        "observer '", options_.name, "' supports per_tensor and per_channel granularity only"));
  }
  return Observer::Bind(spec);
}

absl::Status MinMaxObserver::Observe(const Tensor& x) {
  absl::Status s = CheckInput(x, options_.name);
  if (!s.ok()) return s;
  s = GroupMinMax(x, &batch_min_, &batch_max_);
  if (!s.ok()) return s;
  if (min_.empty()) {
    min_ = batch_min_;
    max_ = batch_max_;
    return absl::OkStatus();
  }
  const float c = options_.averaging_constant;
  for (size_t g = 0; g < min_.size(); ++g) {
    if (options_.moving_average) {
      // torch: min_val + averaging_constant * (min_val_cur - min_val), float32.
      min_[g] = min_[g] + c * (batch_min_[g] - min_[g]);
      max_[g] = max_[g] + c * (batch_max_[g] - max_[g]);
    } else {
      min_[g] = std::min(min_[g], batch_min_[g]);
      max_[g] = std::max(max_[g], batch_max_[g]);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Range>> MinMaxObserver::Ranges() const {
  if (min_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("observer '", options_.name, "' has observed nothing yet (calibrate first)"));
  }
  std::vector<Range> r(min_.size());
  for (size_t g = 0; g < min_.size(); ++g) r[g] = Range{min_[g], max_[g]};
  return r;
}

absl::StatusOr<QParams> MinMaxObserver::ComputeQParams() const {
  if (!options_.fused_formula) return Observer::ComputeQParams();
  auto ranges = Ranges();
  if (!ranges.ok()) return ranges.status();
  std::vector<float> scale(ranges->size());
  std::vector<int32_t> zp(ranges->size());
  for (size_t g = 0; g < ranges->size(); ++g) {
    absl::Status s = ChooseQuantizationParams(
        (*ranges)[g].lo, (*ranges)[g].hi, static_cast<int32_t>(spec_.quant_min),
        static_cast<int32_t>(spec_.quant_max), /*preserve_sparsity=*/spec_.symmetric, &scale[g],
        &zp[g]);
    if (!s.ok()) return s;
  }
  return MakeQParams(std::move(scale), std::move(zp));
}

QUANTLAB_REGISTER(Observer, "minmax", MinMaxObserver::CreateMinMax,
                  "running min/max (PyTorch MinMaxObserver; per group for per_channel/per_block)");
QUANTLAB_REGISTER(Observer, "per_channel_minmax", MinMaxObserver::CreatePerChannel,
                  "running min/max per channel (PyTorch PerChannelMinMaxObserver)");
QUANTLAB_REGISTER(Observer, "moving_average_minmax", MinMaxObserver::CreateMovingAverage,
                  "moving-average min/max (PyTorch MovingAverageMinMaxObserver)");
QUANTLAB_REGISTER(Observer, "moving_average_per_channel_minmax",
                  MinMaxObserver::CreateMovingAveragePerChannel,
                  "moving-average min/max per channel (MovingAveragePerChannelMinMaxObserver)");
QUANTLAB_REGISTER(Observer, "fused_moving_average_minmax", MinMaxObserver::CreateFused,
                  "moving-average min/max with ATen's ChooseQuantizationParams, as "
                  "FusedMovingAvgObsFakeQuantize (PyTorch's default QAT qconfig)");

}  // namespace quant
