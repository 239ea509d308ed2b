#include "quant/quantizers/quant_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

struct Loaded {
  YAML::Node doc;
  std::unique_ptr<ParamReader> root;
};

absl::StatusOr<std::unique_ptr<QuantConfig>> Read(const std::string& yaml, Loaded* keep) {
  keep->doc = YAML::Load(yaml);
  keep->root = std::make_unique<ParamReader>(keep->doc, "q.yaml", "");
  auto config = QuantConfig::Read(keep->root->Map("quant", ""));
  if (!config.ok()) return config.status();
  if (absl::Status s = keep->root->Finish(); !s.ok()) return s;
  return config;
}

int Bits(const YAML::Node& spec) { return spec["bits"].as<int>(); }

const char kFirstLastAt8[] =
    "quant:\n"
    "  weights: {quantizer: affine, bits: 4, symmetric: true, granularity: per_channel}\n"
    "  activations: {quantizer: affine, bits: 4}\n"
    "  overrides:\n"
    "    - match: \"conv1|fc2\"\n"
    "      weights: {bits: 8}\n"
    "      activations: {bits: 8}\n"
    "    - match: \"fc2\"\n"
    "      activations: none\n"
    "    - match: \"fc.*\"\n"
    "      weights: {bits: 6}\n";

TEST(QuantConfigTest, OverridesApplyInOrderToWholeNames) {
  Loaded keep;
  auto config = Read(kFirstLastAt8, &keep);
  ASSERT_TRUE(config.ok()) << config.status();
  const auto conv1 = (*config)->For("conv1");
  EXPECT_EQ(Bits(conv1.weights), 8);
  EXPECT_EQ(Bits(conv1.activations), 8);
  EXPECT_EQ(conv1.weights["granularity"].Scalar(), "per_channel");  // inherited
  EXPECT_EQ(conv1.overrides_applied, (std::vector<int>{0}));
  const auto conv2 = (*config)->For("conv2");
  EXPECT_EQ(Bits(conv2.weights), 4);
  EXPECT_TRUE(conv2.overrides_applied.empty());
  const auto fc2 = (*config)->For("fc2");
  EXPECT_EQ(Bits(fc2.weights), 6);  // the later override wins
  EXPECT_FALSE(fc2.activations.IsDefined());
  EXPECT_EQ(fc2.overrides_applied, (std::vector<int>{0, 1, 2}));
  // "conv1|fc2" must match the whole name: conv10 is not conv1.
  EXPECT_EQ(Bits((*config)->For("conv10").weights), 4);
}

TEST(QuantConfigTest, BuildsQuantizersPerLayer) {
  Loaded keep;
  auto config = Read(kFirstLastAt8, &keep);
  ASSERT_TRUE(config.ok()) << config.status();
  auto w = (*config)->WeightQuantizer("conv1");
  ASSERT_TRUE(w.ok() && *w != nullptr);
  EXPECT_EQ((*w)->spec().bits, 8);
  auto a = (*config)->ActivationQuantizer("fc2");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, nullptr);  // activations: none
  auto d = (*config)->Describe("fc2");
  ASSERT_TRUE(d.ok());
  EXPECT_THAT(*d, HasSubstr("activations float"));
  EXPECT_TRUE((*config)->quantizes_weights());
}

TEST(QuantConfigTest, UnmatchedOverrideWarnsWithLayerNames) {
  Loaded keep;
  auto config = Read(kFirstLastAt8, &keep);
  ASSERT_TRUE(config.ok());
  const auto warnings = (*config)->UnmatchedOverrides({"conv1", "conv2", "fc1"});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_THAT(warnings[0], HasSubstr("q.yaml:8:7: quant.overrides[1]: match 'fc2' matches no layer"));
  EXPECT_THAT(warnings[0], HasSubstr("the layers are: conv1, conv2, fc1"));
}

TEST(QuantConfigTest, TypoInOverrideIsLocatedThere) {
  Loaded keep;
  auto config = Read(
      "quant:\n"
      "  weights: {bits: 4}\n"
      "  overrides:\n"
      "    - match: conv1\n"
      "      weights: {bitz: 8}\n",
      &keep);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("q.yaml:5:17: quant.overrides[0].weights.bitz: unknown key 'bitz' (did you "
                        "mean 'bits'?)"));
}

TEST(QuantConfigTest, BadValueInOverrideIsLocatedThere) {
  Loaded keep;
  auto config = Read(
      "quant:\n"
      "  weights: {bits: 4}\n"
      "  overrides:\n"
      "    - match: conv1\n"
      "      weights: {bits: 33}\n",
      &keep);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()),
              HasSubstr("q.yaml:5:17: quant.overrides[0].weights.bits"));
}

TEST(QuantConfigTest, BadRegexAndMissingMatch) {
  Loaded keep;
  auto bad = Read("quant:\n  overrides:\n    - {match: \"fc(\", weights: {bits: 8}}\n", &keep);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()),
              HasSubstr("quant.overrides[0].match: not a valid regular expression"));
  Loaded keep2;
  auto missing = Read("quant:\n  overrides:\n    - {weights: {bits: 8}}\n", &keep2);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr("quant.overrides[0].match: required string is missing"));
}

TEST(QuantConfigTest, BaseSpecErrorsAndUnknownSectionKeys) {
  Loaded keep;
  auto bad = Read("quant:\n  weights: {bits: 0}\n", &keep);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("q.yaml:2:19: quant.weights.bits"));
  Loaded keep2;
  auto typo = Read("quant:\n  wieghts: {bits: 4}\n", &keep2);
  ASSERT_FALSE(typo.ok());
  EXPECT_THAT(std::string(typo.status().message()),
              HasSubstr("quant.wieghts: unknown key 'wieghts' (did you mean 'weights'?)"));
}

TEST(QuantConfigTest, NothingConfiguredQuantizesNothing) {
  Loaded keep;
  auto config = Read("quant: {}\n", &keep);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE((*config)->quantizes_weights());
  EXPECT_FALSE((*config)->quantizes_activations());
  auto w = (*config)->WeightQuantizer("fc1");
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(*w, nullptr);
}

}  // namespace
}  // namespace quant
