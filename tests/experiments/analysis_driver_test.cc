// The analysis: section end to end through the driver: the sensitivity table and the
// allocation in the record, the emitted mixed_precision.yaml validates and, run as it
// is, reproduces the predicted packed size exactly; config errors are located.
#include <filesystem>
#include <string>
#include <vector>

#include "experiments/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/experiments/driver_test_util.h"

namespace quant {
namespace {

namespace fs = std::filesystem;
using driver_test::Read;
using driver_test::Result;
using driver_test::RunDirs;
using driver_test::RunDriver;
using driver_test::TmpDir;
using driver_test::Write;
using ::testing::HasSubstr;

constexpr char kConfig[] = R"(name: mp
seed: 0
dataset: {name: synthetic, train_size: 1500, test_size: 300, image_size: 8, num_classes: 4}
model:
  name: sequential
  layers: [{type: conv2d, out_channels: 6, kernel: 3, padding: 1}, relu, {type: maxpool2d, kernel: 2},
           {type: conv2d, out_channels: 8, kernel: 3, padding: 1}, relu, flatten, {type: linear, out_features: 4}]
train: {scheme: fp32, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}
quant:
  weights: {bits: 8, symmetric: true, granularity: per_channel}
  activations: {bits: 8, observer: histogram, calibration: percentile, percentile: 99.99}
ptq: {method: static, calibration_batches: 2, batch_size: 128}
analysis:
  bits: [2, 3, 4, 8]
  metrics: [one_layer, sqnr]
  images: 256
  calibration_images: 256
  allocate: {budget: {size_bits: 3}}
evaluate: {backends: [reference], batch1_images: 10}
output: {dir: runs}
)";

TEST(AnalysisDriverTest, EmittedConfigReproducesThePredictedSize) {
  const std::string dir = TmpDir("mp");
  const std::string config = Write(dir + "/mp.yaml", kConfig);
  const Result r = RunDriver("--config=" + config + " --output_dir=" + dir + "/out");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("analysis one_layer: 8 bits done"));
  EXPECT_THAT(r.output, HasSubstr("GLPK"));
  EXPECT_THAT(r.output, HasSubstr("(exact)"));
  std::vector<fs::path> runs = RunDirs(dir + "/out");
  ASSERT_EQ(runs.size(), 1u);
  auto record = ReadRecordJson((runs[0] / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  const auto& m = record->metrics();
  const double predicted = m.at("mp_predicted_size_bytes");
  EXPECT_EQ(m.at("ptq_packed_model_bytes"), predicted);
  EXPECT_LE(predicted, m.at("mp_budget"));
  ASSERT_EQ(record->allocation_size(), 3);
  // 3 layers x 4 bit widths x 3 targets x 2 one_layer metrics, + 4 x 1 weight SQNR + 4 x 3 output SQNR per layer.
  EXPECT_EQ(record->sensitivity_size(), 3 * (4 * 3 * 2 + 4 + 4 * 3));
  EXPECT_THAT(Read(runs[0] / "sensitivity.md"), HasSubstr("| one_layer_loss_increase (weights) |"));

  const std::string emitted = (runs[0] / "mixed_precision.yaml").string();
  const std::string text = Read(emitted);
  EXPECT_THAT(text, HasSubstr("name: mp_mp"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("analysis")));
  const Result v = RunDriver("--validate --config=" + emitted);
  EXPECT_EQ(v.exit_code, 0) << v.output;
  const Result again = RunDriver("--config=" + emitted + " --output_dir=" + dir + "/again");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  runs = RunDirs(dir + "/again");
  ASSERT_EQ(runs.size(), 1u);
  auto rerun = ReadRecordJson((runs[0] / "result.json").string());
  ASSERT_TRUE(rerun.ok()) << rerun.status();
  EXPECT_EQ(rerun->metrics().at("ptq_packed_model_bytes"), predicted);
  EXPECT_EQ(rerun->metrics().at("ptq_test_accuracy"), m.at("ptq_test_accuracy"));
}

// With QAT the analysis runs on train.init_from before training, and QAT trains the allocated bits.
TEST(AnalysisDriverTest, QatTrainsTheAllocation) {
  const std::string dir = TmpDir("mp_qat");
  const Result fp32 = RunDriver("--config=" + Write(dir + "/mp.yaml", kConfig) + " --output_dir=" + dir + "/fp32");
  ASSERT_EQ(fp32.exit_code, 0) << fp32.output;
  const std::string checkpoint = (RunDirs(dir + "/fp32")[0] / "model.pb").string();
  ASSERT_TRUE(fs::exists(checkpoint));
  std::string text = kConfig;
  const size_t train = text.find("train: {");
  text.replace(train, text.find('\n', train) - train,
               "train: {scheme: qat, init_from: " + checkpoint +
                   ", epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.005, momentum: 0.9}}");
  text.replace(text.find("ptq: {method: static"),
               text.find('\n', text.find("ptq: {method: static")) - text.find("ptq: {method: static"),
               "ptq: {method: from_qat}");
  const std::string config = Write(dir + "/qat.yaml", text);
  const Result v = RunDriver("--validate --config=" + config);
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_THAT(v.output, HasSubstr("step 3: load " + checkpoint + " and analyse it"));
  const Result r = RunDriver("--config=" + config + " --output_dir=" + dir + "/qat");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // The analysis comes before the first epoch.
  EXPECT_LT(r.output.find("analysis: this run now quantizes with the allocation"), r.output.find("epoch 1"))
      << r.output;
  auto record = ReadRecordJson((RunDirs(dir + "/qat")[0] / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->allocation_size(), 3);
  EXPECT_EQ(record->metrics().at("ptq_packed_model_bytes"), record->metrics().at("mp_predicted_size_bytes"));

  // Without init_from there is no float model to analyse before QAT.
  text.replace(text.find("init_from: "), checkpoint.size() + 13, "");
  const Result bad = RunDriver("--validate --config=" + Write(dir + "/noinit.yaml", text));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, HasSubstr("give train.init_from"));
}

TEST(AnalysisDriverTest, InfeasibleBudgetAndBadSectionsAreClearErrors) {
  const std::string dir = TmpDir("mp_errors");
  std::string text = kConfig;
  text.replace(text.find("size_bits: 3"), 12, "size_bytes: 50");
  const std::string config = Write(dir + "/tiny.yaml", text);
  Result r = RunDriver("--config=" + config + " --output_dir=" + dir + "/out");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("the budget of 50 bytes is infeasible; the smallest feasible is"));
  EXPECT_THAT(r.output, HasSubstr("conv1 W2A8"));

  text = kConfig;
  text.replace(text.find("metrics: [one_layer, sqnr]"), 26, "metrics: [sqnr]");
  r = RunDriver("--validate --config=" + Write(dir + "/noobjective.yaml", text));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("noobjective.yaml:"));
  EXPECT_THAT(r.output, HasSubstr("analysis.allocate.objective"));
  EXPECT_THAT(r.output, HasSubstr("'one_layer', which analysis.metrics does not list"));

  text = kConfig;
  text.replace(text.find("train: {"), 0, "# no training\n");
  text.erase(text.find("train: {"), text.find("\nquant:") - text.find("train: {") + 1);
  r = RunDriver("--validate --config=" + Write(dir + "/untrained.yaml", text));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("analysis needs a trained float model"));
}

}  // namespace
}  // namespace quant
