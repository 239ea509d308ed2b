// The training loop every scheme shares: settings read from the `train:` map,
// mini-batch SGD-style training with evaluation after each epoch, progress
// output, NaN detection and the checkpoint. A quantization-aware scheme sets
// its hooks on the model and calls RunTrainingLoop with its own name.
//
// Steady state allocates nothing: batches, activations, gradients and
// optimizer state live in buffers reused from step to step.
#ifndef QUANT_TRAINING_TRAIN_LOOP_H_
#define QUANT_TRAINING_TRAIN_LOOP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/optimizer.h"
#include "quant/training/training_scheme.h"

namespace quant {

struct TrainSettings {
  int epochs = 5;
  int64_t batch_size = 128;
  std::unique_ptr<nn::Optimizer> optimizer;
  std::unique_ptr<nn::Schedule> schedule;
  std::string init_from;        // checkpoint loaded before training; "" = from the seed
  bool save_checkpoint = true;  // write run_dir/model.pb at the end

  // Reads epochs, batch_size, optimizer {name, ...}, schedule {name, ...},
  // init_from and save_checkpoint from the `train:` map (not `scheme`).
  static absl::StatusOr<TrainSettings> Read(ParamReader& p);
  std::string Describe() const;
};

// Optional callbacks of a scheme into the loop (any may be empty). An error
// stops training and is returned as is.
struct TrainHooks {
  // Before the first batch of `epoch` (0-based), after the previous epoch's
  // evaluation: e.g. freezing observers or BatchNorm statistics.
  std::function<absl::Status(int epoch)> epoch_begin;
  // Before the forward pass of optimizer step `step` (0-based, counted over
  // all epochs), in training mode.
  std::function<absl::Status(int64_t step)> step_begin;
  // d(loss)/d(logits) of the step, before the model's backward pass: e.g.
  // multiplied by a loss scale.
  std::function<absl::Status(Tensor* dlogits)> before_backward;
  // After the backward pass, before the optimizer step `step`. Setting
  // *apply = false skips this update (e.g. gradients that overflowed under
  // loss scaling); gradients may be rewritten (unscaled).
  std::function<absl::Status(int64_t step, bool* apply)> after_backward;
  // After the optimizer step (not called for a skipped one): e.g. clipping
  // latent weights.
  std::function<absl::Status(int64_t step)> after_step;
};

absl::StatusOr<TrainResult> RunTrainingLoop(TrainContext& context, TrainSettings& settings,
                                            const std::string& scheme_name,
                                            const TrainHooks* hooks = nullptr);

// Top-1 accuracy of `model` on `split` in eval mode (restores the mode after).
double EvaluateAccuracy(nn::Model& model, const DataSplit& split, int64_t batch_size);

}  // namespace quant

#endif  // QUANT_TRAINING_TRAIN_LOOP_H_
