#include "quant/nn/sgd.h"

#include "absl/strings/str_format.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Optimizer>> Sgd::Create(ParamReader& p) {
  Options o;
  o.lr = p.DoubleInRange("lr", 0.01, 0.0, 1e6, "learning rate (before the schedule)");
  o.momentum = p.DoubleInRange("momentum", 0.0, 0.0, 1.0, "momentum factor");
  o.dampening = p.DoubleInRange("dampening", 0.0, 0.0, 1.0, "dampening of the momentum");
  o.weight_decay = p.DoubleInRange("weight_decay", 0.0, 0.0, 1e6, "L2 penalty added to the gradient");
  o.nesterov = p.Bool("nesterov", false, "Nesterov momentum");
  if (p.describing()) return std::unique_ptr<Optimizer>(new Sgd(o));
  if (o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0)) {
    p.Fail("nesterov", "Nesterov momentum requires momentum > 0 and dampening = 0 (as in PyTorch)");
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Optimizer>(new Sgd(o));
}

std::string Sgd::Describe() const {
  return absl::StrFormat("sgd(lr=%g, momentum=%g, dampening=%g, weight_decay=%g, nesterov=%s)",
                         o_.lr, o_.momentum, o_.dampening, o_.weight_decay,
                         o_.nesterov ? "true" : "false");
}

void Sgd::Attach(std::vector<Parameter*> params) {
  params_ = std::move(params);
  momentum_.clear();
  if (o_.momentum != 0.0) {
    for (Parameter* p : params_) momentum_.emplace_back(p->value.shape());
  }
  first_step_ = true;
}

void Sgd::Step(double lr_d) {
  const float lr = static_cast<float>(lr_d);
  const float wd = static_cast<float>(o_.weight_decay);
  const float mom = static_cast<float>(o_.momentum);
  const float damp = 1.0f - static_cast<float>(o_.dampening);
  // One branch-free loop per case, so that each vectorises.
  for (size_t k = 0; k < params_.size(); ++k) {
    float* w = params_[k]->value.data();
    const float* g = params_[k]->grad.data();
    const int64_t n = params_[k]->value.numel();
    if (mom == 0.0f) {
      for (int64_t i = 0; i < n; ++i) w[i] -= lr * (g[i] + wd * w[i]);
      continue;
    }
    float* buf = momentum_[k].data();
    if (first_step_) {
      for (int64_t i = 0; i < n; ++i) buf[i] = g[i] + wd * w[i];
    } else if (wd != 0.0f) {
      for (int64_t i = 0; i < n; ++i) buf[i] = mom * buf[i] + damp * (g[i] + wd * w[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) buf[i] = mom * buf[i] + damp * g[i];
    }
    if (o_.nesterov) {
      for (int64_t i = 0; i < n; ++i) w[i] -= lr * ((g[i] + wd * w[i]) + mom * buf[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) w[i] -= lr * buf[i];
    }
  }
  first_step_ = false;
}

QUANTLAB_REGISTER(Optimizer, "sgd", Sgd::Create,
                  "SGD with momentum, Nesterov and weight decay (torch.optim.SGD)");

}  // namespace quant::nn
