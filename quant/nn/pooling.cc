#include "quant/nn/pooling.h"

#include <immintrin.h>

#include <algorithm>
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

// 2x2 windows with stride 2, the common case, in AVX2: eight outputs at a
// time, masked loads and stores for the end of a row. Same results as the
// general loop: the first maximum in row-major window order wins, and a NaN
// wins over everything after it. (A branchy scalar loop here mispredicts on
// every other window: it cost as much as the convolution's own GEMM.)
void Pool2d::MaxPool2x2(const Tensor& x, Tensor* y) {
  const int64_t planes = x.dim(0) * c_;
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i lane_hi = _mm256_add_epi32(lane, _mm256_set1_epi32(8));
  const __m256i w = _mm256_set1_epi32(static_cast<int32_t>(in_w_));
  const __m256i one = _mm256_set1_epi32(1);
  auto deinterleave = [](__m256 a, __m256 b, __m256* even, __m256* odd) {
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
  };
  // Takes v (at index vi) where it beats best, unless best is already NaN.
  auto take = [](__m256 v, __m256i vi, __m256* best, __m256i* idx) {
    const __m256 t = _mm256_and_ps(
        _mm256_cmp_ps(*best, *best, _CMP_ORD_Q),
        _mm256_or_ps(_mm256_cmp_ps(v, *best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    *best = _mm256_blendv_ps(*best, v, t);
    *idx = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*idx), _mm256_castsi256_ps(vi), t));
  };
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* in = x.data() + pl * in_size;
    float* out = y->data() + pl * out_size;
    int32_t* arg = argmax_.data() + pl * out_size;
    for (int64_t oh = 0; oh < out_h_; ++oh) {
      const float* r0 = in + 2 * oh * in_w_;
      const float* r1 = r0 + in_w_;
      for (int64_t ow = 0; ow < out_w_; ow += 8) {
        const int32_t rem = static_cast<int32_t>(std::min<int64_t>(8, out_w_ - ow));
        const __m256i two_rem = _mm256_set1_epi32(2 * rem);
        const __m256i m_lo = _mm256_cmpgt_epi32(two_rem, lane);
        const __m256i m_hi = _mm256_cmpgt_epi32(two_rem, lane_hi);
        const __m256i m_out = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
        __m256 v0, v1, v2, v3;
        deinterleave(_mm256_maskload_ps(r0 + 2 * ow, m_lo), _mm256_maskload_ps(r0 + 2 * ow + 8, m_hi),
                     &v0, &v1);
        deinterleave(_mm256_maskload_ps(r1 + 2 * ow, m_lo), _mm256_maskload_ps(r1 + 2 * ow + 8, m_hi),
                     &v2, &v3);
        // Index in the plane of the window's top-left: 2*oh*in_w + 2*(ow + lane).
        const __m256i c0 = _mm256_add_epi32(
            _mm256_set1_epi32(static_cast<int32_t>(2 * oh * in_w_ + 2 * ow)), _mm256_add_epi32(lane, lane));
        __m256 best = v0;
        __m256i idx = c0;
        take(v1, _mm256_add_epi32(c0, one), &best, &idx);
        take(v2, _mm256_add_epi32(c0, w), &best, &idx);
        take(v3, _mm256_add_epi32(_mm256_add_epi32(c0, w), one), &best, &idx);
        _mm256_maskstore_ps(out + oh * out_w_ + ow, m_out, best);
        _mm256_maskstore_epi32(arg + oh * out_w_ + ow, m_out, idx);
      }
    }
  }
}

void Pool2d::Forward(const Tensor& x, Tensor* y) {
  const int64_t planes = x.dim(0) * c_;
  EnsureShape(y, {x.dim(0), c_, out_h_, out_w_});
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  if (kind_ == Kind::kMax) argmax_.resize(planes * out_size);  // capacity is kept
  if (kind_ == Kind::kMax && k_ == 2 && s_ == 2) {
    MaxPool2x2(x, y);
    return;
  }
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
