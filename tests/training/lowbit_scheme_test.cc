// Schemes `binary`, `xnor`, `ternary`: where the hooks go (first/last layer
// rule, overrides), that training runs and learns on synthetic data with the
// weights really binary/ternary, latent weight clipping, the pretrain phase,
// and errors.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/lowbit_scheme.h"
#include "quant/training/training_scheme.h"
#include "tests/training/scheme_test_util.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::unique_ptr<QuantConfig> Quant(const std::string& yaml) {
  auto q = Config(yaml);
  EXPECT_TRUE(q.ok()) << q.status();
  return std::move(q).value();
}

std::unique_ptr<nn::Model> Mlp(const Dataset& ds) { return Model("{name: mlp, hidden: [32, 16]}", ds); }

std::vector<std::string> Plan(const std::string& train, const std::string& quant,
                              const Dataset& ds) {
  auto scheme = Scheme(train);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  auto model = Mlp(ds);
  auto q = Quant(quant);
  std::vector<std::shared_ptr<QuantizerTransform>> installed;
  auto plan = dynamic_cast<LowBitScheme&>(**scheme).InstallHooks(*model, *q, &installed);
  EXPECT_TRUE(plan.ok()) << plan.status();
  std::vector<std::string> where;
  for (const std::string& line : *plan) where.push_back(line.substr(0, line.find(':')));
  return where;
}

constexpr char kBinaryQuant[] = "{weights: {quantizer: binary}, activations: {quantizer: binary}}";

TEST(LowBitScheme, AreRegistered) {
  for (const char* n : {"binary", "xnor", "ternary"}) {
    EXPECT_TRUE(Registry<TrainingScheme>::Get().Contains(n)) << n;
  }
  auto s = Scheme("{scheme: binary}");
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->uses_quant_config());
}

TEST(LowBitScheme, FirstAndLastLayersStayFloatByDefault) {
  auto ds = Synthetic();
  // mlp: flatten1 fc1 relu1 fc2 relu2 fc3. fc1's output (a hidden activation)
  // is binarized; fc1's weights and fc3 (weights and logits) are not.
  EXPECT_THAT(Plan("{scheme: binary}", kBinaryQuant, *ds),
              ElementsAre("fc1 output", "fc2 weights", "fc2 output"));
  EXPECT_THAT(Plan("{scheme: binary, first_last: quantize}", kBinaryQuant, *ds),
              ElementsAre("fc1 weights", "fc1 output", "fc2 weights", "fc2 output", "fc3 weights",
                          "fc3 output"));
}

TEST(LowBitScheme, AnOverrideNamingTheFirstOrLastLayerApplies) {
  auto ds = Synthetic();
  auto scheme = Scheme("{scheme: binary}");
  ASSERT_TRUE(scheme.ok());
  auto model = Mlp(*ds);
  auto q = Quant(
      "{weights: {quantizer: binary}, activations: {quantizer: binary},"
      " overrides: [{match: 'fc1|fc3', weights: {quantizer: affine, bits: 8, symmetric: true}, "
      "activations: none}]}");
  std::vector<std::shared_ptr<QuantizerTransform>> installed;
  auto plan = dynamic_cast<LowBitScheme&>(**scheme).InstallHooks(*model, *q, &installed);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->size(), 4u);
  EXPECT_THAT((*plan)[0], StartsWith("fc1 weights: affine 8-bit"));
  EXPECT_THAT((*plan)[1], StartsWith("fc2 weights: binary"));
  EXPECT_THAT((*plan)[2], StartsWith("fc2 output: binary"));
  EXPECT_THAT((*plan)[3], StartsWith("fc3 weights: affine 8-bit"));
  // A layer without a weight is quantized only when an override names it.
  EXPECT_THAT(Plan("{scheme: ternary}",
                   "{weights: {quantizer: ternary}, overrides: [{match: relu1, activations: "
                   "{quantizer: binary}}]}",
                   *ds),
              ElementsAre("relu1 output", "fc2 weights"));
}

struct TrainRun {
  absl::StatusOr<TrainResult> result;
  std::unique_ptr<nn::Model> model;
  std::string log;
};

TrainRun Train(const std::string& train, const std::string& quant, const Dataset& ds,
          const std::string& run_dir = "") {
  TrainRun run;
  auto scheme = Scheme(train);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  run.model = Mlp(ds);
  auto q = Quant(quant);
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = run.model.get(), .seed = 0, .threads = 1,
                   .run_dir = run_dir, .name = "t", .quant = q.get(),
                   .progress = TrainContext::Progress::kSummary, .log = log};
  run.result = (*scheme)->Train(ctx);
  std::rewind(log);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), log)) > 0) run.log.append(buf, n);
  std::fclose(log);
  return run;
}

const Tensor& EffectiveWeight(nn::Model& model, const std::string& layer) {
  static Tensor out;
  nn::Layer* l = model.FindLayer(layer);
  nn::Parameter* w = l->parameters()[0];
  EXPECT_EQ(w->name, "weight");
  l->weight_transform()->Forward(w->value, &out, false);
  return out;
}

