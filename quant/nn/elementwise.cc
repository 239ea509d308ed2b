#include "quant/nn/elementwise.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {

Clamp::Clamp(std::string name, Kind kind, float lo, float hi)
    : Layer(std::move(name)), kind_(kind), lo_(lo), hi_(hi) {
  if (kind == Kind::kReLU) {
    lo_ = 0.0f;
    hi_ = std::numeric_limits<float>::infinity();
  } else if (kind == Kind::kReLU6) {
    lo_ = 0.0f;
    hi_ = 6.0f;
  }
}

std::string Clamp::Describe() const {
  switch (kind_) {
    case Kind::kReLU:
      return "ReLU()";
    case Kind::kReLU6:
      return "ReLU6()";
    case Kind::kHardtanh:
      break;
  }
  return absl::StrCat("Hardtanh(", lo_, ", ", hi_, ")");
}

std::string Clamp::type() const {
  switch (kind_) {
    case Kind::kReLU:
      return "relu";
    case Kind::kReLU6:
      return "relu6";
    case Kind::kHardtanh:
      break;
  }
  return "hardtanh";
}

// relu6 nodes are named relu6_1, relu6_2 (relu61 would read as relu 61).
std::string Clamp::name_prefix() const { return kind_ == Kind::kReLU6 ? "relu6_" : type(); }

void ClampValues(const float* in, float* out, int64_t n, float lo, float hi) {
  // max(lo, v) and min(hi, v) return v when v is NaN, like std::min/max below.
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(out + i, _mm256_min_ps(vhi, _mm256_max_ps(vlo, _mm256_loadu_ps(in + i))));
  }
  if (i < n && n >= 8) {
    // The last 8, overlapping the block before (the conv kernels clamp rows of
    // 28 or 14): clamping is idempotent, so this holds even when in == out.
    _mm256_storeu_ps(out + n - 8, _mm256_min_ps(vhi, _mm256_max_ps(vlo, _mm256_loadu_ps(in + n - 8))));
    return;
  }
  for (; i < n; ++i) out[i] = std::min(std::max(in[i], lo), hi);
}

void Clamp::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  ClampValues(x.data(), y->data(), x.numel(), lo_, hi_);
}

void ClampGradient(const float* in, const float* g, float* out, int64_t n, float lo, float hi) {
  // Explicit AVX: left to itself the compiler vectorises the select with a
  // masked load of g, which is microcoded (slow) on AMD Zen.
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(in + i);
    const __m256 pass = _mm256_and_ps(_mm256_cmp_ps(v, vlo, _CMP_GT_OQ), _mm256_cmp_ps(v, vhi, _CMP_LT_OQ));
    _mm256_storeu_ps(out + i, _mm256_and_ps(pass, _mm256_loadu_ps(g + i)));
  }
  if (i < n && n >= 8) {
    // The last 8, overlapping (rows of 28 in the fused conv); masking twice
    // gives the same values, so out may be g.
    const __m256 v = _mm256_loadu_ps(in + n - 8);
    const __m256 pass = _mm256_and_ps(_mm256_cmp_ps(v, vlo, _CMP_GT_OQ), _mm256_cmp_ps(v, vhi, _CMP_LT_OQ));
    _mm256_storeu_ps(out + n - 8, _mm256_and_ps(pass, _mm256_loadu_ps(g + n - 8)));
    return;
  }
  for (; i < n; ++i) {
    const bool pass = (in[i] > lo) & (in[i] < hi);
    out[i] = pass ? g[i] : 0.0f;
  }
}

void Clamp::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  ClampGradient(x.data(), dy.data(), dx->data(), x.numel(), lo_, hi_);
}

absl::StatusOr<Shape> Flatten::Build(const Shape& input) {
  features_ = NumElements(input);
  return Shape{features_};
}

void Flatten::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, {x.dim(0), features_});
  std::memcpy(y->data(), x.data(), x.numel() * sizeof(float));
}

void Flatten::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  std::memcpy(dx->data(), dy.data(), dy.numel() * sizeof(float));
}

std::string Dropout::Describe() const { return absl::StrCat("Dropout(p=", p_, ")"); }

absl::StatusOr<Shape> Dropout::Build(const Shape& input) {
  if (!(p_ >= 0.0f && p_ < 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("p must be in [0, 1), is ", p_));
  }
  return input;
}

void Dropout::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  EnsureShape(&mask_, x.shape());
  const int64_t n = x.numel();
  float* m = mask_.data();
  if (training() && p_ > 0.0f) {
    const float scale = 1.0f / (1.0f - p_);
    for (int64_t i = 0; i < n; ++i) m[i] = rng_.Uniform01() < p_ ? 0.0f : scale;
  } else {
    std::fill(m, m + n, 1.0f);
  }
  for (int64_t i = 0; i < n; ++i) y->data()[i] = x.data()[i] * m[i];
}

void Dropout::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  for (int64_t i = 0; i < dy.numel(); ++i) dx->data()[i] = dy.data()[i] * mask_.data()[i];
}

namespace {

absl::StatusOr<std::unique_ptr<Layer>> CreateRelu(ParamReader& p) {
  return std::unique_ptr<Layer>(new Clamp("", Clamp::Kind::kReLU));
}
absl::StatusOr<std::unique_ptr<Layer>> CreateRelu6(ParamReader& p) {
  return std::unique_ptr<Layer>(new Clamp("", Clamp::Kind::kReLU6));
}
absl::StatusOr<std::unique_ptr<Layer>> CreateHardtanh(ParamReader& p) {
  const double lo = p.Double("min_val", -1.0, "lower clip");
  const double hi = p.Double("max_val", 1.0, "upper clip");
  if (!p.describing() && !(lo < hi)) p.Fail("max_val", "must be greater than min_val");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(new Clamp("", Clamp::Kind::kHardtanh, static_cast<float>(lo), static_cast<float>(hi)));
}
absl::StatusOr<std::unique_ptr<Layer>> CreateFlatten(ParamReader& p) {
  return std::unique_ptr<Layer>(new Flatten(""));
}
absl::StatusOr<std::unique_ptr<Layer>> CreateDropout(ParamReader& p) {
  const double prob = p.DoubleInRange("p", 0.5, 0.0, 0.999, "probability of zeroing an element");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(new Dropout("", static_cast<float>(prob)));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "relu", CreateRelu, "max(x, 0)");
QUANTLAB_REGISTER(Layer, "relu6", CreateRelu6, "min(max(x, 0), 6)");
QUANTLAB_REGISTER(Layer, "hardtanh", CreateHardtanh, "min(max(x, min_val), max_val)");
QUANTLAB_REGISTER(Layer, "flatten", CreateFlatten, "[C, H, W] -> [C*H*W] in PyTorch's order");
QUANTLAB_REGISTER(Layer, "dropout", CreateDropout, "inverted dropout while training, identity in eval");

}  // namespace quant::nn
