#include "quant/nn/batch_norm.h"

#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {
namespace {

// Per-channel double sums over a batch, for channels [c0, c0 + K): exactly the
// plain loop `for b, for i: acc += f(x)` of each channel (same order, so the
// same bits), but K channels at a time: a double add's latency bounds one
// chain, and K independent chains overlap. Blocks of 4, 8 or 16 channels are
// vectorised across channels: four planes' positions [i, i + 4) are loaded,
// converted to double and transposed 4x4, so that each lane of a __m256d
// accumulator is one channel adding its positions in order (explicit add and
// mul, no FMA: the scalar loop's rounding). The rest go one channel at a time.
// (A plain scalar loop over 8 channels was ~5x faster than one channel at a
// time; the vectorised blocks are faster again.)

// t[j] = (r0[j], r1[j], r2[j], r3[j]).
inline void Transpose4(__m256d r0, __m256d r1, __m256d r2, __m256d r3, __m256d* t) {
  const __m256d a = _mm256_unpacklo_pd(r0, r1), b = _mm256_unpackhi_pd(r0, r1);
  const __m256d c = _mm256_unpacklo_pd(r2, r3), d = _mm256_unpackhi_pd(r2, r3);
  t[0] = _mm256_permute2f128_pd(a, c, 0x20);
  t[1] = _mm256_permute2f128_pd(b, d, 0x20);
  t[2] = _mm256_permute2f128_pd(a, c, 0x31);
  t[3] = _mm256_permute2f128_pd(b, d, 0x31);
}

// Positions [i, i + 4) of four planes s apart, as doubles: t[j] = the planes at i + j.
inline void LoadColumns4(const float* p, int64_t s, int64_t i, __m256d* t) {
  Transpose4(_mm256_cvtps_pd(_mm_loadu_ps(p + i)), _mm256_cvtps_pd(_mm_loadu_ps(p + s + i)),
             _mm256_cvtps_pd(_mm_loadu_ps(p + 2 * s + i)), _mm256_cvtps_pd(_mm_loadu_ps(p + 3 * s + i)), t);
}
// Position i of four planes s apart, as doubles.
inline __m256d LoadColumn1(const float* p, int64_t s, int64_t i) {
  return _mm256_set_pd(p[3 * s + i], p[2 * s + i], p[s + i], p[i]);
}
// The same for xhat = (x - mean) * invstd computed in float per plane (the
// forward pass's formula), then converted.
inline void LoadNormalizedColumns4(const float* p, int64_t s, int64_t i, const __m128* mean,
                                   const __m128* invstd, __m256d* t) {
  __m256d r[4];
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) {
    r[q] = _mm256_cvtps_pd(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(p + q * s + i), mean[q]), invstd[q]));
  }
  Transpose4(r[0], r[1], r[2], r[3], t);
}
inline __m256d LoadNormalizedColumn1(const float* p, int64_t s, int64_t i, const float* mean,
                                     const float* invstd) {
  float h[4];
#pragma GCC unroll 4
  for (int q = 0; q < 4; ++q) h[q] = (p[q * s + i] - mean[q]) * invstd[q];
  return _mm256_set_pd(h[3], h[2], h[1], h[0]);
}

// sum[k] = sum over b, i of x[b][c0 + k][i], k < K.
template <int K>
void ChannelSum(const float* x, int64_t batch, int64_t channels, int64_t s, int64_t c0, double* sum) {
  if constexpr (K % 4 == 0) {
    constexpr int A = K / 4;
    __m256d acc[A];
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) acc[a] = _mm256_setzero_pd();
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = x + (b * channels + c0) * s;
      int64_t i = 0;
      for (; i + 4 <= s; i += 4) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          __m256d t[4];
          LoadColumns4(p + 4 * a * s, s, i, t);
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) acc[a] = _mm256_add_pd(acc[a], t[j]);
        }
      }
      for (; i < s; ++i) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) acc[a] = _mm256_add_pd(acc[a], LoadColumn1(p + 4 * a * s, s, i));
      }
    }
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) _mm256_storeu_pd(sum + 4 * a, acc[a]);
  } else {
    double acc[K] = {};
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = x + (b * channels + c0) * s;
      for (int64_t i = 0; i < s; ++i) {
        for (int k = 0; k < K; ++k) acc[k] += p[k * s + i];
      }
    }
    for (int k = 0; k < K; ++k) sum[k] = acc[k];
  }
}

