// `fixed`: quantization parameters given in the config, whatever the data
// (PyTorch's FixedQParamsObserver / FixedQParamsFakeQuantize, e.g. scale 1/128,
// zero point 128 for tanh and 1/256, 0 for sigmoid outputs).
#ifndef QUANT_OBSERVERS_FIXED_OBSERVER_H_
#define QUANT_OBSERVERS_FIXED_OBSERVER_H_

#include <memory>
#include <string>

#include "quant/observers/observer.h"

namespace quant {

class FixedObserver : public Observer {
 public:
  FixedObserver(float scale, int32_t zero_point, std::string zero_point_where)
      : scale_(scale), zero_point_(zero_point), zero_point_where_(std::move(zero_point_where)) {}
  static absl::StatusOr<std::unique_ptr<Observer>> Create(ParamReader& p);

  // Refuses a zero point outside the spec's [quant_min, quant_max] and any
  // granularity but per_tensor.
  absl::Status Bind(const QuantSpec& spec) override;
  absl::Status Observe(const Tensor& x) override { return absl::OkStatus(); }
  bool has_data() const override { return true; }
  absl::StatusOr<std::vector<Range>> Ranges() const override;
  absl::StatusOr<QParams> ComputeQParams() const override;
  void Reset() override {}

 private:
  float scale_;
  int32_t zero_point_;
  std::string zero_point_where_;
};

}  // namespace quant

#endif  // QUANT_OBSERVERS_FIXED_OBSERVER_H_
