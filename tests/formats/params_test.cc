// Bad parameters are errors naming the YAML key; every registered format can be
// described (run --list) and created with its defaults.
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using ::testing::HasSubstr;
using testing_util::TryMakeFormat;

void ExpectError(const std::string& name, const std::string& yaml, const std::string& key) {
  auto f = TryMakeFormat(name, yaml);
  ASSERT_FALSE(f.ok()) << name << " " << yaml;
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("quant.weights." + key)) << f.status();
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("test.yaml:1:")) << f.status();
}

TEST(FormatParamsTest, PositEsTooLargeForN) {
  ExpectError("posit", "{n: 5, es: 3}", "es");
  ExpectError("posit", "{n: 8, es: 6}", "es");
  ExpectError("posit", "{n: 40}", "n");
  EXPECT_TRUE(TryMakeFormat("posit", "{n: 5, es: 2}").ok());
}

TEST(FormatParamsTest, MinifloatZeroExponentBitsWithoutSubnormals) {
  ExpectError("minifloat", "{exponent_bits: 0, mantissa_bits: 4, subnormals: false, inf: false, nan: false}",
              "subnormals");
  ExpectError("minifloat", "{exponent_bits: 9}", "exponent_bits");
  ExpectError("minifloat", "{exponent_bits: 8, mantissa_bits: 3, bias: 0}", "bias");
  ExpectError("minifloat", "{exponent_bits: 1, mantissa_bits: 3}", "inf");
}

TEST(FormatParamsTest, UnknownRoundingMode) {
  for (const char* name : {"fp16", "posit", "mxfp4_e2m1", "int8", "flexpoint16", "minifloat"}) {
    auto f = TryMakeFormat(name, "{rounding: nearest_away}");
    ASSERT_FALSE(f.ok()) << name;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("quant.weights.rounding")) << name;
    EXPECT_THAT(std::string(f.status().message()), HasSubstr("nearest_even")) << name;
  }
  ExpectError("fp16", "{overflow: wrap}", "overflow");
}

TEST(FormatParamsTest, BlockSizeZero) {
  ExpectError("block_fp", "{block_size: 0}", "block_size");
  ExpectError("mxfp8_e4m3", "{block_size: 0}", "block_size");
  ExpectError("block_fp", "{mantissa_bits: 1}", "mantissa_bits");
}

TEST(FormatParamsTest, UnknownKeyIsReported) {
  auto f = TryMakeFormat("fp16", "{roundng: toward_zero}");
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("did you mean 'rounding'"));
  // Block and integer formats have a fixed overflow rule: `overflow` is not theirs.
  EXPECT_FALSE(TryMakeFormat("mxint8", "{overflow: format}").ok());
}

TEST(FormatParamsTest, EveryFormatDescribesAndBuildsWithDefaults) {
  const auto described = Registry<NumberFormat>::Get().Describe();
  EXPECT_EQ(described.size(), 28u);  // every format of quant/formats
  for (const auto& d : described) {
    auto f = TryMakeFormat(d.name);
    ASSERT_TRUE(f.ok()) << d.name << ": " << f.status();
    bool has_rounding = false;
    for (const auto& p : d.params) has_rounding |= p.key == "rounding";
    EXPECT_TRUE(has_rounding) << d.name;
    const FormatProperties& p = (*f)->properties();
    EXPECT_GT(p.largest, 0) << d.name;
    EXPECT_GT(p.smallest_subnormal, 0) << d.name;
    EXPECT_LE(p.smallest_subnormal, p.smallest_normal) << d.name;
    EXPECT_GT(p.bits, 0) << d.name;
  }
}

}  // namespace
}  // namespace quant