// ss[k] = sum over b, i of (x[b][c0 + k][i] - mean[k])^2 in double.
template <int K>
void ChannelSquaredDeviation(const float* x, int64_t batch, int64_t channels, int64_t s, int64_t c0,
                             const double* mean, double* ss) {
  if constexpr (K % 4 == 0) {
    constexpr int A = K / 4;
    __m256d acc[A], m[A];
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) {
      acc[a] = _mm256_setzero_pd();
      m[a] = _mm256_loadu_pd(mean + 4 * a);
    }
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = x + (b * channels + c0) * s;
      int64_t i = 0;
      for (; i + 4 <= s; i += 4) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          __m256d t[4];
          LoadColumns4(p + 4 * a * s, s, i, t);
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            const __m256d d = _mm256_sub_pd(t[j], m[a]);
            acc[a] = _mm256_add_pd(acc[a], _mm256_mul_pd(d, d));
          }
        }
      }
      for (; i < s; ++i) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          const __m256d d = _mm256_sub_pd(LoadColumn1(p + 4 * a * s, s, i), m[a]);
          acc[a] = _mm256_add_pd(acc[a], _mm256_mul_pd(d, d));
        }
      }
    }
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) _mm256_storeu_pd(ss + 4 * a, acc[a]);
  } else {
    double acc[K] = {};
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = x + (b * channels + c0) * s;
      for (int64_t i = 0; i < s; ++i) {
        for (int k = 0; k < K; ++k) {
          const double d = p[k * s + i] - mean[k];
          acc[k] += d * d;
        }
      }
    }
    for (int k = 0; k < K; ++k) ss[k] = acc[k];
  }
}

// sdy[k] = sum dy, sdyh[k] = sum dy * xhat (in double) over channel c0 + k,
// where xhat = (x - mean) * invstd in float, as the forward pass computed it.
template <int K>
void ChannelGradSums(const float* dy, const float* x, const float* mean, const float* invstd, int64_t batch,
                     int64_t channels, int64_t s, int64_t c0, double* sdy, double* sdyh) {
  if constexpr (K % 4 == 0) {
    constexpr int A = K / 4;
    __m256d a_acc[A], h_acc[A];
    __m128 mv[K], iv[K];
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) {
      mv[k] = _mm_set1_ps(mean[c0 + k]);
      iv[k] = _mm_set1_ps(invstd[c0 + k]);
    }
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) a_acc[a] = h_acc[a] = _mm256_setzero_pd();
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t off = (b * channels + c0) * s;
      const float* g = dy + off;
      const float* p = x + off;
      int64_t i = 0;
      for (; i + 4 <= s; i += 4) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          __m256d tg[4], th[4];
          LoadColumns4(g + 4 * a * s, s, i, tg);
          LoadNormalizedColumns4(p + 4 * a * s, s, i, mv + 4 * a, iv + 4 * a, th);
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) {
            a_acc[a] = _mm256_add_pd(a_acc[a], tg[j]);
            h_acc[a] = _mm256_add_pd(h_acc[a], _mm256_mul_pd(tg[j], th[j]));
          }
        }
      }
      for (; i < s; ++i) {
#pragma GCC unroll 4
        for (int a = 0; a < A; ++a) {
          const __m256d tg = LoadColumn1(g + 4 * a * s, s, i);
          const __m256d th = LoadNormalizedColumn1(p + 4 * a * s, s, i, mean + c0 + 4 * a, invstd + c0 + 4 * a);
          a_acc[a] = _mm256_add_pd(a_acc[a], tg);
          h_acc[a] = _mm256_add_pd(h_acc[a], _mm256_mul_pd(tg, th));
        }
      }
    }
#pragma GCC unroll 4
    for (int a = 0; a < A; ++a) {
      _mm256_storeu_pd(sdy + 4 * a, a_acc[a]);
      _mm256_storeu_pd(sdyh + 4 * a, h_acc[a]);
    }
  } else {
    double a[K] = {}, h[K] = {};
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t off = (b * channels + c0) * s;
      const float* g = dy + off;
      const float* p = x + off;
      for (int64_t i = 0; i < s; ++i) {
        for (int k = 0; k < K; ++k) {
          const float xh = (p[k * s + i] - mean[c0 + k]) * invstd[c0 + k];
          a[k] += g[k * s + i];
          h[k] += static_cast<double>(g[k * s + i]) * xh;
        }
      }
    }
    for (int k = 0; k < K; ++k) {
      sdy[k] = a[k];
      sdyh[k] = h[k];
    }
  }
}

