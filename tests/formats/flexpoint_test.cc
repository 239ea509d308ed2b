// Flexpoint: exponent initialisation, Autoflex prediction, overflow detection
// and correction, Reset.
#include "quant/formats/flexpoint.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::MakeFormat;

Flexpoint* AsFlex(const std::unique_ptr<NumberFormat>& f) { return dynamic_cast<Flexpoint*>(f.get()); }

std::vector<float> Ramp(float max_abs, int n = 64) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = max_abs * (2.0f * i / (n - 1) - 1.0f);
  return v;
}

TEST(FlexpointTest, Registered) {
  EXPECT_TRUE(Registry<NumberFormat>::Get().Contains("flexpoint"));
  EXPECT_TRUE(Registry<NumberFormat>::Get().Contains("flexpoint16"));
  auto f = MakeFormat("flexpoint16");
  EXPECT_EQ(f->properties().name, "flex16+5");
  EXPECT_TRUE(f->properties().stateful);
}

TEST(FlexpointTest, FirstStepSetsTheExponentFromTheTensor) {
  auto f = MakeFormat("flexpoint16");
  std::vector<float> in = Ramp(1000.0f), out(in.size());
  f->RoundSpan(in, absl::MakeSpan(out));
  // 32767 * 2^-5 = 1023.97 >= 1000 > 32767 * 2^-6.
  EXPECT_EQ(AsFlex(f)->exponent(), -5);
  EXPECT_EQ(AsFlex(f)->overflows(), 0);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_LE(std::fabs(out[i] - in[i]), std::ldexp(1.0f, -6)) << i;
    EXPECT_EQ(out[i], std::ldexp(std::nearbyint(std::ldexp(in[i], 5)), -5));
  }
}

TEST(FlexpointTest, AutoflexPredictsAndCorrectsOverflow) {
  auto f = MakeFormat("flexpoint", "{mantissa_bits: 8, exponent_bits: 6, history: 4, margin: 3}");
  Flexpoint* flex = AsFlex(f);
  std::vector<float> out(64);
  for (int step = 0; step < 5; ++step) {
    std::vector<float> in = Ramp(1.0f);
    f->RoundSpan(in, absl::MakeSpan(out));
  }
  const int steady = flex->exponent();
  EXPECT_EQ(steady, -6);  // 127 * 2^-6 = 1.98 >= 1
  EXPECT_EQ(flex->overflows(), 0);
  // A 10x spike: detected, corrected with one bit of headroom, nothing saturates.
  std::vector<float> spike = Ramp(10.0f);
  f->RoundSpan(spike, absl::MakeSpan(out));
  EXPECT_EQ(flex->overflows(), 1);
  EXPECT_EQ(flex->exponent(), -2);  // fits 10 at -3 (127/8 = 15.9), +1 bit headroom
  EXPECT_EQ(out.back(), 10.0f);
  EXPECT_EQ(out.front(), -10.0f);
  // Slowly growing maxima are predicted with margin: no further overflow.
  for (int step = 0; step < 20; ++step) {
    std::vector<float> in = Ramp(10.0f * (1.0f + 0.05f * step));
    f->RoundSpan(in, absl::MakeSpan(out));
  }
  EXPECT_EQ(flex->overflows(), 1);
  f->Reset();
  EXPECT_EQ(flex->steps(), 0);
  EXPECT_EQ(flex->exponent(), 0);
}

TEST(FlexpointTest, ScalarCallsUseTheCurrentExponentWithoutChangingIt) {
  auto f = MakeFormat("flexpoint16", "{}");
  EXPECT_EQ(f->Round(3.4f), 3.0f);  // exponent 0 before any step: integers
  EXPECT_EQ(f->Round(1e9f), 32767.0f);
  EXPECT_EQ(f->Encode(-2.0f), 0xfffeu);
  EXPECT_EQ(f->Decode(0xfffeu), -2.0f);
  EXPECT_EQ(AsFlex(f)->steps(), 0);
}

}  // namespace
}  // namespace quant
