// `batch_average_minmax`: Distiller's "avg" statistics. For every sample of a
// batch (index 0 of the tensor) take its min and max, and keep the running
// mean of those per-sample values over all samples seen. A few outlier
// samples then move the range only by their share, which is why Distiller
// uses it for activations.
#ifndef QUANT_OBSERVERS_BATCH_AVERAGE_MINMAX_OBSERVER_H_
#define QUANT_OBSERVERS_BATCH_AVERAGE_MINMAX_OBSERVER_H_

#include <memory>

#include "quant/observers/observer.h"

namespace quant {

class BatchAverageMinMaxObserver : public Observer {
 public:
  static absl::StatusOr<std::unique_ptr<Observer>> Create(ParamReader& p);

  absl::Status Bind(const QuantSpec& spec) override;
  absl::Status Observe(const Tensor& x) override;
  bool has_data() const override { return samples_ > 0; }
  absl::StatusOr<std::vector<Range>> Ranges() const override;
  void Reset() override {
    samples_ = 0;
    avg_min_ = avg_max_ = 0;
  }

 private:
  int64_t samples_ = 0;
  double avg_min_ = 0, avg_max_ = 0;
};

}  // namespace quant

#endif  // QUANT_OBSERVERS_BATCH_AVERAGE_MINMAX_OBSERVER_H_
