// Training scheme `mixed_precision` (train.precision: bf16 | fp16): float32
// master weights, with the values of the forward and backward passes rounded
// through the number-format plugin of that name (quant/formats), and dynamic
// loss scaling for fp16 (loss_scaler.h, GradScaler semantics).
//
// What is rounded, as autocast does it on a GPU:
//   * every weight, before its layer uses it (the fp16/bf16 copy of the
//     master weight), and the weight's gradient (produced by the reduced-
//     precision GEMM), before it is unscaled in float32;
//   * every layer's output (the activations), and the gradient flowing back
//     into it. The logits are rounded too; the loss is computed in float32.
// The arithmetic inside a layer stays float32 (a GPU accumulates in float32
// as well); biases and BatchNorm parameters are float32.
//
// Loss scaling (fp16 default: dynamic; bf16 default: none): d(loss)/d(logits)
// is multiplied by the scale; after backward, if any weight gradient is
// inf/NaN the step is skipped and the scale backs off, otherwise every
// gradient is multiplied by 1/scale in float32 and the optimizer steps.
// A divergence (non-finite loss, or too many overflowing steps in a row) stops
// training with the loss-scale history in the error.
//
// Underflow report: for every gradient value that passes a rounding point
// (layer-output gradients and weight gradients) and is non-zero in float32,
// the run counts whether the true (unscaled) value v would round to zero in
// fp16 (|v| <= 2^-25), in fp16 after loss scaling (|v * scale| <= 2^-25; fp16
// runs only: the scale the run really used), and in bf16 (|v| <= 2^-134).
// The fractions go to train_metrics.json (underflow_fp16_unscaled,
// underflow_fp16_scaled, underflow_bf16) with skipped_steps and the scales.
//
//   train:
//     scheme: mixed_precision
//     precision: fp16
//     loss_scale: {mode: dynamic, init_scale: 65536, growth_interval: 2000}
//     epochs: 2
//     optimizer: {name: sgd, lr: 0.005, momentum: 0.9}
//     pretrain: {epochs: 5, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
#ifndef QUANT_TRAINING_MIXED_PRECISION_SCHEME_H_
#define QUANT_TRAINING_MIXED_PRECISION_SCHEME_H_

#include <cstdint>
#include <memory>
#include <string>

#include "quant/formats/number_format.h"
#include "quant/training/lowbit_scheme.h"
#include "quant/training/loss_scaler.h"
#include "quant/training/train_loop.h"
#include "quant/training/training_scheme.h"

namespace quant {

// Counts of gradient values for the underflow report.
struct UnderflowCounts {
  int64_t nonzero = 0;          // finite, non-zero in float32
  int64_t fp16_unscaled = 0;    // of those: |v| <= 2^-25
  int64_t fp16_scaled = 0;      // |v * scale| <= 2^-25
  int64_t bf16 = 0;             // |v| <= 2^-134
  // Adds the values g[i] * inv_scale (g: gradients as they flow, scaled).
  void Add(const float* g, int64_t n, float scale, float inv_scale);
};

// The largest magnitude that rounds to zero in `format` under its rounding
// (checked against the format's Round, so it is the plugin's behaviour).
float UnderflowThreshold(NumberFormat& format);

class MixedPrecisionScheme : public TrainingScheme {
 public:
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> Create(ParamReader& p);
  absl::StatusOr<TrainResult> Train(TrainContext& context) override;
  std::string Describe() const override;

 private:
  MixedPrecisionScheme(std::string precision, TrainSettings settings, PretrainPhase pretrain,
                       LossScaler::Options scaling);

  std::string precision_;
  TrainSettings settings_;
  PretrainPhase pretrain_;
  LossScaler::Options scaling_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_MIXED_PRECISION_SCHEME_H_
