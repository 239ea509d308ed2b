#include "quant/nn/elementwise.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"

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

void Clamp::Forward(const Tensor& x, Tensor* y) {
  EnsureShape(y, x.shape());
  const float* in = x.data();
  float* out = y->data();
  const float lo = lo_, hi = hi_;
  const int64_t n = x.numel();
  for (int64_t i = 0; i < n; ++i) out[i] = std::min(std::max(in[i], lo), hi);
}

void Clamp::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  const float* in = x.data();
  const float* g = dy.data();
  float* out = dx->data();
  const float lo = lo_, hi = hi_;
  const int64_t n = x.numel();
  // Branch-free so that the compiler vectorises it (a && would short-circuit).
  for (int64_t i = 0; i < n; ++i) {
    const bool pass = (in[i] > lo) & (in[i] < hi);
    out[i] = pass ? g[i] : 0.0f;
  }
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

}  // namespace quant::nn
