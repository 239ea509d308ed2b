// fixed_point.h against an independent long-double reference (QuantizeMultiplier)
// and against gemmlowp's own fixedpoint.h (the primitives).
#include "quant/backends/fixed_point.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include <gemmlowp/fixedpoint/fixedpoint.h>

#include "gtest/gtest.h"

namespace quant::backends {
namespace {

// Independent reference: the int32 M in [2^30, 2^31) and shift that minimise
// |M * 2^(shift-31) - m|, ties away from zero, computed by exact scaling in long
// double (64-bit mantissa: products of a double by powers of two are exact).
void ReferenceMultiplier(double m, int64_t* mult, int* shift) {
  long double v = m;
  int e = 0;
  while (v >= 1.0L) { v /= 2; ++e; }
  while (v < 0.5L) { v *= 2; --e; }
  long double scaled = v * 2147483648.0L;  // exact
  long double fl = std::floor(scaled);
  int64_t q = static_cast<int64_t>(fl) + ((scaled - fl) >= 0.5L ? 1 : 0);
  if (q == (int64_t{1} << 31)) { q /= 2; ++e; }
  *mult = q;
  *shift = e;
}

TEST(QuantizeMultiplierTest, MatchesReferenceAcrossTwoToMinus30ToTwoTo10) {
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> mant(0.5, 1.0);
  int checked = 0;
  for (int e = -30; e <= 10; ++e) {
    std::vector<double> values = {std::ldexp(1.0, e), std::ldexp(0.75, e),
                                  std::ldexp(1.0 - 1e-12, e),  // rounds up to the next power of two
                                  std::ldexp(0.5 + 0.25 / 2147483648.0, e),  // exact tie
                                  std::nextafter(std::ldexp(1.0, e), 0.0)};
    for (int i = 0; i < 2000; ++i) values.push_back(std::ldexp(mant(rng), e));
    for (double m : values) {
      int32_t q;
      int shift;
      ASSERT_TRUE(QuantizeMultiplier(m, &q, &shift)) << m;
      int64_t rq;
      int rshift;
      ReferenceMultiplier(m, &rq, &rshift);
      ASSERT_EQ(q, rq) << "m=" << m;
      ASSERT_EQ(shift, rshift) << "m=" << m;
      ASSERT_GE(q, int64_t{1} << 30);
      // The encoded value is within half a unit of the last place of the real one.
      const long double encoded = std::ldexp(static_cast<long double>(q), shift - 31);
      ASSERT_LE(std::fabs(encoded - m), std::ldexp(1.0L, shift - 32)) << m;
      ++checked;
    }
  }
  EXPECT_EQ(checked, 41 * 2005);
}

TEST(QuantizeMultiplierTest, EdgeCases) {
  int32_t q;
  int shift;
  EXPECT_TRUE(QuantizeMultiplier(0.0, &q, &shift));
  EXPECT_EQ(q, 0);
  EXPECT_EQ(shift, 0);
  EXPECT_TRUE(QuantizeMultiplier(std::ldexp(1.0, -40), &q, &shift));  // too small: flushed
  EXPECT_EQ(q, 0);
  EXPECT_EQ(shift, 0);
  EXPECT_FALSE(QuantizeMultiplier(-1.0, &q, &shift));
  EXPECT_FALSE(QuantizeMultiplier(std::nan(""), &q, &shift));
  EXPECT_FALSE(QuantizeMultiplier(std::numeric_limits<double>::infinity(), &q, &shift));
  EXPECT_TRUE(QuantizeMultiplier(1.0, &q, &shift));
  EXPECT_EQ(q, 1 << 30);
  EXPECT_EQ(shift, 1);
}

std::vector<int32_t> InterestingInt32s(int random_count) {
  std::vector<int32_t> v = {0, 1, -1, 2, -2, 3, -3, 127, -128, 255, 1 << 30, -(1 << 30),
                            std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(),
                            std::numeric_limits<int32_t>::max() - 1, std::numeric_limits<int32_t>::min() + 1};
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> any(std::numeric_limits<int32_t>::min(),
                                             std::numeric_limits<int32_t>::max());
  std::uniform_int_distribution<int32_t> small(-70000, 70000);
  for (int i = 0; i < random_count; ++i) v.push_back(i % 2 ? any(rng) : small(rng));
  return v;
}

TEST(FixedPointTest, SaturatingRoundingDoublingHighMulMatchesGemmlowp) {
  const std::vector<int32_t> a = InterestingInt32s(600);
  const std::vector<int32_t> b = InterestingInt32s(300);
  int64_t n = 0;
  for (int32_t x : a) {
    for (int32_t y : b) {
      ASSERT_EQ(SaturatingRoundingDoublingHighMul(x, y), gemmlowp::SaturatingRoundingDoublingHighMul(x, y))
          << x << " " << y;
      ++n;
    }
  }
  EXPECT_GT(n, 100000);
}

TEST(FixedPointTest, RoundingDivideByPOTMatchesGemmlowp) {
  for (int32_t x : InterestingInt32s(20000)) {
    for (int e = 0; e <= 31; ++e) {
      ASSERT_EQ(RoundingDivideByPOT(x, e), gemmlowp::RoundingDivideByPOT(x, e)) << x << " " << e;
    }
  }
  EXPECT_EQ(RoundingDivideByPOT(5, 1), 3);    // 2.5 -> 3 (ties away from zero)
  EXPECT_EQ(RoundingDivideByPOT(-5, 1), -3);  // -2.5 -> -3
}

TEST(FixedPointTest, MultiplyByQuantizedMultiplierIsGemmlowpsOutputStageAndClose) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> acc(-(1 << 20), 1 << 20);
  std::uniform_real_distribution<double> mant(0.5, 1.0);
  for (int e = -20; e <= 4; ++e) {
    const double m = std::ldexp(mant(rng), e);
    int32_t q;
    int shift;
    ASSERT_TRUE(QuantizeMultiplier(m, &q, &shift));
    for (int i = 0; i < 2000; ++i) {
      const int32_t x = acc(rng) >> std::max(0, shift);  // keep the left shift from overflowing
      const int32_t got = MultiplyByQuantizedMultiplier(x, q, shift);
      // gemmlowp's OutputStageScaleInt32ByFixedPointAndExponent formula, with its primitives.
      const int32_t want = gemmlowp::RoundingDivideByPOT(
          gemmlowp::SaturatingRoundingDoublingHighMul(gemmlowp::ShiftLeft(x, std::max(shift, 0)), q),
          std::max(-shift, 0));
      ASSERT_EQ(got, want);
      ASSERT_LE(std::fabs(got - x * m), 1.0) << x << " * " << m;
    }
  }
}

// The AVX2 eight-lane version equals the scalar one lane for lane: random accumulators
// over the whole int32 range and near it, every shift from -31 to +4 (mixed within a
// vector), multipliers from QuantizeMultiplier and the extremes (INT32_MIN for the
// saturating case, INT32_MAX), ties of the rounding division, and 0 / -1 / INT32_MIN inputs.
TEST(FixedPointTest, EightLaneMultiplyByQuantizedMultiplierEqualsScalar) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> any(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max());
  std::uniform_int_distribution<int> shifts(-31, 4);
  std::uniform_int_distribution<int> pick(0, 9);
  const int32_t kMin = std::numeric_limits<int32_t>::min(), kMax = std::numeric_limits<int32_t>::max();
  int64_t checked = 0, saturated = 0, ties = 0;
  for (int iter = 0; iter < 200000; ++iter) {
    alignas(32) int32_t x[8], m[8], sh[8], out[8];
    for (int l = 0; l < 8; ++l) {
      sh[l] = shifts(rng);
      int32_t q = 0;
      int s = 0;
      const int kind = pick(rng);
      if (kind == 0) {
        q = kMin, s = sh[l];
      } else if (kind == 1) {
        q = kMax, s = sh[l];
      } else {
        ASSERT_TRUE(QuantizeMultiplier(std::ldexp(0.5 + (any(rng) & 0xffff) / 131072.0, sh[l]), &q, &s));
      }
      m[l] = q;
      sh[l] = s;
      const int which = pick(rng);
      if (which == 0) {
        x[l] = kMin;
      } else if (which == 1) {
        x[l] = (any(rng) % 3) - 1;  // -1, 0, 1
      } else {
        x[l] = any(rng) >> (s > 0 ? s : 0);
      }
    }
    const __m256i r = MultiplyByQuantizedMultiplierX8(_mm256_load_si256(reinterpret_cast<const __m256i*>(x)),
                                                      _mm256_load_si256(reinterpret_cast<const __m256i*>(m)),
                                                      _mm256_load_si256(reinterpret_cast<const __m256i*>(sh)));
    _mm256_store_si256(reinterpret_cast<__m256i*>(out), r);
    for (int l = 0; l < 8; ++l) {
      const int32_t want = MultiplyByQuantizedMultiplier(x[l], m[l], sh[l]);
      ASSERT_EQ(out[l], want) << "x " << x[l] << " multiplier " << m[l] << " shift " << sh[l] << " lane " << l;
      ++checked;
      const int32_t shifted = static_cast<int32_t>(static_cast<uint32_t>(x[l]) << std::max(sh[l], 0));
      saturated += shifted == kMin && m[l] == kMin;
      const int64_t unit = int64_t{1} << std::max(-sh[l], 0);  // 2^right_shift
      ties += sh[l] < 0 && (SaturatingRoundingDoublingHighMul(shifted, m[l]) & (unit - 1)) == unit / 2;
    }
  }
  EXPECT_EQ(checked, 1600000);
  EXPECT_GT(saturated, 100);  // the saturating case was reached
  EXPECT_GT(ties, 100);       // and exact ties of the rounding division
}

}  // namespace
}  // namespace quant::backends