// Calls f.template operator()<K>(c0) over [0, channels) in blocks of 16, 8 and
// 4 channels, the tail one channel at a time.
template <typename F>
void ForChannelBlocks(int64_t channels, F&& f) {
  int64_t c = 0;
  for (; c + 16 <= channels; c += 16) f(std::integral_constant<int, 16>(), c);
  for (; c + 8 <= channels; c += 8) f(std::integral_constant<int, 8>(), c);
  for (; c + 4 <= channels; c += 4) f(std::integral_constant<int, 4>(), c);
  for (; c < channels; ++c) f(std::integral_constant<int, 1>(), c);
}

// o[i] = (p[i] - mean) * invstd * g + beta for i < n (the float formula of
// xhat, then of y), 8 at a time.
inline void NormalizePlane(const float* p, int64_t n, float mean, float invstd, float g, float beta, float* o) {
  const __m256 mv = _mm256_set1_ps(mean), iv = _mm256_set1_ps(invstd), gv = _mm256_set1_ps(g),
               bv = _mm256_set1_ps(beta);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mv), iv);
    _mm256_storeu_ps(o + i, _mm256_add_ps(_mm256_mul_ps(h, gv), bv));
  }
  for (; i < n; ++i) {
    const float h = (p[i] - mean) * invstd;
    o[i] = h * g + beta;
  }
}

// o[i] = scale * (dy[i] - mean_dy - xhat[i] * mean_dy_xhat), xhat recomputed from x.
inline void InputGradPlane(const float* dy, const float* p, int64_t n, float mean, float invstd, float scale,
                           float mean_dy, float mean_dy_xhat, float* o) {
  const __m256 mv = _mm256_set1_ps(mean), iv = _mm256_set1_ps(invstd), sv = _mm256_set1_ps(scale),
               mdv = _mm256_set1_ps(mean_dy), mhv = _mm256_set1_ps(mean_dy_xhat);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p + i), mv), iv);
    const __m256 t = _mm256_sub_ps(_mm256_sub_ps(_mm256_loadu_ps(dy + i), mdv), _mm256_mul_ps(h, mhv));
    _mm256_storeu_ps(o + i, _mm256_mul_ps(sv, t));
  }
  for (; i < n; ++i) {
    const float h = (p[i] - mean) * invstd;
    o[i] = scale * (dy[i] - mean_dy - h * mean_dy_xhat);
  }
}

}  // namespace

BatchNorm::BatchNorm(std::string name, bool spatial, int64_t num_features, float momentum,
                     float eps)
    : Layer(std::move(name)), spatial_(spatial), c_(num_features), momentum_(momentum), eps_(eps) {}

std::string BatchNorm::Describe() const {
  return absl::StrCat(spatial_ ? "BatchNorm2d(" : "BatchNorm1d(", c_, ")");
}

absl::StatusOr<Shape> BatchNorm::Build(const Shape& input) {
  const size_t rank = spatial_ ? 3 : 1;
  if (input.size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expects an input ", spatial_ ? "[C, H, W]" : "[C]", " but gets ", ShapeToString(input)));
  }
  if (c_ < 0) c_ = input[0];
  if (input[0] != c_) {
    return absl::InvalidArgumentError(absl::StrCat("expects input [", c_, spatial_ ? ", H, W" : "",
                                                   "] but gets ", ShapeToString(input)));
  }
  s_ = spatial_ ? input[1] * input[2] : 1;
  weight_.Allocate({c_});
  bias_.Allocate({c_});
  running_mean_ = Tensor({c_});
  running_var_ = Tensor({c_});
  mean_.assign(c_, 0.0f);
  invstd_.assign(c_, 0.0f);
  sum_dy_.assign(c_, 0.0);
  sum_dy_xhat_.assign(c_, 0.0);
  InitState();
  return input;
}

void BatchNorm::ResetParameters(Rng&) { InitState(); }

