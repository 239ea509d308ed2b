#include "quant/quantizers/pact_quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {

PactQuantizer::PactQuantizer(Options o) : o_(o) {
  spec_.bits = o_.bits;
  spec_.is_signed = false;
  spec_.symmetric = false;
  spec_.custom_range = true;
  spec_.quant_min = 0;
  spec_.quant_max = (int64_t{1} << o_.bits) - 1;
  alpha_.value = Tensor::Filled({1}, o_.alpha_init);
  alpha_.grad = Tensor({1});
  (void)ComputeQParams();
}

absl::StatusOr<std::unique_ptr<Quantizer>> PactQuantizer::Create(ParamReader& p) {
  Options o;
  o.bits = static_cast<int>(p.IntInRange("bits", 4, 2, 16, "bit width of the unsigned grid"));
  o.alpha_init = static_cast<float>(
      p.DoubleInRange("alpha_init", 10.0, 1e-6, 1e6, "initial clip value alpha (the paper: 10)"));
  o.alpha_decay = static_cast<float>(p.DoubleInRange(
      "alpha_decay", 2e-4, 0.0, 1e3, "L2 regularisation of alpha: adds alpha_decay * alpha to its gradient"));
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(new PactQuantizer(o));
}

absl::Status PactQuantizer::SetRole(TensorRole role) {
  if (role == TensorRole::kWeights) {
    return absl::InvalidArgumentError(
        "pact learns the clip of activations; quantize weights with affine, lsq or dorefa");
  }
  return absl::OkStatus();
}

// A clip that an optimizer step drove to zero or below would divide by zero.
float PactQuantizer::Alpha() const { return std::max(alpha_.value[0], 1e-6f); }

absl::Status PactQuantizer::ComputeQParams() {
  const float n = static_cast<float>(spec_.quant_max);
  qparams_ = QParams::PerTensor(Alpha() / n, 0, 0, spec_.quant_max);
  return absl::OkStatus();
}

absl::Status PactQuantizer::Forward(const Tensor& x, Tensor* y) {
  const float alpha = Alpha();
  const float n = static_cast<float>(spec_.quant_max);
  const float to_grid = n / alpha, from_grid = alpha / n;
  qparams_.scale[0] = from_grid;
  if (y != &x && y->shape() != x.shape()) y->Resize(x.shape());
  region_.resize(x.numel());
  const float* in = x.data();
  float* out = y->data();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float v = in[i];
    const uint8_t r = v < 0.0f ? 0 : (v >= alpha ? 2 : 1);
    region_[i] = r;
    if (!fake_quant_enabled_) {
      out[i] = v;
      continue;
    }
    const float c = r == 0 ? 0.0f : (r == 2 ? alpha : v);
    out[i] = std::nearbyint(c * to_grid) * from_grid;
  }
  return absl::OkStatus();
}

absl::Status PactQuantizer::Backward(const Tensor& grad_y, Tensor* grad_x) {
  if (grad_y.numel() != static_cast<int64_t>(region_.size())) {
    return absl::FailedPreconditionError("pact: Backward() does not match the last Forward()");
  }
  if (grad_x != &grad_y && grad_x->shape() != grad_y.shape()) grad_x->Resize(grad_y.shape());
  const float* gy = grad_y.data();
  float* gx = grad_x->data();
  double clipped = 0.0;
  for (int64_t i = 0; i < grad_y.numel(); ++i) {
    const uint8_t r = region_[i];
    if (!fake_quant_enabled_) {
      gx[i] = gy[i];
      continue;
    }
    gx[i] = r == 1 ? gy[i] : 0.0f;
    if (r == 2) clipped += gy[i];
  }
  alpha_.grad[0] += static_cast<float>(clipped) + o_.alpha_decay * alpha_.value[0];
  return absl::OkStatus();
}

absl::Status PactQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  const float alpha = Alpha();
  const float n = static_cast<float>(spec_.quant_max);
  q->resize(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float c = std::min(std::max(x[i], 0.0f), alpha);
    (*q)[i] = static_cast<int32_t>(std::nearbyint(c * (n / alpha)));
  }
  return absl::OkStatus();
}

std::string PactQuantizer::Describe() const {
  return absl::StrCat("pact ", o_.bits, "-bit unsigned, learned clip alpha (init ", o_.alpha_init,
                      ", L2 ", o_.alpha_decay, ")");
}

absl::StatusOr<QParams> PactQuantizer::IntegerGrid() const {
  // Forward's y = round(c * n / alpha) * alpha / n: codes 0..n at scale alpha / n.
  return QParams::PerTensor(Alpha() / static_cast<float>(spec_.quant_max), 0, 0, spec_.quant_max);
}

QUANTLAB_REGISTER(Quantizer, "pact", PactQuantizer::Create,
                  "activations clipped at a learned alpha (Choi et al. 2018), STE, L2 on alpha");

}  // namespace quant
