// Scheme `mixed_precision`: bf16 and fp16 training on synthetic data, values
// really in the format, loss scaling skipping overflowing steps, the
// underflow report, the divergence stop with the loss-scale history, errors.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/formats/number_format.h"
#include "quant/nn/model.h"
#include "quant/training/mixed_precision_scheme.h"
#include "quant/training/training_scheme.h"
#include "tests/training/scheme_test_util.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

struct TrainRun {
  absl::StatusOr<TrainResult> result;
  std::unique_ptr<nn::Model> model;
  std::string log;
  nlohmann::json metrics;
};

TrainRun Train(const std::string& train, const Dataset& ds, const std::string& dir_name) {
  TrainRun run;
  auto scheme = Scheme(train);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  ParamReader mp(YAML::Load("{name: mlp, hidden: [32, 16]}"), "t.yaml", "model");
  auto m = Registry<nn::Model>::Get().CreateFrom(mp, "name", "", "model");
  EXPECT_TRUE((*m)->Build(ds.sample_shape(), ds.num_classes(), 0).ok());
  run.model = std::move(m).value();
  const std::string dir = TempDir(dir_name);
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = run.model.get(), .seed = 0, .threads = 1,
                   .run_dir = dir, .name = "t", .progress = TrainContext::Progress::kSummary,
                   .log = log};
  run.result = (*scheme)->Train(ctx);
  std::rewind(log);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), log)) > 0) run.log.append(buf, n);
  std::fclose(log);
  std::ifstream f(dir + "/train_metrics.json");
  if (f) run.metrics = nlohmann::json::parse(f);
  return run;
}

std::unique_ptr<NumberFormat> Format(const std::string& name) {
  ParamReader none(YAML::Node(YAML::NodeType::Undefined), "t", "");
  return std::move(Registry<NumberFormat>::Get().Create(name, none)).value();
}

TEST(MixedPrecision, IsRegistered) {
  EXPECT_TRUE(Registry<TrainingScheme>::Get().Contains("mixed_precision"));
}

TEST(MixedPrecision, UnderflowThresholdsComeFromTheFormats) {
  EXPECT_EQ(UnderflowThreshold(*Format("fp16")), 0x1p-25f);
  EXPECT_EQ(UnderflowThreshold(*Format("bf16")), 0x1p-134f);
}

TEST(MixedPrecision, UnderflowCountsByHand) {
  // Scaled gradients with scale 1024; true values are 1/1024 of them.
  const float g[] = {0.0f, 0x1p-20f, -0x1p-30f, 1.0f, INFINITY, 0x1p-125f};
  UnderflowCounts c;
  c.Add(g, 6, 1024.0f, 1.0f / 1024);
  EXPECT_EQ(c.nonzero, 4);        // 0 and inf are not counted
  EXPECT_EQ(c.fp16_unscaled, 3);  // true 2^-30, 2^-40, 2^-135 are <= 2^-25
  EXPECT_EQ(c.fp16_scaled, 2);    // scaled 2^-30 and 2^-125
  EXPECT_EQ(c.bf16, 1);           // true 2^-135 <= 2^-134
}

