// Training scheme `fp32`: plain float training with the shared loop
// (train_loop.h): no quantization hooks.
#ifndef QUANT_TRAINING_FP32_SCHEME_H_
#define QUANT_TRAINING_FP32_SCHEME_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/training/train_loop.h"
#include "quant/training/training_scheme.h"

namespace quant {

class Fp32Scheme : public TrainingScheme {
 public:
  explicit Fp32Scheme(TrainSettings settings) : settings_(std::move(settings)) {}
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> Create(ParamReader& p);
  absl::StatusOr<TrainResult> Train(TrainContext& context) override;
  std::string Describe() const override { return "fp32: " + settings_.Describe(); }
  bool trains_float32_model() const override { return true; }

 private:
  TrainSettings settings_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_FP32_SCHEME_H_
