// Posits: registration, properties, the standard's special rules, rounding modes.
#include "quant/formats/posit.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::MakeFormat;

TEST(PositTest, Registered) {
  for (const char* name : {"posit", "posit8", "posit16", "posit32", "posit8_0", "posit16_1"}) {
    EXPECT_TRUE(Registry<NumberFormat>::Get().Contains(name)) << name;
  }
}

TEST(PositTest, Properties) {
  auto p16 = MakeFormat("posit16");
  EXPECT_EQ(p16->properties().largest, std::ldexp(1.0, 56));
  EXPECT_EQ(p16->properties().smallest_normal, std::ldexp(1.0, -56));
  EXPECT_EQ(p16->properties().epsilon, std::ldexp(1.0, -11));  // 16 - 3 - 2 fraction bits at 1
  EXPECT_EQ(MakeFormat("posit32")->properties().largest, std::ldexp(1.0, 120));
  EXPECT_EQ(MakeFormat("posit8_0")->properties().epsilon, std::ldexp(1.0, -5));
  EXPECT_EQ(MakeFormat("posit", "{n: 12, es: 1}")->properties().name, "posit<12,1>");
}

TEST(PositTest, NeverZeroNeverNaR) {
  auto p = MakeFormat("posit8");
  EXPECT_EQ(p->Encode(1e-30f), 0x01u);
  EXPECT_EQ(p->Encode(-1e-30f), 0xffu);
  EXPECT_EQ(p->Encode(1e30f), 0x7fu);
  EXPECT_EQ(p->Encode(-1e30f), 0x81u);
  EXPECT_EQ(p->Encode(0.0f), 0x00u);
  EXPECT_EQ(p->Encode(-0.0f), 0x00u);
  EXPECT_EQ(p->Encode(INFINITY), 0x80u);  // NaR (the standard)
  EXPECT_EQ(p->Encode(NAN), 0x80u);
  EXPECT_EQ(MakeFormat("posit8", "{overflow: saturate}")->Encode(-INFINITY), 0x81u);
  EXPECT_TRUE(std::isnan(p->Decode(0x80)));
  EXPECT_EQ(p->Encode(1.0f), 0x40u);
  EXPECT_EQ(p->Encode(std::ldexp(1.0f, 22)), 0x7eu);  // README hand check: tie goes to even
}

TEST(PositTest, TowardZeroAndStochastic) {
  auto tz = MakeFormat("posit16", "{rounding: toward_zero}");
  auto sr = MakeFormat("posit16", "{rounding: stochastic, seed: 3}");
  for (float x : {1.0001f, -3.3333f, 123456.7f, 1e-9f, -7e12f}) {
    const float r = tz->Round(x);
    EXPECT_LE(std::fabs(r), std::fabs(x)) << x;
    EXPECT_GT(std::fabs(r), 0.0f);
  }
  // 1 + 2^-13: a quarter of the way between 1 and 1 + 2^-11.
  const float x = 1.0f + std::ldexp(1.0f, -13);
  int ups = 0;
  for (int i = 0; i < 100000; ++i) ups += sr->Round(x) != 1.0f;
  EXPECT_NEAR(ups / 100000.0, 0.25, 0.01);
}

TEST(PositTest, Posit32DecodeIsExactInDouble) {
  auto p = MakeFormat("posit32");
  EXPECT_EQ(p->DecodeExact(0x40000001u), 1.0 + std::ldexp(1.0, -27));
  EXPECT_EQ(p->Decode(0x40000001u), 1.0f);  // rounded to float32
}

}  // namespace
}  // namespace quant