void BatchNorm::InitState() {
  weight_.value.Fill(1.0f);
  bias_.value.Fill(0.0f);
  running_mean_.Fill(0.0f);
  running_var_.Fill(1.0f);
}

void BatchNorm::Forward(const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  const int64_t n = batch * s_;
  EnsureShape(y, x.shape());
  if (training()) {
    ForChannelBlocks(c_, [&](auto k, int64_t c0) {
      constexpr int K = decltype(k)::value;
      ChannelSum<K>(x.data(), batch, c_, s_, c0, &sum_dy_[c0]);
      double mean[K];
      for (int j = 0; j < K; ++j) mean[j] = sum_dy_[c0 + j] / static_cast<double>(n);
      ChannelSquaredDeviation<K>(x.data(), batch, c_, s_, c0, mean, &sum_dy_xhat_[c0]);
    });
  }
  for (int64_t c = 0; c < c_; ++c) {
    float mean, invstd;
    if (training()) {
      // sum_dy_ / sum_dy_xhat_ serve as scratch for the sum and the squared deviations here.
      const double m = sum_dy_[c] / static_cast<double>(n);
      const double ss = sum_dy_xhat_[c];
      const double var = ss / static_cast<double>(n);
      mean = static_cast<float>(m);
      invstd = static_cast<float>(1.0 / std::sqrt(var + eps_));
      const double unbiased = n > 1 ? ss / static_cast<double>(n - 1) : var;
      running_mean_[c] = (1.0f - momentum_) * running_mean_[c] + momentum_ * mean;
      running_var_[c] =
          (1.0f - momentum_) * running_var_[c] + momentum_ * static_cast<float>(unbiased);
    } else {
      mean = running_mean_[c];
      invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_));
    }
    mean_[c] = mean;
    invstd_[c] = invstd;
  }
  // y = xhat * gamma + beta with xhat = (x - mean) * invstd; xhat itself is
  // not stored: Backward recomputes it from x with the same float operations.
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < c_; ++c) {
      const int64_t off = (b * c_ + c) * s_;
      NormalizePlane(x.data() + off, s_, mean_[c], invstd_[c], weight_.value[c], bias_.value[c], y->data() + off);
    }
  }
}

void BatchNorm::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  const int64_t batch = x.dim(0);
  const int64_t n = batch * s_;
  ForChannelBlocks(c_, [&](auto k, int64_t c0) {
    constexpr int K = decltype(k)::value;
    ChannelGradSums<K>(dy.data(), x.data(), mean_.data(), invstd_.data(), batch, c_, s_, c0, &sum_dy_[c0],
                       &sum_dy_xhat_[c0]);
  });
  for (int64_t c = 0; c < c_; ++c) {
    weight_.grad[c] = static_cast<float>(sum_dy_xhat_[c]);
    bias_.grad[c] = static_cast<float>(sum_dy_[c]);
  }
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < c_; ++c) {
      const float scale = weight_.value[c] * invstd_[c];
      const int64_t off = (b * c_ + c) * s_;
      const float* g = dy.data() + off;
      float* o = dx->data() + off;
      if (training()) {
        // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
        InputGradPlane(g, x.data() + off, s_, mean_[c], invstd_[c], scale, static_cast<float>(sum_dy_[c] / n),
                       static_cast<float>(sum_dy_xhat_[c] / n), o);
      } else {
        for (int64_t i = 0; i < s_; ++i) o[i] = scale * g[i];
      }
    }
  }
}

namespace {

template <bool kSpatial>
absl::StatusOr<std::unique_ptr<Layer>> CreateBatchNorm(ParamReader& p) {
  const int64_t c = p.Int("num_features", -1, "channels (default: inferred; checked when given)");
  const double momentum = p.DoubleInRange("momentum", 0.1, 0.0, 1.0, "running-statistics momentum (PyTorch's)");
  const double eps = p.DoubleInRange("eps", 1e-5, 0.0, 1.0, "added to the variance");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(
      new BatchNorm("", kSpatial, c, static_cast<float>(momentum), static_cast<float>(eps)));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "batchnorm1d", CreateBatchNorm<false>, "BatchNorm1d over [C] samples");
QUANTLAB_REGISTER(Layer, "batchnorm2d", CreateBatchNorm<true>, "BatchNorm2d over [C, H, W] samples");

}  // namespace quant::nn
