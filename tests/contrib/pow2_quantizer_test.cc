// The contrib pow2 quantizer, built from YAML through the quantizer registry
// exactly as the driver would build it.
#include "contrib/pow2_quantizer/pow2_quantizer.h"

#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/quantizers/quantizer.h"

namespace contrib {
namespace {

using ::testing::HasSubstr;

bool IsPowerOfTwo(float s) {
  int e;
  return std::frexp(s, &e) == 0.5f;
}

quant::Tensor Data() {
  quant::Tensor t({4, 32});
  std::mt19937 rng(3);
  std::normal_distribution<float> n(0.3f, 1.7f);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = n(rng) * (1 + i / 32);
  return t;
}

TEST(Pow2Quantizer, RegisteredNextToAffine) {
  EXPECT_TRUE(quant::Registry<quant::Quantizer>::Get().Contains("pow2"));
  EXPECT_TRUE(quant::Registry<quant::Quantizer>::Get().Contains("affine"));
}

TEST(Pow2Quantizer, BuiltFromYamlThroughTheRegistry) {
  for (const char* yaml :
       {"{quantizer: pow2, bits: 8, symmetric: true, granularity: per_channel, axis: 0}",
        "{quantizer: pow2, bits: 4, rounding: nearest}",
        "{quantizer: pow2, bits: 8, observer: histogram, calibration: mse}"}) {
    auto q = quant::BuildQuantizerFromYaml(yaml, "p.yaml");
    ASSERT_TRUE(q.ok()) << yaml << q.status();
    EXPECT_THAT((*q)->Describe(), HasSubstr("pow2 "));
    const quant::Tensor x = Data();
    ASSERT_TRUE((*q)->Observe(x).ok());
    ASSERT_TRUE((*q)->ComputeQParams().ok());
    const quant::QParams& qp = (*q)->qparams();
    for (int64_t g = 0; g < qp.size(); ++g) {
      EXPECT_TRUE(IsPowerOfTwo(qp.scale[g])) << yaml << " " << qp.scale[g];
      // Zero stays exactly representable.
      EXPECT_GE(qp.zero_point[g], qp.quant_min);
      EXPECT_LE(qp.zero_point[g], qp.quant_max);
    }
    quant::Tensor y;
    ASSERT_TRUE((*q)->Forward(x, &y).ok());
  }
}

TEST(Pow2Quantizer, CeilNeverShrinksTheRange) {
  auto pow2 = quant::BuildQuantizerFromYaml("{quantizer: pow2, symmetric: true}");
  auto affine = quant::BuildQuantizerFromYaml("{quantizer: affine, symmetric: true}");
  ASSERT_TRUE(pow2.ok() && affine.ok());
  const quant::Tensor x = Data();
  for (auto* q : {&*pow2, &*affine}) {
    ASSERT_TRUE((*q)->Observe(x).ok());
    ASSERT_TRUE((*q)->ComputeQParams().ok());
  }
  const float a = (*affine)->qparams().scale[0], p = (*pow2)->qparams().scale[0];
  EXPECT_GE(p, a);
  EXPECT_LT(p, 2 * a);
  EXPECT_EQ(Pow2Quantizer::PowerOfTwoScale(0.3f, Pow2Quantizer::Rounding::kFloor), 0.25f);
  EXPECT_EQ(Pow2Quantizer::PowerOfTwoScale(0.3f, Pow2Quantizer::Rounding::kNearest), 0.25f);
  EXPECT_EQ(Pow2Quantizer::PowerOfTwoScale(0.3f, Pow2Quantizer::Rounding::kCeil), 0.5f);
}

TEST(Pow2Quantizer, BadRoundingNamesTheKey) {
  auto q = quant::BuildQuantizerFromYaml("{quantizer: pow2, rounding: up}", "p.yaml");
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(std::string(q.status().message()),
              HasSubstr("p.yaml:1:29: rounding: expected one of ceil, nearest, floor, got 'up'"));
}

}  // namespace
}  // namespace contrib
