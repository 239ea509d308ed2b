// Integer grids: registration, default and explicit scales, rounding, saturation.
#include "quant/formats/int_format.h"

#include <cmath>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::MakeFormat;

TEST(IntFormatTest, Registered) {
  for (const char* name : {"int", "int4", "uint4", "int8", "uint8", "int16"}) {
    EXPECT_TRUE(Registry<NumberFormat>::Get().Contains(name)) << name;
  }
}

TEST(IntFormatTest, Int8DefaultScale) {
  auto f = MakeFormat("int8");
  EXPECT_EQ(f->properties().largest, 127.0 / 32);
  EXPECT_EQ(f->Round(1.0f / 64), 0.0f);        // tie 0.5 -> 0
  EXPECT_EQ(f->Round(3.0f / 64), 2.0f / 32);   // tie 1.5 -> 2
  EXPECT_EQ(f->Round(100.0f), 127.0f / 32);
  EXPECT_EQ(f->Round(-100.0f), -127.0f / 32);  // symmetric
  EXPECT_EQ(f->Encode(-1.0f / 32), 0xffu);
  EXPECT_TRUE(std::isnan(f->Round(NAN)));
}

TEST(IntFormatTest, ExplicitScaleAndUnsigned) {
  auto f = MakeFormat("int", "{bits: 4, signed: false, scale: 0.1}");
  EXPECT_EQ(f->properties().name, "uint4");
  EXPECT_FLOAT_EQ(f->Round(0.25f), 0.2f);  // 2.5 -> 2 (even)
  EXPECT_EQ(f->Round(-3.0f), 0.0f);
  EXPECT_FLOAT_EQ(f->Round(9.0f), 1.5f);
  EXPECT_EQ(f->Encode(9.0f), 15u);
  auto tz = MakeFormat("int8", "{rounding: toward_zero, scale: 1}");
  EXPECT_EQ(tz->Round(-2.9f), -2.0f);
  auto sr = MakeFormat("int8", "{rounding: stochastic, scale: 1, seed: 1}");
  double sum = 0;
  for (int i = 0; i < 100000; ++i) sum += sr->Round(0.3f);
  EXPECT_NEAR(sum / 100000, 0.3, 0.01);
}

}  // namespace
}  // namespace quant
