// `format_cast`: forward equals the format's own rounding, the clipped STE,
// row-wise blocking for block formats, both YAML forms, and errors that name
// the key.
#include <cmath>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/formats/number_format.h"
#include "quant/quantizers/format_cast_quantizer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

TEST(FormatCast, IsRegistered) { EXPECT_TRUE(Registry<Quantizer>::Get().Contains("format_cast")); }

TEST(FormatCast, Bf16RoundsToNearestEvenWithIdentityGradient) {
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: bf16}");
  ASSERT_TRUE(q.ok()) << q.status();
  // 1 + 2^-8 is the tie between 1 and 1 + 2^-7: to even (1); 1 + 3*2^-8 -> 1 + 2^-6.
  Tensor x({4}, {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, -3.0f, 1e30f});
  Tensor y;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[1], 1.0f + 0x1p-6f);
  EXPECT_EQ(y[2], -3.0f);
  EXPECT_NE(y[3], x[3]);
  EXPECT_NEAR(y[3] / x[3], 1.0, 1.0 / 128);
  Tensor g({4}, {0.5f, -2.0f, 3.0f, 4.0f}), gx;
  ASSERT_TRUE((*q)->Backward(g, &gx).ok());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(gx[i], g[i]) << i;  // bf16 keeps 1e30 in range
  EXPECT_EQ((*q)->spec().bits, 16);
  EXPECT_THAT((*q)->Describe(), HasSubstr("format_cast bf16"));
}

TEST(FormatCast, ForwardEqualsTheFormatsRoundSpan) {
  for (const char* name : {"fp16", "fp8_e4m3", "fp8_e5m2", "posit8", "tf32"}) {
    auto q = BuildQuantizerFromYaml(std::string("{quantizer: format_cast, format: ") + name + "}");
    ASSERT_TRUE(q.ok()) << name << ": " << q.status();
    ParamReader none(YAML::Node(YAML::NodeType::Undefined), "<test>", "");
    auto f = Registry<NumberFormat>::Get().Create(name, none);
    ASSERT_TRUE(f.ok());
    Tensor x({3, 50});
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::ldexp(std::sin(0.37f * i), (i % 13) - 6);
    Tensor y;
    ASSERT_TRUE((*q)->Forward(x, &y).ok());
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_EQ(y[i], (*f)->Round(x[i])) << name << " element " << i << " x=" << x[i];
    }
  }
}

TEST(FormatCast, ClippedStraightThroughBeyondTheLargestValue) {
  // fp8_e4m3: largest 448. Under `overflow: format` 500 becomes NaN, under
  // `saturate` 448; the gradient is zero there either way, and for NaN/inf.
  for (const char* overflow : {"format", "saturate"}) {
    auto q = BuildQuantizerFromYaml(std::string("{quantizer: format_cast, format: {name: fp8_e4m3, "
                                                "overflow: ") + overflow + "}}");
    ASSERT_TRUE(q.ok()) << q.status();
    const float inf = std::numeric_limits<float>::infinity();
    Tensor x({6}, {448.0f, -448.0f, 500.0f, -1000.0f, std::nanf(""), inf});
    Tensor y;
    ASSERT_TRUE((*q)->Forward(x, &y).ok());
    EXPECT_EQ(y[0], 448.0f);
    if (std::string(overflow) == "saturate") {
      EXPECT_EQ(y[2], 448.0f);
      EXPECT_EQ(y[3], -448.0f);
    } else {
      EXPECT_TRUE(std::isnan(y[2]));
    }
    EXPECT_TRUE(std::isnan(y[4]));
    Tensor g = Tensor::Filled({6}, 1.5f), gx;
    ASSERT_TRUE((*q)->Backward(g, &gx).ok());
    const float expected[6] = {1.5f, 1.5f, 0, 0, 0, 0};
    for (int i = 0; i < 6; ++i) EXPECT_EQ(gx[i], expected[i]) << overflow << " " << i;
  }
}

TEST(FormatCast, Fp16OverflowToInfHasZeroGradient) {
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: fp16}");
  ASSERT_TRUE(q.ok());
  Tensor x({3}, {65504.0f, 70000.0f, 1e-9f}), y;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_EQ(y[0], 65504.0f);
  EXPECT_TRUE(std::isinf(y[1]));
  EXPECT_EQ(y[2], 0.0f);  // below half the smallest subnormal 2^-24: underflows
  Tensor g = Tensor::Filled({3}, 1.0f), gx;
  ASSERT_TRUE((*q)->Backward(g, &gx).ok());
  EXPECT_EQ(gx[0], 1.0f);
  EXPECT_EQ(gx[1], 0.0f);
  EXPECT_EQ(gx[2], 1.0f);  // underflow is not clipping: the STE passes it
}

