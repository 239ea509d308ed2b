// Fixed-point arithmetic of integer inference, with the names and contracts of
// gemmlowp's fixedpoint/fixedpoint.h and TFLite's kernels/internal/common.h, so a
// reader who knows those knows these. The reference backend and the
// QuantizedModel's precomputed multipliers are defined by these functions.
#ifndef QUANT_BACKENDS_FIXED_POINT_H_
#define QUANT_BACKENDS_FIXED_POINT_H_

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace quant::backends {

// Represents the real `double_multiplier` as quantized_multiplier * 2^(shift - 31)
// with quantized_multiplier in [2^30, 2^31) (a Q0.31 number in [0.5, 1)).
// shift > 0 means a left shift (multiplier >= 1). Exactly TFLite's
// QuantizeMultiplier: frexp, round half away from zero, renormalise when the
// rounding reaches 2^31, and flush to (0, 0) when shift < -31 (the multiplier is
// too small to represent). 0 gives (0, 0). Contract: double_multiplier >= 0 and
// finite (callers validate scales first); returns false otherwise.
inline bool QuantizeMultiplier(double double_multiplier, int32_t* quantized_multiplier,
                               int* shift) {
  if (!(double_multiplier >= 0.0) || !std::isfinite(double_multiplier)) {
    *quantized_multiplier = 0;
    *shift = 0;
    return false;
  }
  if (double_multiplier == 0.0) {
    *quantized_multiplier = 0;
    *shift = 0;
    return true;
  }
  const double q = std::frexp(double_multiplier, shift);
  int64_t q_fixed = static_cast<int64_t>(std::round(q * (1LL << 31)));
  if (q_fixed == (1LL << 31)) {
    q_fixed /= 2;
    ++*shift;
  }
  if (*shift < -31) {
    *shift = 0;
    q_fixed = 0;
  }
  if (q_fixed > std::numeric_limits<int32_t>::max()) return false;  // shift >= 2^31 range
  *quantized_multiplier = static_cast<int32_t>(q_fixed);
  return true;
}

// gemmlowp: the high 32 bits of 2*a*b, rounded to nearest (ties away from zero,
// via the +/-2^30 nudge), saturating the one overflowing case a == b == INT32_MIN
// to INT32_MAX. Equivalent to a Q0.31 fixed-point multiplication.
inline int32_t SaturatingRoundingDoublingHighMul(int32_t a, int32_t b) {
  const bool overflow = a == b && a == std::numeric_limits<int32_t>::min();
  const int64_t a_64(a);
  const int64_t b_64(b);
  const int64_t ab_64 = a_64 * b_64;
  const int32_t nudge = ab_64 >= 0 ? (1 << 30) : (1 - (1 << 30));
  const int32_t ab_x2_high32 = static_cast<int32_t>((ab_64 + nudge) / (1LL << 31));
  return overflow ? std::numeric_limits<int32_t>::max() : ab_x2_high32;
}

// gemmlowp: x / 2^exponent rounded to nearest, ties away from zero.
// Contract: 0 <= exponent <= 31.
inline int32_t RoundingDivideByPOT(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((1LL << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// TFLite: x * quantized_multiplier * 2^(shift - 31), rounded as gemmlowp's
// output stage OutputStageScaleInt32ByFixedPointAndExponent does: left shift by
// max(shift, 0) (wrapping like gemmlowp's ShiftLeft; callers keep |x| << 2^31 >> shift),
// SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT by max(-shift, 0).
inline int32_t MultiplyByQuantizedMultiplier(int32_t x, int32_t quantized_multiplier,
                                             int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  const int32_t shifted =
      static_cast<int32_t>(static_cast<uint32_t>(x) << left_shift);  // defined wrap
  return RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(shifted, quantized_multiplier),
                             right_shift);
}

#ifdef __AVX2__
// Eight lanes of MultiplyByQuantizedMultiplier, each with its own multiplier and shift,
// identical to the scalar function lane for lane (tests/backends/fixed_point_test.cc).
// For per-channel output stages, which gemmlowp 2021-12 cannot vectorise on x86.
// SaturatingRoundingDoublingHighMul's truncating division of ab + nudge by 2^31 equals
// floor((ab + 2^30) / 2^31) for both signs of ab (for ab < 0 the nudge is 1 - 2^30 and
// truncation is a ceiling: ceil(y / d) = floor((y + d - 1) / d)), and the low 32 bits of a
// 64-bit logical shift are those of the arithmetic one, so AVX2's 64-bit ops suffice.
inline __m256i MultiplyByQuantizedMultiplierX8(__m256i x, __m256i multiplier, __m256i shift) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i left_shift = _mm256_max_epi32(shift, zero);
  const __m256i right_shift = _mm256_max_epi32(_mm256_sub_epi32(zero, shift), zero);
  const __m256i a = _mm256_sllv_epi32(x, left_shift);  // wraps, like the scalar uint32 shift
  const __m256i nudge = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i even = _mm256_add_epi64(_mm256_mul_epi32(a, multiplier), nudge);
  const __m256i odd =
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(multiplier, 32)), nudge);
  __m256i high =
      _mm256_blend_epi32(_mm256_srli_epi64(even, 31), _mm256_slli_epi64(_mm256_srli_epi64(odd, 31), 32), 0xAA);
  const __m256i min = _mm256_set1_epi32(std::numeric_limits<int32_t>::min());
  const __m256i overflow = _mm256_and_si256(_mm256_cmpeq_epi32(a, min), _mm256_cmpeq_epi32(multiplier, min));
  high = _mm256_blendv_epi8(high, _mm256_set1_epi32(std::numeric_limits<int32_t>::max()), overflow);
  // RoundingDivideByPOT, per lane.
  const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right_shift), one);
  const __m256i remainder = _mm256_and_si256(high, mask);
  const __m256i threshold =
      _mm256_add_epi32(_mm256_srli_epi32(mask, 1), _mm256_and_si256(_mm256_cmpgt_epi32(zero, high), one));
  return _mm256_sub_epi32(_mm256_srav_epi32(high, right_shift), _mm256_cmpgt_epi32(remainder, threshold));
}
#endif

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_FIXED_POINT_H_
