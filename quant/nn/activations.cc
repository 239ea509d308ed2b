#include "quant/nn/activations.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {

void Hardswish::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  const float* in = x.data();
  float* out = y->data();
  const int64_t n = x.numel();
  const __m256 three = _mm256_set1_ps(3.0f), six = _mm256_set1_ps(6.0f);
  const __m256 zero = _mm256_setzero_ps();
  int64_t i = 0;
  // max_ps/min_ps return their second operand when either is NaN: the NaN of
  // x + 3 goes through, as std::max/std::min below and PyTorch's.
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    const __m256 r = _mm256_min_ps(six, _mm256_max_ps(zero, _mm256_add_ps(v, three)));
    _mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_mul_ps(v, r), six));
  }
  for (; i < n; ++i) {
    const float r = std::min(std::max(in[i] + 3.0f, 0.0f), 6.0f);
    out[i] = in[i] * r / 6.0f;
  }
}

void Hardswish::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  const float* in = x.data();
  const float* g = dy.data();
  float* out = dx->data();
  const int64_t n = x.numel();
  const __m256 three = _mm256_set1_ps(3.0f), neg_three = _mm256_set1_ps(-3.0f);
  const __m256 half = _mm256_set1_ps(0.5f), zero = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 mid = _mm256_mul_ps(gv, _mm256_add_ps(_mm256_div_ps(v, three), half));
    const __m256 r = _mm256_blendv_ps(mid, gv, _mm256_cmp_ps(v, three, _CMP_GE_OQ));
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(r, zero, _mm256_cmp_ps(v, neg_three, _CMP_LT_OQ)));
  }
  for (; i < n; ++i) {
    const float v = in[i];
    out[i] = v < -3.0f ? 0.0f : v >= 3.0f ? g[i] : g[i] * (v / 3.0f + 0.5f);
  }
}

void Sigmoid::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  const float* in = x.data();
  float* out = y->data();
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = 1.0f / (1.0f + std::exp(-in[i]));
}

void Sigmoid::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  const float* out = y.data();
  const float* g = dy.data();
  float* d = dx->data();
  for (int64_t i = 0; i < x.numel(); ++i) d[i] = g[i] * (1.0f - out[i]) * out[i];
}

bool Sigmoid::fixed_output_qparams(float* scale, int32_t* zero_point, bool* is_signed) const {
  *scale = 1.0f / 256.0f;
  *zero_point = 0;
  *is_signed = false;
  return true;
}

void Tanh::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  const float* in = x.data();
  float* out = y->data();
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = std::tanh(in[i]);
}

void Tanh::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  const float* out = y.data();
  const float* g = dy.data();
  float* d = dx->data();
  // PyTorch's kernel is compiled with FMA contraction: 1 - y*y is one fused
  // multiply-add (exact product, one rounding), then the product with dy.
  for (int64_t i = 0; i < x.numel(); ++i) d[i] = g[i] * std::fma(-out[i], out[i], 1.0f);
}

bool Tanh::fixed_output_qparams(float* scale, int32_t* zero_point, bool* is_signed) const {
  *scale = 2.0f / 256.0f;
  *zero_point = 128;
  *is_signed = false;
  return true;
}

namespace {

// The graph names the node (set_name) after the factory returns.
template <typename Op>
absl::StatusOr<std::unique_ptr<Layer>> CreateOp(ParamReader& p) {
  return std::unique_ptr<Layer>(new Op(""));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "hardswish", CreateOp<Hardswish>,
                  "x * relu6(x + 3) / 6 (torch.nn.Hardswish)");
QUANTLAB_REGISTER(Layer, "sigmoid", CreateOp<Sigmoid>,
                  "1 / (1 + exp(-x)) (torch.nn.Sigmoid); fixed output qparams 1/256, 0");
QUANTLAB_REGISTER(Layer, "tanh", CreateOp<Tanh>,
                  "tanh(x) (torch.nn.Tanh); fixed output qparams 2/256, 128");

}  // namespace quant::nn
