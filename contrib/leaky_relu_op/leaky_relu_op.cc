#include "contrib/leaky_relu_op/leaky_relu_op.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace contrib {

absl::StatusOr<std::unique_ptr<quant::nn::Layer>> LeakyRelu::Create(quant::ParamReader& p) {
  const double slope = p.DoubleInRange("negative_slope", 0.01, 0.0, 1.0, "slope for x <= 0");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<quant::nn::Layer>(new LeakyRelu("", static_cast<float>(slope)));
}

std::string LeakyRelu::Describe() const { return absl::StrCat("LeakyReLU(", slope_, ")"); }

void LeakyRelu::Forward(const quant::Tensor& x, quant::Tensor* y) {
  quant::nn::EnsureShape(y, x.shape());
  const float* in = x.data();
  float* out = y->data();
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = in[i] > 0 ? in[i] : in[i] * slope_;
}

void LeakyRelu::Backward(const quant::Tensor& x, const quant::Tensor&, const quant::Tensor& dy, quant::Tensor* dx) {
  if (dx == nullptr) return;
  quant::nn::EnsureShape(dx, x.shape());
  const float* in = x.data();
  const float* g = dy.data();
  float* out = dx->data();
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = in[i] > 0 ? g[i] : g[i] * slope_;
}

QUANTLAB_REGISTER(quant::nn::Layer, "leaky_relu", LeakyRelu::Create, "max(x, 0) + negative_slope * min(x, 0)");

}  // namespace contrib
