// Optimizers (registry `optimizer:`, inside a training scheme's `train:` map)
// and learning-rate schedules (registry `schedule:`). Both follow PyTorch 1.13's
// update rules exactly (torch.optim.SGD / Adam / AdamW, the closed forms of
// StepLR and CosineAnnealingLR), so a recipe tuned in PyTorch transfers.
#ifndef QUANT_NN_OPTIMIZER_H_
#define QUANT_NN_OPTIMIZER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "quant/nn/layer.h"

namespace quant::nn {

class Optimizer {
 public:
  static constexpr char kRegistryKind[] = "optimizer";
  virtual ~Optimizer() = default;
  // The parameters to update; allocates the optimizer state (zeros). Called once.
  virtual void Attach(std::vector<Parameter*> params) = 0;
  // One update of every attached parameter from its .grad, with learning rate `lr`.
  virtual void Step(double lr) = 0;
  // The configured (base) learning rate, which schedules scale.
  virtual double lr() const = 0;
  virtual std::string Describe() const = 0;
};

class Schedule {
 public:
  static constexpr char kRegistryKind[] = "schedule";
  virtual ~Schedule() = default;
  // The learning rate of optimizer step `iteration` (0-based) of a run of
  // `total_iterations`, with `iterations_per_epoch` steps per epoch. Stepped per
  // iteration: the first step uses base_lr.
  virtual double LearningRate(double base_lr, int64_t iteration, int64_t total_iterations,
                              int64_t iterations_per_epoch) const = 0;
  virtual std::string Describe() const = 0;
};

}  // namespace quant::nn

#endif  // QUANT_NN_OPTIMIZER_H_
