#include "quant/nn/pooling.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

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

namespace {
// Start of the block of eight outputs that begins at `ow` in a row of `n`: a
// last partial block is moved back to end at n (recomputing a few outputs
// with the same result), so only rows shorter than 8 need masked loads and
// stores, which are slow on some CPUs (microcoded on AMD Zen).
inline int64_t BlockStart(int64_t ow, int64_t n) { return n >= 8 && ow + 8 > n ? n - 8 : ow; }
inline __m256 Load(const float* p, __m256i mask, bool full) {
  return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask);
}
inline void Store(float* p, __m256i mask, bool full, __m256 v) {
  if (full) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, mask, v);
  }
}
}  // namespace

// 2x2 windows with stride 2, the common case, in AVX2: eight outputs at a
// time (see BlockStart for the end of a row). Same results as the
// general loop: the first maximum in row-major window order wins, and a NaN
// wins over everything after it. (A branchy scalar loop here mispredicts on
// every other window: it cost as much as the convolution's own GEMM.)
void Pool2d::MaxPool2x2(const Tensor& x, Tensor* y) {
  const int64_t planes = x.dim(0) * c_;
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  // A block of a row shorter than 8 may still be read and written whole when
  // the tensors go on past it: the extra lanes land in the next rows (of this
  // or the next plane), which are written after this one. So only the very
  // end of the tensors needs masks.
  auto HasRoom = [&](int64_t pl, int64_t oh, int64_t ow) {
    return (pl * out_size + oh * out_w_ + ow + 8 <= planes * out_size) &&
           (pl * in_size + (2 * oh + 1) * in_w_ + 2 * ow + 16 <= planes * in_size);
  };
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
      for (int64_t ow0 = 0; ow0 < out_w_; ow0 += 8) {
        const int64_t ow = BlockStart(ow0, out_w_);
        const int32_t rem = static_cast<int32_t>(std::min<int64_t>(8, out_w_ - ow));
        const bool full = rem == 8 || HasRoom(pl, oh, ow);
        const __m256i two_rem = _mm256_set1_epi32(2 * rem);
        const __m256i m_lo = _mm256_cmpgt_epi32(two_rem, lane);
        const __m256i m_hi = _mm256_cmpgt_epi32(two_rem, lane_hi);
        const __m256i m_out = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
        __m256 v0, v1, v2, v3;
        deinterleave(Load(r0 + 2 * ow, m_lo, full), Load(r0 + 2 * ow + 8, m_hi, full), &v0, &v1);
        deinterleave(Load(r1 + 2 * ow, m_lo, full), Load(r1 + 2 * ow + 8, m_hi, full), &v2, &v3);
        // Index in the plane of the window's top-left: 2*oh*in_w + 2*(ow + lane).
        const __m256i c0 = _mm256_add_epi32(
            _mm256_set1_epi32(static_cast<int32_t>(2 * oh * in_w_ + 2 * ow)), _mm256_add_epi32(lane, lane));
        __m256 best = v0;
        __m256i idx = c0;
        take(v1, _mm256_add_epi32(c0, one), &best, &idx);
        take(v2, _mm256_add_epi32(c0, w), &best, &idx);
        take(v3, _mm256_add_epi32(_mm256_add_epi32(c0, w), one), &best, &idx);
        Store(out + oh * out_w_ + ow, m_out, full, best);
        if (full) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(arg + oh * out_w_ + ow), idx);
        } else {
          _mm256_maskstore_epi32(arg + oh * out_w_ + ow, m_out, idx);
        }
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