TEST(FormatCast, BlockFormatsBlockAlongRows) {
  // Two rows of 32: a large value in row 0 must not change row 1's scale.
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: mxint8}");
  ASSERT_TRUE(q.ok()) << q.status();
  Tensor x({2, 32});
  for (int i = 0; i < 32; ++i) {
    x[i] = 0.01f * (i + 1);
    x[32 + i] = 0.01f * (i + 1);
  }
  x[0] = 1000.0f;
  Tensor y;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(y[32 + i], x[32 + i], 0.32f / 64) << i;
  EXPECT_EQ(y[1], 0.0f);  // row 0: 0.02 is below the step of a block scaled for 1000
  // Every finite value passes the gradient (the scale follows the data).
  Tensor g = Tensor::Filled({2, 32}, 1.0f), gx;
  ASSERT_TRUE((*q)->Backward(g, &gx).ok());
  for (int64_t i = 0; i < 64; ++i) EXPECT_EQ(gx[i], 1.0f);
  std::vector<int32_t> codes;
  EXPECT_EQ((*q)->QuantizeToInt(x, &codes).code(), absl::StatusCode::kUnimplemented);
}

TEST(FormatCast, QuantizeToIntGivesPatterns) {
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: fp16}");
  ASSERT_TRUE(q.ok());
  std::vector<int32_t> codes;
  ASSERT_TRUE((*q)->QuantizeToInt(Tensor({2}, {1.0f, -2.0f}), &codes).ok());
  EXPECT_EQ(codes[0], 0x3c00);
  EXPECT_EQ(codes[1], 0xc000);
}

TEST(FormatCast, FakeQuantDisabledIsIdentity) {
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: fp8_e5m2}");
  ASSERT_TRUE(q.ok());
  (*q)->set_fake_quant_enabled(false);
  Tensor x({2}, {0.1f, 0.3f}), y;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_EQ(y[0], 0.1f);
  EXPECT_EQ(y[1], 0.3f);
}

TEST(FormatCast, BadFormatNamesTheKey) {
  auto q = BuildQuantizerFromYaml("{quantizer: format_cast, format: bf17}", "w.yaml");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("w.yaml:1:"));
  EXPECT_THAT(q.status().message(), HasSubstr("format: unknown format 'bf17'"));
  EXPECT_THAT(q.status().message(), HasSubstr("did you mean 'bf16'"));

  q = BuildQuantizerFromYaml("{quantizer: format_cast, format: {name: fp8_e4m4}}", "w.yaml");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("format.name: unknown format 'fp8_e4m4'"));

  q = BuildQuantizerFromYaml("{quantizer: format_cast}", "w.yaml");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("format: required string is missing"));

  // The format's own keys are checked in the nested map and named with its path.
  q = BuildQuantizerFromYaml("{quantizer: format_cast, format: {name: bf16, rounding: up}}");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("format.rounding"));
  q = BuildQuantizerFromYaml("{quantizer: format_cast, format: {name: posit, n: 8, es: 6}}");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("format.es"));
  q = BuildQuantizerFromYaml("{quantizer: format_cast, format: {name: bf16, roundng: toward_zero}}");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("unknown key 'roundng'"));
  // A format key beside the quantizer's is not read: the nested map is the place.
  q = BuildQuantizerFromYaml("{quantizer: format_cast, format: bf16, rounding: stochastic}");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("unknown key 'rounding'"));
}

TEST(FormatCast, NestedOptionsReachTheFormat) {
  auto q = BuildQuantizerFromYaml(
      "{quantizer: format_cast, format: {name: bf16, rounding: toward_zero}}");
  ASSERT_TRUE(q.ok()) << q.status();
  Tensor x({1}, {1.0f + 3 * 0x1p-8f}), y;  // nearest would round up
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_EQ(y[0], 1.0f + 0x1p-7f);
  EXPECT_THAT((*q)->Describe(), HasSubstr("toward_zero"));
}

}  // namespace
}  // namespace quant
