#include "quant/nn/adam.h"

#include <cmath>

#include "absl/strings/str_format.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<std::unique_ptr<Optimizer>> Adam::Create(ParamReader& p, bool decoupled) {
  Options o;
  o.decoupled = decoupled;
  o.lr = p.DoubleInRange("lr", 1e-3, 0.0, 1e6, "learning rate (before the schedule)");
  std::vector<double> betas = p.DoubleList("betas", {0.9, 0.999}, "(beta1, beta2) of the moment averages");
  o.eps = p.DoubleInRange("eps", 1e-8, 0.0, 1.0, "added to the denominator");
  o.weight_decay = p.DoubleInRange("weight_decay", decoupled ? 1e-2 : 0.0, 0.0, 1e6,
                                   decoupled ? "decoupled weight decay" : "L2 penalty added to the gradient");
  if (p.describing()) return std::unique_ptr<Optimizer>(new Adam(o));
  if (betas.size() != 2 || !(betas[0] >= 0 && betas[0] < 1) || !(betas[1] >= 0 && betas[1] < 1)) {
    p.Fail("betas", "expected two numbers in [0, 1), e.g. [0.9, 0.999]");
  } else {
    o.beta1 = betas[0];
    o.beta2 = betas[1];
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Optimizer>(new Adam(o));
}

absl::StatusOr<std::unique_ptr<Optimizer>> Adam::CreateAdam(ParamReader& p) { return Create(p, false); }
absl::StatusOr<std::unique_ptr<Optimizer>> Adam::CreateAdamW(ParamReader& p) { return Create(p, true); }

std::string Adam::Describe() const {
  return absl::StrFormat("%s(lr=%g, betas=[%g, %g], eps=%g, weight_decay=%g)",
                         o_.decoupled ? "adamw" : "adam", o_.lr, o_.beta1, o_.beta2, o_.eps,
                         o_.weight_decay);
}

void Adam::Attach(std::vector<Parameter*> params) {
  params_ = std::move(params);
  m_.clear();
  v_.clear();
  for (Parameter* p : params_) {
    m_.emplace_back(p->value.shape());
    v_.emplace_back(p->value.shape());
  }
  t_ = 0;
}

void Adam::Step(double lr_d) {
  ++t_;
  const float lr = static_cast<float>(lr_d);
  const float b1 = static_cast<float>(o_.beta1), b2 = static_cast<float>(o_.beta2);
  const float eps = static_cast<float>(o_.eps);
  const float wd = static_cast<float>(o_.weight_decay);
  const double bc1 = 1.0 - std::pow(o_.beta1, static_cast<double>(t_));
  const double bc2 = 1.0 - std::pow(o_.beta2, static_cast<double>(t_));
  const float step_size = static_cast<float>(lr_d / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  for (size_t k = 0; k < params_.size(); ++k) {
    float* w = params_[k]->value.data();
    const float* grad = params_[k]->grad.data();
    float* m = m_[k].data();
    float* v = v_[k].data();
    const int64_t n = params_[k]->value.numel();
    for (int64_t i = 0; i < n; ++i) {
      float g = grad[i];
      if (o_.decoupled) {
        w[i] *= 1.0f - lr * wd;
      } else if (wd != 0.0f) {
        g += wd * w[i];
      }
      m[i] = b1 * m[i] + (1.0f - b1) * g;
      v[i] = b2 * v[i] + (1.0f - b2) * g * g;
      const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      w[i] -= step_size * (m[i] / denom);
    }
  }
}

QUANTLAB_REGISTER(Optimizer, "adam", Adam::CreateAdam, "Adam (torch.optim.Adam, L2 weight decay)");
QUANTLAB_REGISTER(Optimizer, "adamw", Adam::CreateAdamW,
                  "AdamW, decoupled weight decay (torch.optim.AdamW)");

}  // namespace quant::nn