// Backward of MaxPool2x2: every input pixel of a window row pair is written
// once (its output's gradient where it was the argmax, else 0), eight windows
// at a time, instead of zeroing dx and scattering. A last odd row or column,
// which no window covers, is zeroed.
void Pool2d::MaxPool2x2Backward(const Tensor& dy, Tensor* dx) {
  const int64_t planes = dy.dim(0) * c_;
  const int64_t in_size = in_h_ * in_w_, out_size = out_h_ * out_w_;
  // A block of a row shorter than 8 may still be read and written whole when
  // the tensors go on past it: the extra lanes land in the next rows (of this
  // or the next plane), which are written after this one. So only the very
  // end of the tensors needs masks.
  auto HasRoom = [&](int64_t pl, int64_t oh, int64_t ow) {
    return (pl * out_size + oh * out_w_ + ow + 8 <= planes * out_size) &&
           (pl * in_size + (2 * oh + 1) * in_w_ + 2 * ow + 16 <= planes * in_size);
  };
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i lane_hi = _mm256_add_epi32(lane, _mm256_set1_epi32(8));
  const __m256i w = _mm256_set1_epi32(static_cast<int32_t>(in_w_));
  const __m256i one = _mm256_set1_epi32(1);
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* din = dx->data() + pl * in_size;
    const float* dout = dy.data() + pl * out_size;
    const int32_t* arg = argmax_.data() + pl * out_size;
    for (int64_t oh = 0; oh < out_h_; ++oh) {
      float* r0 = din + 2 * oh * in_w_;
      float* r1 = r0 + in_w_;
      for (int64_t ow0 = 0; ow0 < out_w_; ow0 += 8) {
        const int64_t ow = BlockStart(ow0, out_w_);
        const int32_t rem = static_cast<int32_t>(std::min<int64_t>(8, out_w_ - ow));
        const bool full = rem == 8 || HasRoom(pl, oh, ow);
        const __m256i m_out = _mm256_cmpgt_epi32(_mm256_set1_epi32(rem), lane);
        const __m256i two_rem = _mm256_set1_epi32(2 * rem);
        const __m256i m_lo = _mm256_cmpgt_epi32(two_rem, lane);
        const __m256i m_hi = _mm256_cmpgt_epi32(two_rem, lane_hi);
        const __m256 g = Load(dout + oh * out_w_ + ow, m_out, full);
        const __m256i a =
            full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(arg + oh * out_w_ + ow))
                 : _mm256_maskload_epi32(arg + oh * out_w_ + ow, m_out);
        const __m256i c0 = _mm256_add_epi32(
            _mm256_set1_epi32(static_cast<int32_t>(2 * oh * in_w_ + 2 * ow)), _mm256_add_epi32(lane, lane));
        const __m256i c2 = _mm256_add_epi32(c0, w);
        auto pick = [&](__m256i c) { return _mm256_and_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(a, c)), g); };
        const __m256 v0 = pick(c0), v1 = pick(_mm256_add_epi32(c0, one));
        const __m256 v2 = pick(c2), v3 = pick(_mm256_add_epi32(c2, one));
        // Interleave even (v0, v2) and odd (v1, v3) columns back into rows.
        const __m256 lo0 = _mm256_unpacklo_ps(v0, v1), hi0 = _mm256_unpackhi_ps(v0, v1);
        const __m256 lo1 = _mm256_unpacklo_ps(v2, v3), hi1 = _mm256_unpackhi_ps(v2, v3);
        Store(r0 + 2 * ow, m_lo, full, _mm256_permute2f128_ps(lo0, hi0, 0x20));
        Store(r0 + 2 * ow + 8, m_hi, full, _mm256_permute2f128_ps(lo0, hi0, 0x31));
        Store(r1 + 2 * ow, m_lo, full, _mm256_permute2f128_ps(lo1, hi1, 0x20));
        Store(r1 + 2 * ow + 8, m_hi, full, _mm256_permute2f128_ps(lo1, hi1, 0x31));
      }
      if (in_w_ > 2 * out_w_) {
        for (int64_t j = 2 * out_w_; j < in_w_; ++j) r0[j] = r1[j] = 0.0f;
      }
    }
    for (int64_t i = 2 * out_h_ * in_w_; i < in_size; ++i) din[i] = 0.0f;
  }
}

void Pool2d::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  const int64_t planes = x.dim(0) * c_;
  EnsureShape(dx, x.shape());
  if (kind_ == Kind::kMax && k_ == 2 && s_ == 2) {
    MaxPool2x2Backward(dy, dx);
    return;
  }
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

namespace {

template <Pool2d::Kind kKind>
absl::StatusOr<std::unique_ptr<Layer>> CreatePool(ParamReader& p) {
  const int64_t kernel = p.IntInRange("kernel", 2, 1, 1024, "square window");
  const int64_t stride = p.IntInRange("stride", 0, 0, 1024, "stride (0: the kernel size)");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(new Pool2d("", kKind, kernel, stride));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "maxpool2d", CreatePool<Pool2d::Kind::kMax>, "max pooling, no padding, floor mode");
QUANTLAB_REGISTER(Layer, "avgpool2d", CreatePool<Pool2d::Kind::kAvg>, "average pooling, no padding, floor mode");

}  // namespace quant::nn