TEST(MixedPrecision, Bf16TrainsWithValuesInBf16) {
  auto ds = Synthetic();
  TrainRun run = Train(
      "{scheme: mixed_precision, precision: bf16, epochs: 3, batch_size: 32, "
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}",
      *ds, "mp_bf16");
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  EXPECT_GT(run.result->final_test_accuracy, 0.6) << run.log;
  // The logits come out of a bf16 cast.
  auto bf16 = Format("bf16");
  Tensor x(std::vector<int64_t>{4, 1, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = std::sin(0.1f * i);
  run.model->set_training(false);
  const Tensor& logits = run.model->Forward(x);
  for (int64_t i = 0; i < logits.numel(); ++i) EXPECT_EQ(logits[i], bf16->Round(logits[i]));
  ASSERT_TRUE(run.metrics.contains("underflow_bf16")) << run.log;
  EXPECT_TRUE(run.metrics.contains("underflow_fp16_unscaled"));
  EXPECT_FALSE(run.metrics.contains("underflow_fp16_scaled"));  // no loss scaling in bf16
  EXPECT_GT(run.metrics["grad_values_nonzero"].get<double>(), 1e5);
  EXPECT_EQ(run.metrics["underflow_bf16"].get<double>(), 0.0);
  EXPECT_EQ(run.metrics["skipped_steps"].get<double>(), 0.0);
  // The same values travel in TrainResult::metrics.
  EXPECT_EQ(run.result->metrics.at("underflow_fp16_unscaled"),
            run.metrics["underflow_fp16_unscaled"].get<double>());
}

TEST(MixedPrecision, Fp16LossScalingSkipsOverflowingStepsAndCutsUnderflow) {
  auto ds = Synthetic();
  // 2^40 overflows fp16 on the first steps: they are skipped while the scale
  // backs off, then training proceeds.
  TrainRun run = Train(
      "{scheme: mixed_precision, precision: fp16, epochs: 3, batch_size: 32, "
      "optimizer: {name: sgd, lr: 0.05, momentum: 0.9}, "
      "loss_scale: {init_scale: 1099511627776, growth_interval: 20}}",
      *ds, "mp_fp16");
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  EXPECT_GT(run.result->final_test_accuracy, 0.6) << run.log;
  const double skipped = run.metrics["skipped_steps"].get<double>();
  EXPECT_GE(skipped, 10) << run.log;
  EXPECT_LT(skipped, 57 * 0.5);  // the run mostly trains (19 steps per epoch)
  EXPECT_THAT(run.log, HasSubstr("overflow: step skipped"));
  EXPECT_LE(run.metrics["underflow_fp16_scaled"].get<double>(),
            run.metrics["underflow_fp16_unscaled"].get<double>());
  EXPECT_LT(run.metrics["loss_scale_final"].get<double>(), 1099511627776.0);
}

TEST(MixedPrecision, Fp16DivergenceStopsWithTheLossScaleHistory) {
  auto ds = Synthetic();
  // Every step overflows (backoff 1 never lowers the scale): stop after 5.
  TrainRun run = Train(
      "{scheme: mixed_precision, precision: fp16, epochs: 2, batch_size: 32, "
      "loss_scale: {init_scale: 1099511627776, backoff_factor: 1, max_consecutive_skips: 5}}",
      *ds, "mp_div");
  ASSERT_FALSE(run.result.ok());
  EXPECT_THAT(run.result.status().message(), HasSubstr("training diverged: 6 consecutive steps"));
  EXPECT_THAT(run.result.status().message(), HasSubstr("loss-scale history: step 0: 1.09951e+12 (start)"));
  // A non-finite loss (huge lr) also reports the history.
  TrainRun nan = Train(
      "{scheme: mixed_precision, precision: fp16, epochs: 3, batch_size: 32, "
      "optimizer: {name: sgd, lr: 1000, momentum: 0.9}}",
      *ds, "mp_nan");
  ASSERT_FALSE(nan.result.ok());
  EXPECT_THAT(nan.result.status().message(), HasSubstr("diverged"));
  EXPECT_THAT(nan.result.status().message(), HasSubstr("loss-scale history: step 0: 65536 (start)"));
}

TEST(MixedPrecision, BadSettingsNameTheKey) {
  auto s = Scheme("{scheme: mixed_precision, precision: fp8}");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("train.precision"));
  s = Scheme("{scheme: mixed_precision, precision: fp16, loss_scale: {growth_intervall: 3}}");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("growth_intervall"));
  s = Scheme("{scheme: mixed_precision, precision: fp16}");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT((*s)->Describe(), HasSubstr("loss scaling dynamic from 65536"));
  s = Scheme("{scheme: mixed_precision}");
  ASSERT_TRUE(s.ok());
  EXPECT_THAT((*s)->Describe(), HasSubstr("mixed_precision bf16"));
  EXPECT_THAT((*s)->Describe(), HasSubstr("loss scaling none"));
}

}  // namespace
}  // namespace quant
