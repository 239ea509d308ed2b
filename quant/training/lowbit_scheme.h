// Training schemes `binary`, `xnor` and `ternary`: binary and ternary
// networks. Thin schemes over the `quant:` section: the quantizers are the
// `binary`, `xnor`, `ternary` quantizer plugins named there (so they work
// unchanged under a general QAT scheme), and what these schemes add is the
// binary-network conventions:
//
//  * where quantizers go: weights of every layer with a weight; activations
//    at the outputs of layers with a weight (the pre-activations: BinaryNet
//    binarizes before the nonlinearity, so with ReLU models a binary
//    activation reaches the next layer as {0, 1}, an xnor one as {0, alpha}).
//    A layer without a weight gets an activation quantizer only when an
//    override names it.
//  * `first_last: float` (default): the first and the last layer with a
//    weight keep float32 weights, and the last one float logits, unless an
//    override matches that layer (then its resolved specs apply, e.g.
//    `- {match: "fc1|fc3", weights: {quantizer: affine, bits: 8}}`).
//    `first_last: quantize` treats them like the others.
//  * `clip_weights: c`: after every optimizer step the float (latent)
//    weights of binarized layers are clipped to [-c, c] (BinaryNet; default 1
//    for `binary`, 0 = off for `xnor` and `ternary`).
//  * `pretrain: {epochs, optimizer, schedule, batch_size}`: float epochs run
//    first (no quantizers), then `epochs` with them: the "N fp32 epochs, then
//    M low-bit epochs" recipe in one config.
//
//   train:
//     scheme: binary
//     epochs: 2
//     optimizer: {name: sgd, lr: 0.005, momentum: 0.9}
//     pretrain: {epochs: 5, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
//   quant:
//     weights:     {quantizer: binary}
//     activations: {quantizer: binary}
#ifndef QUANT_TRAINING_LOWBIT_SCHEME_H_
#define QUANT_TRAINING_LOWBIT_SCHEME_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quant/core/params.h"
#include "quant/training/quantizer_transform.h"
#include "quant/training/train_loop.h"
#include "quant/training/training_scheme.h"

namespace quant {

// The float phase before a scheme's own epochs (`pretrain:` in `train:`).
struct PretrainPhase {
  bool enabled = false;
  TrainSettings settings;
  // Reads `pretrain:` of `train` (absent: disabled); init_from and
  // save_checkpoint belong to the outer map and are refused here.
  static absl::StatusOr<PretrainPhase> Read(ParamReader& train);
  // Runs it (the context's init_from, if any, is loaded by the caller's
  // settings first: the pretrain phase takes it over) and appends its epochs.
  absl::Status Run(TrainContext& context, TrainSettings& main, TrainResult* result);
};

// Epochs of `later` appended to `result`, numbered on from its last epoch.
void AppendEpochs(const TrainResult& later, TrainResult* result);

// Extra scalar results of a scheme (underflow fractions, skipped steps, ...):
// written to <run_dir>/train_metrics.json (a flat JSON object) and printed
// one per line on the log, until the result record carries them.
absl::Status WriteTrainMetrics(const TrainContext& context,
                               const std::map<std::string, double>& metrics);

class LowBitScheme : public TrainingScheme {
 public:
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> CreateBinary(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> CreateXnor(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> CreateTernary(ParamReader& p);

  absl::StatusOr<TrainResult> Train(TrainContext& context) override;
  std::string Describe() const override;
  bool uses_quant_config() const override { return true; }

  // The hook plan for a model: one line per quantized hook, e.g.
  // "fc2 weights: binary ...". Installs the hooks on the model.
  // The installed transforms are appended to `installed` (their status() is
  // checked after every step).
  absl::StatusOr<std::vector<std::string>> InstallHooks(
      nn::Model& model, const QuantConfig& quant,
      std::vector<std::shared_ptr<QuantizerTransform>>* installed);

 private:
  LowBitScheme(std::string name, TrainSettings settings, PretrainPhase pretrain, bool keep_first_last,
               double clip_weights);
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> Create(ParamReader& p, const char* name,
                                                               double default_clip);

  std::string name_;
  TrainSettings settings_;
  PretrainPhase pretrain_;
  bool keep_first_last_;
  double clip_weights_;
  std::vector<nn::Parameter*> clipped_;  // latent weights clipped after each step
};

}  // namespace quant

#endif  // QUANT_TRAINING_LOWBIT_SCHEME_H_
