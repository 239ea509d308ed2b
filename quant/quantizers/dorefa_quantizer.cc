#include "quant/quantizers/dorefa_quantizer.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {

DorefaQuantizer::DorefaQuantizer(Options o) : o_(o) {
  spec_.bits = o_.bits;
  spec_.custom_range = true;
  spec_.quant_min = 0;
  spec_.quant_max = (int64_t{1} << o_.bits) - 1;
  (void)SetRole(TensorRole::kWeights);
}

absl::StatusOr<std::unique_ptr<Quantizer>> DorefaQuantizer::Create(ParamReader& p) {
  Options o;
  o.bits = static_cast<int>(p.IntInRange("bits", 4, 2, 16, "k, the bit width"));
  o.clip = static_cast<float>(
      p.DoubleInRange("clip", 1.0, 1e-6, 1e6, "activations: clipped to [0, clip] (the paper: 1)"));
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(new DorefaQuantizer(o));
}

absl::Status DorefaQuantizer::SetRole(TensorRole role) {
  role_ = role;
  const float n = static_cast<float>(spec_.quant_max);
  if (role == TensorRole::kWeights) {
    qparams_ = QParams::PerTensor(2.0f / n, static_cast<int32_t>(std::lround(n / 2)), 0, spec_.quant_max);
  } else {
    qparams_ = QParams::PerTensor(o_.clip / n, 0, 0, spec_.quant_max);
  }
  return absl::OkStatus();
}

absl::Status DorefaQuantizer::Forward(const Tensor& x, Tensor* y) {
  if (y != &x && y->shape() != x.shape()) y->Resize(x.shape());
  dydx_.resize(x.numel());
  const int64_t numel = x.numel();
  const float* in = x.data();
  float* out = y->data();
  const float n = static_cast<float>(spec_.quant_max);
  if (!fake_quant_enabled_) {
    std::copy(in, in + numel, out);
    std::fill(dydx_.begin(), dydx_.end(), 1.0f);
    return absl::OkStatus();
  }
  if (role_ == TensorRole::kWeights) {
    float m = 0.0f;
    for (int64_t i = 0; i < numel; ++i) m = std::max(m, std::fabs(std::tanh(in[i])));
    if (m == 0.0f) m = 1.0f;  // all-zero weights: tanh/2M is 0/0
    for (int64_t i = 0; i < numel; ++i) {
      const float t = std::tanh(in[i]);
      const float r = t / (2.0f * m) + 0.5f;
      out[i] = 2.0f * (std::nearbyint(r * n) / n) - 1.0f;
      dydx_[i] = (1.0f - t * t) / m;
    }
  } else {
    const float clip = o_.clip;
    for (int64_t i = 0; i < numel; ++i) {
      const float v = in[i];
      const bool inside = v >= 0.0f && v <= clip;
      const float c = std::min(std::max(v, 0.0f), clip) / clip;
      out[i] = std::nearbyint(c * n) / n * clip;
      dydx_[i] = inside ? 1.0f : 0.0f;
    }
  }
  return absl::OkStatus();
}

absl::Status DorefaQuantizer::Backward(const Tensor& grad_y, Tensor* grad_x) {
  if (grad_y.numel() != static_cast<int64_t>(dydx_.size())) {
    return absl::FailedPreconditionError("dorefa: Backward() does not match the last Forward()");
  }
  if (grad_x != &grad_y && grad_x->shape() != grad_y.shape()) grad_x->Resize(grad_y.shape());
  for (int64_t i = 0; i < grad_y.numel(); ++i) (*grad_x)[i] = grad_y[i] * dydx_[i];
  return absl::OkStatus();
}

absl::Status DorefaQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  const float n = static_cast<float>(spec_.quant_max);
  q->resize(x.numel());
  if (role_ == TensorRole::kWeights) {
    float m = 0.0f;
    for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::fabs(std::tanh(x[i])));
    if (m == 0.0f) m = 1.0f;
    for (int64_t i = 0; i < x.numel(); ++i) {
      (*q)[i] = static_cast<int32_t>(std::nearbyint((std::tanh(x[i]) / (2.0f * m) + 0.5f) * n));
    }
  } else {
    for (int64_t i = 0; i < x.numel(); ++i) {
      (*q)[i] = static_cast<int32_t>(std::nearbyint(std::min(std::max(x[i], 0.0f), o_.clip) / o_.clip * n));
    }
  }
  return absl::OkStatus();
}

std::string DorefaQuantizer::Describe() const {
  return role_ == TensorRole::kWeights
             ? absl::StrCat("dorefa ", o_.bits, "-bit weights (tanh-normalised, [-1, 1])")
             : absl::StrCat("dorefa ", o_.bits, "-bit activations clipped to [0, ", o_.clip, "]");
}

absl::StatusOr<QParams> DorefaQuantizer::IntegerGrid() const {
  const int64_t n = spec_.quant_max;
  if (role_ == TensorRole::kWeights) {
    // w_q = 2 k / n - 1 = (2 k - n) / n: odd (n odd) codes in [-n, n] at scale 1 / n, zero point 0.
    return QParams::PerTensor(1.0f / static_cast<float>(n), 0, -n, n);
  }
  return QParams::PerTensor(o_.clip / static_cast<float>(n), 0, 0, n);
}

QUANTLAB_REGISTER(Quantizer, "dorefa", DorefaQuantizer::Create,
                  "DoReFa-Net (Zhou et al. 2016): tanh-normalised weights, clipped activations");

}  // namespace quant
