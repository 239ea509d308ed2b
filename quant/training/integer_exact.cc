#include "quant/training/integer_exact.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/backends/fixed_point.h"
#include "quant/training/bn_folding.h"

namespace quant {
namespace {

// The per-tensor grid of a quantizer (the scale and zero point the integer model gets).
absl::Status TensorGrid(const Quantizer& q, const std::string& what, float* scale, int32_t* zero_point,
                        int64_t* lo = nullptr, int64_t* hi = nullptr) {
  absl::StatusOr<QParams> g = q.IntegerGrid();
  if (!g.ok()) return absl::FailedPreconditionError(absl::StrCat(what, ": ", g.status().message()));
  if (g->scale.size() != 1) return absl::FailedPreconditionError(absl::StrCat(what, ": not a per-tensor grid"));
  *scale = g->scale[0];
  *zero_point = g->zero_point[0];
  if (lo) *lo = g->quant_min;
  if (hi) *hi = g->quant_max;
  return absl::OkStatus();
}

// One channel's run of outputs: acc = round((x - b_float) / s_acc) + b_int, then the
// reference's v = clamp(zp + MultiplyByQuantizedMultiplier(acc, m, shift), lo, hi) and
// y = s_out * (v - zp). x - b_float is s_acc times an integer up to float rounding far
// below one unit, so any rounding to the nearest integer recovers it (no ties).
struct Stage {
  double b_float, inv, b_int;
  int32_t multiplier;
  int shift;
  int32_t zp, lo, hi;
  float s_out;
};

inline float RequantizeOne(float x, const Stage& st) {
  const double t = (static_cast<double>(x) - st.b_float) * st.inv;
  const double acc = static_cast<double>(static_cast<int64_t>(t + (t >= 0 ? 0.5 : -0.5))) + st.b_int;
  const double bounded = std::min(std::max(acc, -2147483648.0), 2147483647.0);
  int32_t v = backends::MultiplyByQuantizedMultiplier(static_cast<int32_t>(bounded), st.multiplier, st.shift) + st.zp;
  v = std::min(std::max(v, st.lo), st.hi);
  return st.s_out * static_cast<float>(v - st.zp);
}

#if defined(__AVX2__)
// gemmlowp's SaturatingRoundingDoublingHighMul for 8 lanes (b > 0, so never the saturating case):
// (a * b + nudge) / 2^31 truncated toward zero, nudge = 2^30 or 1 - 2^30 by the product's sign.
inline __m256i DoublingHighMul8(__m256i a, __m256i b) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i pos_nudge = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i neg_nudge = _mm256_set1_epi64x(1 - (int64_t{1} << 30));
  const __m256i toward_zero = _mm256_set1_epi64x((int64_t{1} << 31) - 1);
  auto half = [&](__m256i p) {  // 4 int64 products -> their high32 in the low 32 bits of each lane
    const __m256i neg = _mm256_cmpgt_epi64(zero, p);
    __m256i q = _mm256_add_epi64(p, _mm256_blendv_epi8(pos_nudge, neg_nudge, neg));
    q = _mm256_add_epi64(q, _mm256_and_si256(neg, toward_zero));  // q < 0 exactly when p < 0
    return _mm256_srli_epi64(q, 31);  // the low 32 bits are right whatever the sign
  };
  const __m256i even = half(_mm256_mul_epi32(a, b));
  const __m256i odd = half(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)));
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

// gemmlowp's RoundingDivideByPOT for 8 lanes (ties away from zero), an exponent per lane.
inline __m256i RoundingDivideByPOT8(__m256i x, __m256i exponent) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, exponent), one);
  const __m256i remainder = _mm256_and_si256(x, mask);
  const __m256i threshold = _mm256_add_epi32(_mm256_srai_epi32(mask, 1),
                                             _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), x), one));
  const __m256i shifted = _mm256_srav_epi32(x, exponent);
  return _mm256_add_epi32(shifted, _mm256_and_si256(_mm256_cmpgt_epi32(remainder, threshold), one));
}

// 8 outputs; every per-channel value is given per lane (a conv's run broadcasts one channel's).
inline __m256 Requantize8(__m256 v, __m256d b_lo, __m256d b_hi, __m256d inv_lo, __m256d inv_hi, __m256i b_int,
                          __m256i mult, __m256i left, __m256i right, __m256i zp, __m256i lo, __m256i hi,
                          __m256 s_out) {
  const __m256d t0 = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), b_lo), inv_lo);
  const __m256d t1 = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), b_hi), inv_hi);
  // Round to nearest (MXCSR's default): the integer each encodes.
  __m256i acc = _mm256_add_epi32(_mm256_set_m128i(_mm256_cvtpd_epi32(t1), _mm256_cvtpd_epi32(t0)), b_int);
  acc = _mm256_sllv_epi32(acc, left);
  __m256i q = RoundingDivideByPOT8(DoublingHighMul8(acc, mult), right);
  q = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(q, zp), lo), hi);
  return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, zp)), s_out);
}
#endif

