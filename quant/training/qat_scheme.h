// Training scheme `qat`: quantization-aware training with fake quantizers
// from the experiment's `quant:` section (TrainContext::quant).
//
// Where quantizers go (InsertFakeQuant):
//  - weights: every layer with a weight gets the quantizer its resolved
//    `quant.weights` spec names (none: float); the layer computes with the
//    fake-quantized weight and the gradient comes back through the
//    quantizer's straight-through estimator;
//  - activations: the output of each compute group is quantized, where a group
//    is a conv/linear with the BatchNorm and activation layers that follow it
//    (conv-bn-relu, linear-relu, PyTorch's fused modules): the hook sits on the
//    group's last layer and takes that layer's `quant.activations` spec, e.g.
//    relu1 for conv1-bn1-relu1 and fc3 for the logits. Pooling, flatten and
//    dropout keep the grid of their input and get none. The model input is not
//    fake-quantized (nn has no input hook; for 8-bit image data it is exact).
//  - conv/linear followed by BatchNorm (fold_bn, default true): the weight
//    hook folds the BN statistics into the weight before fake quantization
//    (bn_folding.h), as PyTorch's ConvBnReLU2d QAT does.
// Learned quantizer values (LSQ step sizes, PACT clips) are model parameters:
// the optimizer trains them and the checkpoint holds them.
//
// The `train:` map takes the shared loop's keys (train_loop.h) and:
//   pretrain: {epochs, optimizer, schedule, ...}   a float stage first (a
//             two-stage experiment in one config; its epochs come first in
//             the result), or init_from: an fp32 checkpoint
//   freeze_observers_after_epoch / _after_step: observers stop updating from
//             that QAT epoch (0-based count of finished QAT epochs) / step on
//   freeze_bn_after_epoch: BatchNorm running statistics frozen (BN then
//             normalises with them, exactly the folded conv) from that epoch on
//   fold_bn: fold conv/linear + BatchNorm pairs (default true)
//   integer_exact: simulate the integer model's arithmetic (default false, the
//             PyTorch-exact float fake quantization): integer_exact.h
#ifndef QUANT_TRAINING_QAT_SCHEME_H_
#define QUANT_TRAINING_QAT_SCHEME_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/bn_folding.h"
#include "quant/training/integer_exact.h"
#include "quant/training/quantizer_transform.h"
#include "quant/training/train_loop.h"
#include "quant/training/training_scheme.h"

namespace quant {

// What InsertFakeQuant put into a model.
struct FakeQuantHooks {
  struct Hook {
    int layer = 0;            // index in the model
    std::string layer_name;
    bool weights = false;     // weight hook (else output hook)
    std::shared_ptr<QuantizerTransform> quantizer;
    nn::BatchNorm* folded_bn = nullptr;  // weight hooks that fold a BatchNorm
  };
  std::vector<Hook> hooks;
  std::vector<std::string> plan;  // one line per hook, for logs
  // integer_exact: the output stages and average pools that compute as the integer model.
  std::vector<std::shared_ptr<IntegerRequantTransform>> requant;
  std::vector<std::shared_ptr<AveragePoolTransform>> average_pools;

  void FreezeObservers(bool frozen);
  // The first error any quantizer recorded (OK when none).
  absl::Status status() const;
};

// Puts the quantizers of `config` on `model`'s hook points (rules above) and
// runs each weight quantizer once on its layer's weight (observers see it,
// learned step sizes initialise, shapes are checked). Errors name the layer
// and the spec.
// `integer_exact` (quant/training/integer_exact.h) also quantizes the model input and
// makes conv/linear output stages and average pools compute as the integer model.
absl::StatusOr<FakeQuantHooks> InsertFakeQuant(nn::Model& model, const QuantConfig& config,
                                               bool fold_bn = true, bool integer_exact = false);
// Removes every hook of the model.
void RemoveFakeQuant(nn::Model& model);

// Whether a layer's output is a quantization point (the end of a compute group).
bool IsActivationQuantPoint(const nn::Model& model, int layer);

class QatScheme : public TrainingScheme {
 public:
  struct Options {
    int freeze_observers_after_epoch = -1;  // -1: never
    int64_t freeze_observers_after_step = -1;
    int freeze_bn_after_epoch = -1;
    bool fold_bn = true;
    bool integer_exact = false;
  };
  QatScheme(TrainSettings settings, std::optional<TrainSettings> pretrain, Options o)
      : settings_(std::move(settings)), pretrain_(std::move(pretrain)), o_(o) {}
  static absl::StatusOr<std::unique_ptr<TrainingScheme>> Create(ParamReader& p);
  absl::StatusOr<TrainResult> Train(TrainContext& context) override;
  std::string Describe() const override;
  bool uses_quant_config() const override { return true; }

 private:
  TrainSettings settings_;
  std::optional<TrainSettings> pretrain_;
  Options o_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_QAT_SCHEME_H_
