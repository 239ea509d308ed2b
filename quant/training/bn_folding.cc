#include "quant/training/bn_folding.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace quant {
namespace {

// out[c, ...] = in[c, ...] * f[c] (multiply) or / f[c] (divide), axis 0.
void ScaleRows(const Tensor& in, const std::vector<float>& f, bool divide, Tensor* out) {
  if (out->shape() != in.shape()) out->Resize(in.shape());
  const int64_t rows = static_cast<int64_t>(f.size());
  const int64_t n = in.numel() / rows;
  for (int64_t c = 0; c < rows; ++c) {
    const float* a = in.data() + c * n;
    float* o = out->data() + c * n;
    const float k = f[c];
    if (divide) {
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] / k;
    } else {
      for (int64_t i = 0; i < n; ++i) o[i] = a[i] * k;
    }
  }
}

}  // namespace

std::vector<float> BatchNormScale(nn::BatchNorm& bn, float eps) {
  const Tensor& var = bn.running_var();
  std::vector<float> s(var.numel());
  for (int64_t c = 0; c < var.numel(); ++c) {
    const float invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var[c]) + eps));
    s[c] = bn.weight().value[c] * invstd;
  }
  return s;
}

BnFoldTransform::BnFoldTransform(nn::BatchNorm* bn, std::shared_ptr<QuantizerTransform> quantizer)
    : bn_(bn), quantizer_(std::move(quantizer)) {}

std::string BnFoldTransform::Describe() const {
  return absl::StrCat("fold ", bn_->name(), " then ", quantizer_->Describe());
}

void BnFoldTransform::Forward(const Tensor& in, Tensor* out, bool training) {
  scale_ = BatchNormScale(*bn_);
  ScaleRows(in, scale_, /*divide=*/false, &folded_);
  if (quantized_.shape() != in.shape()) quantized_.Resize(in.shape());
  quantizer_->Forward(folded_, &quantized_, training);
  ScaleRows(quantized_, scale_, /*divide=*/true, out);
}

void BnFoldTransform::Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) {
  // out = q(W s) / s: dL/dq = dL/dout / s, dL/dW = STE(dL/dq) * s.
  ScaleRows(grad_out, scale_, /*divide=*/true, &grad_quantized_);
  if (grad_folded_.shape() != in.shape()) grad_folded_.Resize(in.shape());
  quantizer_->Backward(folded_, grad_quantized_, &grad_folded_);
  ScaleRows(grad_folded_, scale_, /*divide=*/false, grad_in);
}

FoldedWeights FoldBatchNorm(const Tensor& weight, const Tensor* bias, nn::BatchNorm& bn, float eps) {
  const std::vector<float> s = BatchNormScale(bn, eps);
  FoldedWeights f;
  ScaleRows(weight, s, /*divide=*/false, &f.weight);
  f.bias = Tensor({static_cast<int64_t>(s.size())});
  for (size_t c = 0; c < s.size(); ++c) {
    const float b = bias != nullptr ? (*bias)[c] : 0.0f;
    f.bias[c] = (b - bn.running_mean()[c]) * s[c] + bn.bias().value[c];
  }
  return f;
}

}  // namespace quant
