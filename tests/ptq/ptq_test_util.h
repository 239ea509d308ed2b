// Shared helpers of the PTQ tests: synthetic datasets, models from YAML,
// quick fp32 training, QuantConfigs from YAML.
#ifndef TESTS_PTQ_PTQ_TEST_UTIL_H_
#define TESTS_PTQ_PTQ_TEST_UTIL_H_

#include <cstdio>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/model.h"
#include "quant/ptq/ptq_pass.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/training_scheme.h"
#include "yaml-cpp/yaml.h"

namespace quant::ptq_test {

// A registered PTQ pass from its YAML map ("{name: brecq, iterations: 10}").
inline std::unique_ptr<ptq::PtqPass> Pass(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "p.yaml", "ptq.passes[0]");
  auto pass = Registry<ptq::PtqPass>::Get().CreateFrom(p, "name", "", "pass");
  EXPECT_TRUE(pass.ok()) << pass.status();
  EXPECT_TRUE(p.Finish().ok()) << p.Finish();
  return std::move(pass).value();
}

inline std::unique_ptr<Dataset> Synthetic(int channels = 1, int image_size = 8, int train = 1200,
                                          int test = 2000, double noise = 1.0) {
  ParamReader p(YAML::Load("{train_size: " + std::to_string(train) + ", test_size: " + std::to_string(test) +
                           ", image_size: " + std::to_string(image_size) + ", channels: " +
                           std::to_string(channels) + ", noise: " + std::to_string(noise) + "}"),
                "t.yaml", "dataset");
  auto ds = SyntheticDataset::Create(p);
  EXPECT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE((*ds)->Load().ok());
  return std::move(ds).value();
}

inline std::unique_ptr<nn::Model> MakeModel(const std::string& yaml, const std::vector<int64_t>& shape,
                                            int classes, uint64_t seed = 1) {
  ParamReader p(YAML::Load(yaml), "t.yaml", "model");
  auto m = Registry<nn::Model>::Get().CreateFrom(p, "name", "", "model");
  EXPECT_TRUE(m.ok()) << m.status();
  absl::Status s = (*m)->Build(shape, classes, seed);
  EXPECT_TRUE(s.ok()) << s;
  return std::move(m).value();
}

// Trains `model` with fp32 SGD for `epochs` on `ds`.
inline void TrainFp32(nn::Model* model, const Dataset& ds, int epochs = 3) {
  ParamReader p(YAML::Load("{scheme: fp32, epochs: " + std::to_string(epochs) +
                           ", batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9},"
                           " schedule: {name: cosine}}"),
                "t.yaml", "train");
  auto scheme = Registry<TrainingScheme>::Get().CreateFrom(p, "scheme", "fp32", "scheme");
  ASSERT_TRUE(scheme.ok()) << scheme.status();
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = model, .seed = 0, .threads = 1, .run_dir = "", .name = "t",
                   .progress = TrainContext::Progress::kSummary, .log = log};
  auto r = (*scheme)->Train(ctx);
  std::fclose(log);
  ASSERT_TRUE(r.ok()) << r.status();
  model->set_training(false);
}

inline std::unique_ptr<QuantConfig> Config(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "q.yaml", "quant");
  auto c = QuantConfig::Read(p);
  EXPECT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(p.Finish().ok()) << p.Finish();
  return std::move(c).value();
}

// Static int8: per-channel symmetric int8 weights, uint8 affine activations (histogram + percentile).
inline constexpr char kInt8PerChannel[] =
    "{weights: {bits: 8, signed: true, symmetric: true, granularity: per_channel},"
    " activations: {bits: 8, observer: histogram, calibration: percentile, percentile: 99.99}}";

}  // namespace quant::ptq_test

#endif  // TESTS_PTQ_PTQ_TEST_UTIL_H_
