#include "quant/observers/batch_average_minmax_observer.h"

#include <algorithm>

#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<Observer>> BatchAverageMinMaxObserver::Create(ParamReader& p) {
  (void)p;
  return std::unique_ptr<Observer>(new BatchAverageMinMaxObserver());
}

absl::Status BatchAverageMinMaxObserver::Bind(const QuantSpec& spec) {
  if (spec.granularity != Granularity::kPerTensor) {
    return absl::InvalidArgumentError(
        "observer 'batch_average_minmax' supports granularity: per_tensor only");
  }
  return Observer::Bind(spec);
}

absl::Status BatchAverageMinMaxObserver::Observe(const Tensor& x) {
  absl::Status s = CheckInput(x, "batch_average_minmax");
  if (!s.ok()) return s;
  const int64_t batch = x.rank() == 0 ? 1 : x.shape()[0];
  const int64_t per = batch > 0 ? x.numel() / batch : 0;
  double sum_min = 0, sum_max = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const float* row = x.data() + b * per;
    float mn = row[0], mx = row[0];
    for (int64_t i = 1; i < per; ++i) {
      mn = std::min(mn, row[i]);
      mx = std::max(mx, row[i]);
    }
    sum_min += mn;
    sum_max += mx;
  }
  // Running mean over samples (Distiller's update_mean).
  const double total = static_cast<double>(samples_ + batch);
  avg_min_ = avg_min_ * (samples_ / total) + sum_min / total;
  avg_max_ = avg_max_ * (samples_ / total) + sum_max / total;
  samples_ += batch;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Range>> BatchAverageMinMaxObserver::Ranges() const {
  if (samples_ == 0) {
    return absl::FailedPreconditionError(
        "observer 'batch_average_minmax' has observed nothing yet (calibrate first)");
  }
  return std::vector<Range>{Range{static_cast<float>(avg_min_), static_cast<float>(avg_max_)}};
}

QUANTLAB_REGISTER(Observer, "batch_average_minmax", BatchAverageMinMaxObserver::Create,
                  "mean over samples of each sample's min/max (Distiller's avg_min/avg_max)");

}  // namespace quant
