#include "quant/core/params.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/suggest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

ParamReader Reader(const std::string& yaml, const std::string& path = "quant.weights") {
  return ParamReader(YAML::Load(yaml), "cfg.yaml", path);
}

TEST(ParamReaderTest, TypedValuesAndDefaults) {
  ParamReader p = Reader(
      "bits: 4\n"
      "symmetric: true\n"
      "percentile: 99.99\n"
      "observer: histogram\n"
      "sizes: [1, 2, 3]\n"
      "ratios: [0.5, 1e-3]\n"
      "names: [a, b]\n");
  EXPECT_EQ(p.Int("bits", 8, ""), 4);
  EXPECT_EQ(p.Int("absent", 8, ""), 8);
  EXPECT_TRUE(p.Bool("symmetric", false, ""));
  EXPECT_DOUBLE_EQ(p.Double("percentile", 99.9, ""), 99.99);
  EXPECT_EQ(p.String("observer", "minmax", ""), "histogram");
  EXPECT_EQ(p.IntList("sizes", {}, ""), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(p.DoubleList("ratios", {}, ""), (std::vector<double>{0.5, 1e-3}));
  EXPECT_EQ(p.StringList("names", {}, ""), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(p.Finish().ok()) << p.Finish();
}

TEST(ParamReaderTest, IntegerAcceptedWhereNumberExpected) {
  ParamReader p = Reader("lr: 1");
  EXPECT_DOUBLE_EQ(p.Double("lr", 0.1, ""), 1.0);
  EXPECT_TRUE(p.Finish().ok());
}

TEST(ParamReaderTest, UnknownKeyHasLineColumnPathAndSuggestion) {
  ParamReader p = Reader("bits: 4\nsymmetric: true\nbitz: 3\n");
  p.Int("bits", 8, "");
  p.Bool("symmetric", false, "");
  p.String("granularity", "per_tensor", "");
  const absl::Status s = p.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "cfg.yaml:3:1: quant.weights.bitz: unknown key 'bitz' (did you mean 'bits'?); "
            "accepted here: bits, symmetric, granularity");
}

TEST(ParamReaderTest, WrongTypeIsLocatedAtTheValue) {
  ParamReader p = Reader("bits: eight\n");
  EXPECT_EQ(p.Int("bits", 8, ""), 8);
  EXPECT_EQ(p.Finish().message(),
            "cfg.yaml:1:7: quant.weights.bits: expected an integer, got 'eight'");
}

TEST(ParamReaderTest, FractionIsNotAnInteger) {
  ParamReader p = Reader("bits: 4.5\n");
  p.Int("bits", 8, "");
  EXPECT_THAT(p.Finish().message(), HasSubstr("expected an integer, got '4.5'"));
}

TEST(ParamReaderTest, LeadingZeroIsDecimal) {
  ParamReader p = Reader("bits: 010\n");
  EXPECT_EQ(p.Int("bits", 8, ""), 10);
}

TEST(ParamReaderTest, BooleansAreOnlyTrueOrFalse) {
  ParamReader p = Reader("symmetric: yes\n");
  p.Bool("symmetric", false, "");
  EXPECT_THAT(p.Finish().message(), HasSubstr("expected a boolean (true/false), got 'yes'"));
}

TEST(ParamReaderTest, MissingRequired) {
  ParamReader p = Reader("{}");
  p.RequiredInt("bits", "bit width");
  EXPECT_THAT(p.Finish().message(),
              HasSubstr("cfg.yaml:1:1: quant.weights.bits: required integer is missing"));
}

TEST(ParamReaderTest, RangeAndChoiceErrors) {
  ParamReader p = Reader("bits: 33\n");
  EXPECT_EQ(p.IntInRange("bits", 8, 2, 16, ""), 8);
  EXPECT_EQ(p.Finish().message(),
            "cfg.yaml:1:7: quant.weights.bits: expected an integer in [2, 16], got 33");

  ParamReader q = Reader("granularity: per_chanel\n");
  q.Choice("granularity", "per_tensor", {"per_tensor", "per_channel", "per_block"}, "");
  EXPECT_EQ(q.Finish().message(),
            "cfg.yaml:1:14: quant.weights.granularity: expected one of per_tensor, per_channel, "
            "per_block, got 'per_chanel' (did you mean 'per_channel'?)");

  ParamReader r = Reader("percentile: 101\n");
  r.DoubleInRange("percentile", 99.9, 0.0, 100.0, "");
  EXPECT_THAT(r.Finish().message(), HasSubstr("percentile: expected a number in [0, 100], got 101"));
}

TEST(ParamReaderTest, NestedMapsAreCheckedByTheParent) {
  ParamReader root(YAML::Load("train:\n  epochs: 2\n  optimizer: {name: sgd, lrr: 0.1}\n"),
                   "cfg.yaml", "");
  ParamReader& train = root.Map("train", "");
  train.Int("epochs", 1, "");
  ParamReader& opt = train.Map("optimizer", "");
  opt.String("name", "sgd", "");
  opt.Double("lr", 0.01, "");
  EXPECT_EQ(&root.Map("train", ""), &train);  // same child on a second call
  EXPECT_EQ(root.Finish().message(),
            "cfg.yaml:3:26: train.optimizer.lrr: unknown key 'lrr' (did you mean 'lr'?); "
            "accepted here: name, lr");
}

TEST(ParamReaderTest, NonMapWhereMapExpected) {
  ParamReader root(YAML::Load("quant: 5\n"), "cfg.yaml", "");
  root.Map("quant", "");
  EXPECT_THAT(root.Finish().message(),
              HasSubstr("cfg.yaml:1:8: quant: expected a map of settings ({key: value, ...}), got '5'"));
}

TEST(ParamReaderTest, FirstErrorWinsAndFailLocatesKey) {
  ParamReader p = Reader("a: 1\nb: 2\n");
  p.Int("a", 0, "");
  p.Int("b", 0, "");
  p.Fail("b", "must be larger than a");
  p.Fail("a", "second complaint");
  EXPECT_EQ(p.Finish().message(), "cfg.yaml:2:4: quant.weights.b: must be larger than a");
}

TEST(ParamReaderTest, DescribingRecordsDeclarationsAndReturnsDefaults) {
  ParamReader d = ParamReader::ForDescription();
  EXPECT_TRUE(d.describing());
  EXPECT_EQ(d.IntInRange("bits", 8, 2, 16, "bit width"), 8);
  EXPECT_EQ(d.RequiredString("name", "which"), "");
  d.Map("optimizer", "the optimizer").Double("lr", 0.1, "step size");
  EXPECT_TRUE(d.Finish().ok());
  const auto declared = d.Declared();
  ASSERT_EQ(declared.size(), 4u);
  EXPECT_EQ(declared[0].key, "bits");
  EXPECT_EQ(declared[0].type, "integer in [2, 16]");
  EXPECT_EQ(declared[0].default_value, "8");
  EXPECT_EQ(declared[0].help, "bit width");
  EXPECT_TRUE(declared[1].required);
  EXPECT_EQ(declared[3].key, "optimizer.lr");
  EXPECT_EQ(declared[3].default_value, "0.1");
}

TEST(ParamReaderTest, ListErrorsNameTheElement) {
  ParamReader p = Reader("sizes: [1, x]\n");
  p.IntList("sizes", {}, "");
  EXPECT_THAT(p.Finish().message(), HasSubstr("sizes: element 1: expected an integer, got 'x'"));
}

TEST(SuggestTest, NearestName) {
  EXPECT_EQ(NearestName("minmx", {"minmax", "histogram"}), "minmax");
  EXPECT_EQ(NearestName("hsitogram", {"minmax", "histogram"}), "histogram");
  EXPECT_EQ(NearestName("zzz", {"minmax", "histogram"}), "");
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

TEST(ParamReaderTest, OverriddenValuesAreLocatedAtTheirOrigin) {
  auto origins = std::make_shared<OverrideOrigins>();
  (*origins)["train.epochs"] = "command line --set train.epochs=x";
  ParamReader root(YAML::Load("train:\n  epochs: x\n  batch_size: y\n"), "cfg.yaml", "", origins);
  ParamReader& train = root.Map("train", "");
  train.Int("epochs", 1, "");
  EXPECT_EQ(std::string(root.Finish().message()),
            "command line --set train.epochs=x: train.epochs: expected an integer, got 'x'");
  ParamReader root2(YAML::Load("train:\n  epochs: 1\n  batch_size: y\n"), "cfg.yaml", "", origins);
  root2.Map("train", "").Int("batch_size", 1, "");
  EXPECT_EQ(std::string(root2.Finish().message()),
            "cfg.yaml:3:15: train.batch_size: expected an integer, got 'y'");
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

TEST(ParamReaderTest, AbsentMapIsEmptyAndSafeToFinish) {
  ParamReader root(YAML::Load("name: x\n"), "cfg.yaml", "");
  root.String("name", "", "");
  ParamReader& absent = root.Map("output", "");
  EXPECT_EQ(absent.String("dir", "runs", ""), "runs");
  EXPECT_FALSE(root.Node("model", "").IsDefined());
  EXPECT_TRUE(root.Finish().ok());
}

}  // namespace
}  // namespace quant
