// fp16, bf16, tf32, fp32, OCP fp8 and the generic minifloat: registration,
// properties, rounding modes, overflow rules, the generic parameters.
#include "quant/formats/minifloat.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::MakeFormat;
using testing_util::TryMakeFormat;

TEST(MinifloatTest, Registered) {
  for (const char* name : {"minifloat", "fp16", "bf16", "tf32", "fp32", "fp8_e4m3", "fp8_e5m2"}) {
    EXPECT_TRUE(Registry<NumberFormat>::Get().Contains(name)) << name;
  }
}

TEST(MinifloatTest, Properties) {
  auto fp16 = MakeFormat("fp16");
  EXPECT_EQ(fp16->properties().bits, 16);
  EXPECT_EQ(fp16->properties().largest, 65504.0);
  EXPECT_EQ(fp16->properties().smallest_normal, std::ldexp(1.0, -14));
  EXPECT_EQ(fp16->properties().smallest_subnormal, std::ldexp(1.0, -24));
  EXPECT_EQ(fp16->properties().epsilon, std::ldexp(1.0, -10));
  EXPECT_TRUE(fp16->properties().has_inf);
  auto bf16 = MakeFormat("bf16");
  EXPECT_EQ(bf16->properties().largest, static_cast<double>(3.38953139e38f));
  EXPECT_EQ(bf16->properties().epsilon, std::ldexp(1.0, -7));
  auto tf32 = MakeFormat("tf32");
  EXPECT_EQ(tf32->properties().bits, 19);
  EXPECT_EQ(tf32->properties().largest, std::ldexp(2.0 - std::ldexp(1.0, -10), 127));
  auto e4m3 = MakeFormat("fp8_e4m3");
  EXPECT_EQ(e4m3->properties().largest, 448.0);
  EXPECT_EQ(e4m3->properties().smallest_normal, std::ldexp(1.0, -6));
  EXPECT_EQ(e4m3->properties().smallest_subnormal, std::ldexp(1.0, -9));
  EXPECT_FALSE(e4m3->properties().has_inf);
  EXPECT_TRUE(e4m3->properties().has_nan);
  EXPECT_EQ(MakeFormat("fp8_e5m2")->properties().largest, 57344.0);
  EXPECT_EQ(MakeFormat("fp32")->properties().largest, static_cast<double>(FLT_MAX));
}