// |b_int| and the accumulators stay far inside int32 for grids of up to 8 bits; the scalar
// path bounds them, and takes any channel whose bias is extreme.
bool VectorSafe(double b_int) { return std::fabs(b_int) < 1e9; }

// A conv's run of one channel: n outputs, one Stage.
void RequantizeRun(const float* x, int64_t n, const Stage& st, float* y) {
  int64_t k = 0;
#if defined(__AVX2__)
  if (VectorSafe(st.b_int)) {
    const __m256d b = _mm256_set1_pd(st.b_float), inv = _mm256_set1_pd(st.inv);
    const __m256i b_int = _mm256_set1_epi32(static_cast<int32_t>(st.b_int)), mult = _mm256_set1_epi32(st.multiplier);
    const __m256i left = _mm256_set1_epi32(st.shift > 0 ? st.shift : 0);
    const __m256i right = _mm256_set1_epi32(st.shift > 0 ? 0 : -st.shift);
    const __m256i zp = _mm256_set1_epi32(st.zp), lo = _mm256_set1_epi32(st.lo), hi = _mm256_set1_epi32(st.hi);
    const __m256 s_out = _mm256_set1_ps(st.s_out);
    for (; k + 8 <= n; k += 8) {
      _mm256_storeu_ps(y + k, Requantize8(_mm256_loadu_ps(x + k), b, b, inv, inv, b_int, mult, left, right, zp, lo,
                                          hi, s_out));
    }
  }
#endif
  for (; k < n; ++k) y[k] = RequantizeOne(x[k], st);
}

// A linear's output row: channel c at x[c], per-channel values in structure-of-arrays form.
struct Stages {
  std::vector<double> b_float, inv, b_int;
  std::vector<int32_t> b_int32, multiplier, left, right;
  std::vector<int> shift;
  int32_t zp = 0, lo = 0, hi = 0;
  float s_out = 0;
  Stage At(int64_t c) const {
    return Stage{b_float[c], inv[c], b_int[c], multiplier[c], shift[c], zp, lo, hi, s_out};
  }
};

void RequantizeRow(const float* x, int64_t channels, const Stages& st, bool vector_safe, float* y) {
  int64_t c = 0;
#if defined(__AVX2__)
  if (vector_safe) {
    const __m256i zp = _mm256_set1_epi32(st.zp), lo = _mm256_set1_epi32(st.lo), hi = _mm256_set1_epi32(st.hi);
    const __m256 s_out = _mm256_set1_ps(st.s_out);
    auto i32 = [](const std::vector<int32_t>& v, int64_t at) {
      return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v.data() + at));
    };
    for (; c + 8 <= channels; c += 8) {
      _mm256_storeu_ps(y + c, Requantize8(_mm256_loadu_ps(x + c), _mm256_loadu_pd(st.b_float.data() + c),
                                          _mm256_loadu_pd(st.b_float.data() + c + 4),
                                          _mm256_loadu_pd(st.inv.data() + c), _mm256_loadu_pd(st.inv.data() + c + 4),
                                          i32(st.b_int32, c), i32(st.multiplier, c), i32(st.left, c),
                                          i32(st.right, c), zp, lo, hi, s_out));
    }
  }
#endif
  for (; c < channels; ++c) y[c] = RequantizeOne(x[c], st.At(c));
}

}  // namespace

IntegerRequantTransform::IntegerRequantTransform(std::shared_ptr<QuantizerTransform> output, Source source)
    : output_(std::move(output)), src_(std::move(source)) {}

std::string IntegerRequantTransform::Describe() const {
  return absl::StrCat(output_->Describe(), ", integer-exact requantization of ", src_.layer,
                      src_.batch_norm ? absl::StrCat(" (", src_.batch_norm->name(), " folded)") : "");
}

