// Learning-rate schedules (registry `schedule:`), in closed form:
//   constant: base_lr
//   step:     base_lr * gamma^floor(epoch / step_size)          (StepLR, per epoch)
//   cosine:   eta_min + (base_lr - eta_min) (1 + cos(pi t / T)) / 2
//             with t the iteration and T the run's total iterations
//             (CosineAnnealingLR(T_max = T) stepped after every batch).
#ifndef QUANT_NN_SCHEDULES_H_
#define QUANT_NN_SCHEDULES_H_

#include <memory>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/optimizer.h"

namespace quant::nn {

class ConstantSchedule : public Schedule {
 public:
  static absl::StatusOr<std::unique_ptr<Schedule>> Create(ParamReader& p);
  double LearningRate(double base_lr, int64_t, int64_t, int64_t) const override { return base_lr; }
  std::string Describe() const override { return "constant"; }
};

class StepSchedule : public Schedule {
 public:
  StepSchedule(int64_t step_size, double gamma) : step_size_(step_size), gamma_(gamma) {}
  static absl::StatusOr<std::unique_ptr<Schedule>> Create(ParamReader& p);
  double LearningRate(double base_lr, int64_t iteration, int64_t total,
                      int64_t per_epoch) const override;
  std::string Describe() const override;

 private:
  int64_t step_size_;
  double gamma_;
};

class CosineSchedule : public Schedule {
 public:
  explicit CosineSchedule(double eta_min) : eta_min_(eta_min) {}
  static absl::StatusOr<std::unique_ptr<Schedule>> Create(ParamReader& p);
  double LearningRate(double base_lr, int64_t iteration, int64_t total,
                      int64_t per_epoch) const override;
  std::string Describe() const override;

 private:
  double eta_min_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_SCHEDULES_H_
