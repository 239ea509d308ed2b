// The min/max family of observers, one class with the PyTorch 1.13 variants:
//
//   minmax                             running min/max (MinMaxObserver; with
//                                      granularity per_channel/per_block it
//                                      keeps one range per group)
//   per_channel_minmax                 the same, requiring granularity: per_channel
//                                      (PerChannelMinMaxObserver)
//   moving_average_minmax              min += c * (batch_min - min), first batch
//                                      taken as is (MovingAverageMinMaxObserver)
//   moving_average_per_channel_minmax  its per-channel form
//   fused_moving_average_minmax        the moving average of
//                                      torch.fused_moving_avg_obs_fake_quant
//                                      (FusedMovingAvgObsFakeQuantize, the default
//                                      QAT qconfig) with ATen's C++ qparam formula
//                                      ChooseQuantizationParams instead of the
//                                      Python observers' one.
#ifndef QUANT_OBSERVERS_MINMAX_OBSERVER_H_
#define QUANT_OBSERVERS_MINMAX_OBSERVER_H_

#include <memory>
#include <vector>

#include "quant/observers/observer.h"

namespace quant {

class MinMaxObserver : public Observer {
 public:
  struct Options {
    const char* name = "minmax";
    bool moving_average = false;
    float averaging_constant = 0.01f;
    bool require_per_channel = false;
    bool fused_formula = false;
  };
  explicit MinMaxObserver(Options options) : options_(options) {}

  static absl::StatusOr<std::unique_ptr<Observer>> CreateMinMax(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Observer>> CreatePerChannel(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Observer>> CreateMovingAverage(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Observer>> CreateMovingAveragePerChannel(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Observer>> CreateFused(ParamReader& p);

  absl::Status Bind(const QuantSpec& spec) override;
  absl::Status Observe(const Tensor& x) override;
  bool has_data() const override { return !min_.empty(); }
  absl::StatusOr<std::vector<Range>> Ranges() const override;
  absl::StatusOr<QParams> ComputeQParams() const override;
  void Reset() override {
    min_.clear();
    max_.clear();
  }

 private:
  Options options_;
  std::vector<float> min_, max_;
  std::vector<float> batch_min_, batch_max_;  // scratch
};

}  // namespace quant

#endif  // QUANT_OBSERVERS_MINMAX_OBSERVER_H_