TEST(MinifloatTest, Tf32RoundsTheLow13BitsToNearestEven) {
  auto tf32 = MakeFormat("tf32");
  EXPECT_EQ(tf32->Encode(1.0f), 0x3f800000u >> 13);
  EXPECT_EQ(tf32->Round(1.0f + std::ldexp(1.0f, -11)), 1.0f);  // tie -> even
  EXPECT_EQ(tf32->Round(1.0f + 3 * std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
  EXPECT_EQ(tf32->Round(FLT_MAX), INFINITY);  // rounds up past the largest
  EXPECT_EQ(tf32->Decode(tf32->Encode(-2.5f)), -2.5f);
}

TEST(MinifloatTest, TowardZeroTruncatesAndNeverOverflowsToInf) {
  auto f = MakeFormat("fp16", "{rounding: toward_zero}");
  EXPECT_EQ(f->Round(1.0f + 0.9f * std::ldexp(1.0f, -10)), 1.0f);
  EXPECT_EQ(f->Round(-(1.0f + 0.9f * std::ldexp(1.0f, -10))), -1.0f);
  EXPECT_EQ(f->Round(1e6f), 65504.0f);
  EXPECT_EQ(f->Round(INFINITY), INFINITY);  // an infinite input stays infinite
  auto rne = MakeFormat("fp16");
  EXPECT_EQ(rne->Round(1.0f + 0.9f * std::ldexp(1.0f, -10)), 1.0f + std::ldexp(1.0f, -10));
}

TEST(MinifloatTest, OverflowSaturateOrFormatRule) {
  auto fmt = MakeFormat("fp16");
  auto sat = MakeFormat("fp16", "{overflow: saturate}");
  EXPECT_EQ(fmt->Round(65520.0f), INFINITY);  // the tie above 65504 rounds to even = overflow
  EXPECT_EQ(fmt->Round(65519.0f), 65504.0f);
  EXPECT_EQ(sat->Round(65520.0f), 65504.0f);
  EXPECT_EQ(sat->Round(-INFINITY), -65504.0f);
  auto e4m3 = MakeFormat("fp8_e4m3");
  EXPECT_EQ(e4m3->Encode(500.0f), 0x7fu);  // no inf: NaN
  EXPECT_TRUE(std::isnan(e4m3->Round(500.0f)));
  EXPECT_EQ(MakeFormat("fp8_e4m3", "{overflow: saturate}")->Encode(-500.0f), 0xfeu);
}

TEST(MinifloatTest, StochasticRoundingIsUnbiasedAndSeeded) {
  auto f = MakeFormat("fp16", "{rounding: stochastic, seed: 7}");
  const float x = 1.0f + std::ldexp(1.0f, -12);  // a quarter of the way to the next value
  const float up = 1.0f + std::ldexp(1.0f, -10);
  int ups = 0;
  const int n = 200000;
  std::vector<float> first;
  for (int i = 0; i < n; ++i) {
    const float r = f->Round(x);
    ASSERT_TRUE(r == 1.0f || r == up) << r;
    ups += r == up;
    if (i < 64) first.push_back(r);
  }
  EXPECT_NEAR(static_cast<double>(ups) / n, 0.25, 0.005);
  // The same seed gives the same sequence; another seed another one.
  f->Reset();
  std::vector<float> again, other;
  for (int i = 0; i < 64; ++i) again.push_back(f->Round(x));
  EXPECT_EQ(first, again);
  auto g = MakeFormat("fp16", "{rounding: stochastic, seed: 8}");
  for (int i = 0; i < 64; ++i) other.push_back(g->Round(x));
  EXPECT_NE(first, other);
  // Exact values never move.
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(f->Round(1.5f), 1.5f);
}

TEST(MinifloatTest, GenericParameters) {
  // IEEE-like e4m3 with inf (max 240) vs OCP (448).
  auto ieee = MakeFormat("minifloat", "{exponent_bits: 4, mantissa_bits: 3}");
  EXPECT_EQ(ieee->properties().largest, 240.0);
  EXPECT_EQ(ieee->Round(1000.0f), INFINITY);
  auto ocp = MakeFormat("minifloat", "{exponent_bits: 4, mantissa_bits: 3, inf: false}");
  EXPECT_EQ(ocp->properties().largest, 448.0);
  auto none = MakeFormat("minifloat", "{exponent_bits: 2, mantissa_bits: 1, inf: false, nan: false}");
  EXPECT_EQ(none->properties().largest, 6.0);  // = OCP E2M1
  EXPECT_EQ(none->Round(100.0f), 6.0f);         // no inf, no NaN: saturates
  EXPECT_TRUE(std::isnan(none->Round(NAN)));    // Round keeps NaN
  EXPECT_EQ(none->Encode(NAN), 0u);             // documented: NaN encodes to +0
  // Without subnormals: only 0 and 2^-6 near zero (tie goes to 0).
  auto flush = MakeFormat("minifloat", "{exponent_bits: 4, mantissa_bits: 3, subnormals: false}");
  const float mn = std::ldexp(1.0f, -6);
  EXPECT_EQ(flush->properties().smallest_subnormal, mn);
  EXPECT_EQ(flush->Round(0.75f * mn), mn);
  EXPECT_EQ(flush->Round(0.5f * mn), 0.0f);
  EXPECT_EQ(flush->Round(-0.25f * mn), 0.0f);
  EXPECT_TRUE(std::signbit(flush->Round(-0.25f * mn)));
  // A custom bias shifts the range.
  auto biased = MakeFormat("minifloat", "{exponent_bits: 5, mantissa_bits: 2, bias: 20}");
  EXPECT_EQ(biased->properties().largest, std::ldexp(1.75, 30 - 20));
  // Zero exponent bits: a fixed-point grid of subnormals.
  auto fixed = MakeFormat("minifloat", "{exponent_bits: 0, mantissa_bits: 3, bias: 0, inf: false, nan: false}");
  EXPECT_EQ(fixed->properties().largest, 7.0 / 8.0 * 2);
  EXPECT_EQ(fixed->Round(0.3f), 0.25f);
}

TEST(MinifloatTest, Fp32IsTheIdentity) {
  auto f = MakeFormat("fp32");
  const float nan_payload = BitsFloat(0x7fa12345u);
  EXPECT_EQ(f->Encode(nan_payload), 0x7fa12345u);
  EXPECT_EQ(FloatBits(f->Round(nan_payload)), 0x7fa12345u);
  EXPECT_EQ(f->Round(1.2345678f), 1.2345678f);
  std::vector<float> v = {1e-45f, -3.0f, 1e38f}, out(3);
  f->RoundSpan(v, absl::MakeSpan(out));
  EXPECT_EQ(v, out);
}

TEST(MinifloatTest, RoundSpanWorksInPlace) {
  auto f = MakeFormat("bf16");
  std::vector<float> v = {1.00390625f, 3.14159265f, -1e-3f};
  std::vector<float> want = {f->Round(v[0]), f->Round(v[1]), f->Round(v[2])};
  f->RoundSpan(v, absl::MakeSpan(v));
  EXPECT_EQ(v, want);
  EXPECT_EQ(v[0], 1.0f);  // tie at 1 + 2^-8 -> even
}

// The span paths of fp16 (F16C) and bf16/tf32 (integer rounding) are fast
// paths; they must equal the generic scalar conversion in every mode.
TEST(MinifloatTest, FastSpanPathsEqualTheScalarPath) {
  std::vector<float> in;
  for (uint32_t b : {0x0u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u,
                     0x7f800001u, 0x477fe000u, 0x477fefffu, 0x477ff000u, 0x7f7fffffu, 0xff7f8000u,
                     0x00000001u, 0x33000000u, 0x33000001u, 0x387fe000u, 0x387ff000u}) {
    in.push_back(BitsFloat(b));
  }
  uint64_t state = 12345;
  for (int i = 0; i < 300000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    in.push_back(BitsFloat(static_cast<uint32_t>(state >> 32)));
  }
  const std::vector<std::pair<std::string, std::string>> formats = {
      {"fp16", ""}, {"bf16", ""}, {"tf32", ""}, {"fp8_e4m3", ""}, {"fp8_e5m2", ""},
      {"minifloat", "exponent_bits: 2, mantissa_bits: 1, inf: false, nan: false, "},
      {"minifloat", "exponent_bits: 3, mantissa_bits: 2, inf: false, nan: false, "},
      {"minifloat", "exponent_bits: 5, mantissa_bits: 2, bias: 20, "},
      {"minifloat", "exponent_bits: 8, mantissa_bits: 3, bias: 140, "},
      {"minifloat", "exponent_bits: 0, mantissa_bits: 5, bias: 3, inf: false, nan: false, "},
      {"minifloat", "exponent_bits: 4, mantissa_bits: 3, subnormals: false, "}};
  for (const auto& [name_string, extra] : formats) {
    const char* name = name_string.c_str();
    for (const char* mode : {"nearest_even", "toward_zero"}) {
      for (const char* overflow : {"saturate", "format"}) {
        auto f = MakeFormat(name, "{" + extra + "rounding: " + mode + ", overflow: " + overflow + "}");
        std::vector<uint32_t> codes(in.size());
        std::vector<float> rounded(in.size());
        f->EncodeSpan(in, absl::MakeSpan(codes));
        f->RoundSpan(in, absl::MakeSpan(rounded));
        int bad = 0;
        for (size_t i = 0; i < in.size() && bad < 5; ++i) {
          const uint32_t want = f->Encode(in[i]);
          const float want_r = f->Round(in[i]);
          const bool same_r = FloatBits(want_r) == FloatBits(rounded[i]);
          if (codes[i] != want || !same_r) {
            ++bad;
            ADD_FAILURE() << name << " " << extra << mode << " " << overflow << " x=" << std::hex
                          << FloatBits(in[i]) << " span " << codes[i] << " scalar " << want;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace quant