TEST(LowBitScheme, BinaryTrainsWithPretrainAndClipsLatentWeights) {
  auto ds = Synthetic();
  const std::string dir = std::string(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp") +
                          "/lowbit_binary";
  std::filesystem::remove_all(dir);
  TrainRun run = Train(
      "{scheme: binary, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.01, momentum: 0.9},"
      " pretrain: {epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}}",
      kBinaryQuant, *ds, dir);
  ASSERT_TRUE(run.result.ok()) << run.result.status() << run.log;
  ASSERT_EQ(run.result->epochs.size(), 4u);
  EXPECT_EQ(run.result->epochs[3].epoch, 4);
  EXPECT_GT(run.result->final_test_accuracy, 0.5) << run.log;  // 10 classes: chance is 0.1
  EXPECT_THAT(run.log, HasSubstr("fp32 (pretrain)"));
  EXPECT_THAT(run.log, HasSubstr("binary: fc2 weights: binary"));
  // fc2 computes with +-1 weights; its latent weights stay within [-1, 1].
  std::set<float> values;
  const Tensor& w = EffectiveWeight(*run.model, "fc2");
  for (int64_t i = 0; i < w.numel(); ++i) values.insert(w[i]);
  EXPECT_THAT(values, ElementsAre(-1.0f, 1.0f));
  const Tensor& latent = run.model->FindLayer("fc2")->parameters()[0]->value;
  for (int64_t i = 0; i < latent.numel(); ++i) ASSERT_LE(std::fabs(latent[i]), 1.0f);
  EXPECT_EQ(run.model->FindLayer("fc1")->weight_transform(), nullptr);
  std::ifstream metrics(dir + "/train_metrics.json");
  std::string text((std::istreambuf_iterator<char>(metrics)), {});
  EXPECT_THAT(text, HasSubstr("\"pretrain_test_accuracy\""));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.pb"));
}

TEST(LowBitScheme, TernaryAndXnorWeightsHaveTheirGrids) {
  auto ds = Synthetic();
  TrainRun t = Train("{scheme: ternary, epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.01},"
                     " pretrain: {epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}}",
                "{weights: {quantizer: ternary}}", *ds);
  ASSERT_TRUE(t.result.ok()) << t.result.status();
  std::set<float> values;
  const Tensor& w = EffectiveWeight(*t.model, "fc2");
  for (int64_t i = 0; i < w.numel(); ++i) values.insert(w[i]);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(*values.begin(), -*values.rbegin());
  EXPECT_TRUE(values.count(0.0f));
  EXPECT_GT(t.result->final_test_accuracy, 0.3);

  TrainRun x = Train("{scheme: xnor, epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}",
                "{weights: {quantizer: xnor}, activations: {quantizer: xnor}}", *ds);
  ASSERT_TRUE(x.result.ok()) << x.result.status();
  const Tensor& wx = EffectiveWeight(*x.model, "fc2");
  const int64_t in = wx.dim(1);
  for (int64_t r = 0; r < wx.dim(0); ++r) {
    for (int64_t i = 0; i < in; ++i) ASSERT_EQ(std::fabs(wx[r * in + i]), std::fabs(wx[r * in])) << r;
  }
}

TEST(LowBitScheme, Errors) {
  auto ds = Synthetic();
  // No quant: section.
  auto scheme = Scheme("{scheme: xnor, epochs: 1}");
  ASSERT_TRUE(scheme.ok());
  auto model = Mlp(*ds);
  TrainContext ctx{.dataset = ds.get(), .model = model.get(), .progress = TrainContext::Progress::kQuiet};
  auto r = (*scheme)->Train(ctx);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("needs a quant: section"));
  // Keys of the pretrain map.
  auto bad = Scheme("{scheme: binary, pretrain: {epochs: 1, init_from: x.pb}}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("train.pretrain.init_from"));
  bad = Scheme("{scheme: binary, first_last: bf16}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("train.first_last"));
  // Nothing quantized (only the first and last layers are named... by nothing).
  TrainRun none = Train("{scheme: binary, epochs: 1}", "{overrides: [{match: fc2, activations: none}]}", *ds);
  ASSERT_FALSE(none.result.ok());
  EXPECT_THAT(none.result.status().message(), HasSubstr("quantizes no layer"));
  // A quantizer error during training stops it, naming the hook.
  TrainRun err = Train("{scheme: binary, epochs: 1, batch_size: 32}",
                  "{weights: {quantizer: affine, granularity: per_channel, axis: 3, "
                  "observer: per_channel_minmax}}",
                  *ds);
  ASSERT_FALSE(err.result.ok());
  EXPECT_THAT(err.result.status().message(), HasSubstr("fc2 weights"));
}

}  // namespace
}  // namespace quant