void IntegerRequantTransform::Forward(const Tensor& in, Tensor* out, bool training) {
  // The fake quantizer first: its observer, qparams, STE mask and learned values stay as in QAT.
  output_->Forward(in, out, training);
  if (src_.batch_norm != nullptr && src_.batch_norm->training()) return;  // batch statistics: no integer form
  float s_in, s_out;
  int32_t zp_in, zp;
  int64_t lo64, hi64;
  absl::Status s = TensorGrid(*src_.input, src_.layer + " input", &s_in, &zp_in);
  if (s.ok()) s = TensorGrid(output_->quantizer(), src_.layer + " output", &s_out, &zp, &lo64, &hi64);
  absl::StatusOr<QParams> w = src_.weights->IntegerGrid();
  if (s.ok() && !w.ok()) s = w.status();
  if (!s.ok()) {
    if (status_.ok()) status_ = s;
    return;
  }
  // Channels: NCHW conv outputs [N, C, H, W] or linear [N, O].
  const int64_t channels = in.rank() >= 2 ? in.dim(1) : in.numel();
  const int64_t inner = in.rank() == 4 ? in.dim(2) * in.dim(3) : 1;
  if (w->size() != 1 && w->size() != channels) {
    if (status_.ok()) {
      status_ = absl::InternalError(absl::StrCat(src_.layer, ": ", w->size(), " weight scales for ", channels,
                                                 " output channels"));
    }
    return;
  }
  std::vector<float> bias(channels, 0.0f);
  if (src_.bias != nullptr && src_.bias->value.numel() == channels) {
    for (int64_t c = 0; c < channels; ++c) bias[c] = src_.bias->value[c];
  }
  if (src_.batch_norm != nullptr) {  // FoldBatchNorm's bias, in the same float operations
    const std::vector<float> k = BatchNormScale(*src_.batch_norm);
    for (int64_t c = 0; c < channels; ++c) {
      bias[c] = (bias[c] - src_.batch_norm->running_mean()[c]) * k[c] + src_.batch_norm->bias().value[c];
    }
  }
  int32_t lo = static_cast<int32_t>(lo64), hi = static_cast<int32_t>(hi64);
  if (src_.clamp != Clamp::kNone) lo = std::max(lo, zp);
  if (src_.clamp == Clamp::kRelu6) {
    hi = static_cast<int32_t>(std::min<double>(hi, std::nearbyint(6.0 / static_cast<double>(s_out)) + zp));
  }
  // Per channel: 1 / (s_in * s_w[c]), the converter's int32 bias and ComputeRequantization's multiplier.
  Stages st;
  st.zp = zp, st.lo = lo, st.hi = hi, st.s_out = s_out;
  bool vector_safe = true;
  for (int64_t c = 0; c < channels; ++c) {
    const double acc_scale = static_cast<double>(s_in) * static_cast<double>(w->scale[w->size() == 1 ? 0 : c]);
    int32_t multiplier;
    int shift;
    if (!backends::QuantizeMultiplier(acc_scale / static_cast<double>(s_out), &multiplier, &shift)) {
      if (status_.ok()) status_ = absl::InternalError(absl::StrCat(src_.layer, ": multiplier not representable"));
      return;
    }
    const double b_int = std::nearbyint(static_cast<double>(bias[c]) / acc_scale);
    vector_safe = vector_safe && VectorSafe(b_int);
    st.b_float.push_back(bias[c]);
    st.inv.push_back(1.0 / acc_scale);
    st.b_int.push_back(b_int);
    st.b_int32.push_back(VectorSafe(b_int) ? static_cast<int32_t>(b_int) : 0);
    st.multiplier.push_back(multiplier);
    st.shift.push_back(shift);
    st.left.push_back(shift > 0 ? shift : 0);
    st.right.push_back(shift > 0 ? 0 : -shift);
  }
  const float* x = in.data();
  float* y = out->data();
  const int64_t batches = in.numel() / (channels * inner);
  if (inner == 1) {  // linear: rows of channels
    for (int64_t b = 0; b < batches; ++b) RequantizeRow(x + b * channels, channels, st, vector_safe, y + b * channels);
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {  // conv: a run of H * W per channel
    const Stage one = st.At(c);
    for (int64_t b = 0; b < batches; ++b) {
      const int64_t base = (b * channels + c) * inner;
      RequantizeRun(x + base, inner, one, y + base);
    }
  }
}

void IntegerRequantTransform::Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) {
  output_->Backward(in, grad_out, grad_in);
}

std::string AveragePoolTransform::Describe() const {
  return absl::StrCat(layer_, " output: the reference's average rounded to the input's grid (window ", window_, ")");
}

void AveragePoolTransform::Forward(const Tensor& in, Tensor* out, bool training) {
  (void)training;
  if (out->shape() != in.shape()) out->Resize(in.shape());
  float s;
  int32_t zp;
  int64_t lo = 0, hi = 0;
  absl::Status st = TensorGrid(*input_, layer_ + " input", &s, &zp, &lo, &hi);
  int32_t multiplier = 0;
  int shift = 0;
  if (st.ok() && !backends::QuantizeMultiplier(1.0 / static_cast<double>(window_), &multiplier, &shift)) {
    st = absl::InternalError(absl::StrCat(layer_, ": 1/window not representable"));
  }
  if (!st.ok()) {
    if (status_.ok()) status_ = st;
    std::copy(in.data(), in.data() + in.numel(), out->data());
    return;
  }
  // The window's sum of (q - zp) is the float average * window / s (values on the grid).
  for (int64_t i = 0; i < in.numel(); ++i) {
    const double t = static_cast<double>(in[i]) * static_cast<double>(window_) / s;  // an integer, up to rounding
    const double sum = static_cast<double>(static_cast<int64_t>(t + (t >= 0 ? 0.5 : -0.5)));
    int32_t v = backends::MultiplyByQuantizedMultiplier(static_cast<int32_t>(sum), multiplier, shift) + zp;
    v = std::min(std::max(v, static_cast<int32_t>(lo)), static_cast<int32_t>(hi));  // the input's grid
    (*out)[i] = s * static_cast<float>(v - zp);
  }
}

void AveragePoolTransform::Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) {
  (void)in;
  if (grad_in != &grad_out) std::copy(grad_out.data(), grad_out.data() + grad_out.numel(), grad_in->data());
}

}  // namespace quant
