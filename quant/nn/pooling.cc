#include "quant/nn/pooling.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace quant::nn {

Pool2d::Pool2d(std::string name, Kind kind, int64_t kernel, int64_t stride)
    : Layer(std::move(name)), kind_(kind), k_(kernel), s_(stride > 0 ? stride : kernel) {}

std::string Pool2d::Describe() const {
  return absl::StrCat(kind_ == Kind::kMax ? "MaxPool2d" : "AvgPool2d", "(kernel=", k_,
                      ", stride=", s_, ")");
}

absl::StatusOr<Shape> Pool2d::Build(const Shape& input) {
  if (k_ <= 0) return absl::InvalidArgumentError(absl::StrCat("kernel must be positive, is ", k_));
  if (input.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects an input [C, H, W] but gets ", ShapeToString(input)));
  }
  c_ = input[0];
  in_h_ = input[1];
  in_w_ = input[2];
  if (in_h_ < k_ || in_w_ < k_) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel ", k_, " is larger than the input ", ShapeToString(input)));
  }
  out_h_ = (in_h_ - k_) / s_ + 1;
  out_w_ = (in_w_ - k_) / s_ + 1;
  return Shape{c_, out_h_, out_w_};
}

void Pool2d::Forward(const Tensor& x, Tensor* y) {
  const int64_t planes = x.dim(0) * c_;
  EnsureShape(y, {x.dim(0), c_, out_h_, out_w_});
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  if (kind_ == Kind::kMax) argmax_.resize(planes * out_size);  // capacity is kept
  const float inv = 1.0f / static_cast<float>(k_ * k_);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* in = x.data() + pl * in_size;
    float* out = y->data() + pl * out_size;
    int32_t* arg = kind_ == Kind::kMax ? argmax_.data() + pl * out_size : nullptr;
    for (int64_t oh = 0; oh < out_h_; ++oh) {
      for (int64_t ow = 0; ow < out_w_; ++ow) {
        const int64_t h0 = oh * s_, w0 = ow * s_;
        if (kind_ == Kind::kMax) {
          // PyTorch: the first maximum wins; a NaN propagates.
          int64_t best = h0 * in_w_ + w0;
          float best_v = in[best];
          for (int64_t i = 0; i < k_; ++i) {
            for (int64_t j = 0; j < k_; ++j) {
              const int64_t idx = (h0 + i) * in_w_ + w0 + j;
              const float v = in[idx];
              if (v > best_v || std::isnan(v)) {
                best_v = v;
                best = idx;
                if (std::isnan(v)) break;
              }
            }
          }
          out[oh * out_w_ + ow] = best_v;
          arg[oh * out_w_ + ow] = static_cast<int32_t>(best);
        } else {
          float sum = 0.0f;
          for (int64_t i = 0; i < k_; ++i) {
            for (int64_t j = 0; j < k_; ++j) sum += in[(h0 + i) * in_w_ + w0 + j];
          }
          out[oh * out_w_ + ow] = sum * inv;
        }
      }
    }
  }
}

void Pool2d::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  const int64_t planes = x.dim(0) * c_;
  EnsureShape(dx, x.shape());
  dx->Fill(0.0f);
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  const float inv = 1.0f / static_cast<float>(k_ * k_);
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* din = dx->data() + pl * in_size;
    const float* dout = dy.data() + pl * out_size;
    if (kind_ == Kind::kMax) {
      const int32_t* arg = argmax_.data() + pl * out_size;
      for (int64_t o = 0; o < out_size; ++o) din[arg[o]] += dout[o];
    } else {
      for (int64_t oh = 0; oh < out_h_; ++oh) {
        for (int64_t ow = 0; ow < out_w_; ++ow) {
          const float g = dout[oh * out_w_ + ow] * inv;
          for (int64_t i = 0; i < k_; ++i) {
            for (int64_t j = 0; j < k_; ++j) din[(oh * s_ + i) * in_w_ + ow * s_ + j] += g;
          }
        }
      }
    }
  }
}

}  // namespace quant::nn
