#include "quant/nn/schedules.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Schedule>> ConstantSchedule::Create(ParamReader& p) {
  return std::unique_ptr<Schedule>(new ConstantSchedule());
}

absl::StatusOr<std::unique_ptr<Schedule>> StepSchedule::Create(ParamReader& p) {
  const int64_t step_size = p.IntInRange("step_size", 1, 1, 1 << 30, "epochs between decays");
  const double gamma = p.DoubleInRange("gamma", 0.1, 0.0, 1.0, "decay factor");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Schedule>(new StepSchedule(step_size, gamma));
}

double StepSchedule::LearningRate(double base_lr, int64_t iteration, int64_t,
                                  int64_t per_epoch) const {
  const int64_t epoch = per_epoch > 0 ? iteration / per_epoch : 0;
  return base_lr * std::pow(gamma_, static_cast<double>(epoch / step_size_));
}

std::string StepSchedule::Describe() const {
  return absl::StrFormat("step(step_size=%d, gamma=%g)", step_size_, gamma_);
}

absl::StatusOr<std::unique_ptr<Schedule>> CosineSchedule::Create(ParamReader& p) {
  const double eta_min = p.DoubleInRange("eta_min", 0.0, 0.0, 1e6, "final learning rate");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Schedule>(new CosineSchedule(eta_min));
}

double CosineSchedule::LearningRate(double base_lr, int64_t iteration, int64_t total,
                                    int64_t) const {
  if (total <= 0) return base_lr;
  const double pi = std::acos(-1.0);
  return eta_min_ + (base_lr - eta_min_) *
                        (1.0 + std::cos(pi * static_cast<double>(iteration) /
                                        static_cast<double>(total))) /
                        2.0;
}

std::string CosineSchedule::Describe() const {
  return absl::StrFormat("cosine(eta_min=%g, per iteration)", eta_min_);
}

QUANTLAB_REGISTER(Schedule, "constant", ConstantSchedule::Create, "the optimizer's lr throughout");
QUANTLAB_REGISTER(Schedule, "step", StepSchedule::Create,
                  "multiply the lr by gamma every step_size epochs (StepLR)");
QUANTLAB_REGISTER(Schedule, "cosine", CosineSchedule::Create,
                  "cosine annealing to eta_min over the whole run, stepped per iteration");

}  // namespace quant::nn
