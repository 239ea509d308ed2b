// The fp32 scheme and the shared training loop, on the synthetic dataset:
// learning, bit-for-bit determinism, NaN handling, checkpoints and init_from,
// progress output, and configuration errors.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/model.h"
#include "quant/training/training_scheme.h"
#include "tests/training/scheme_test_util.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

struct TrainRun {
  absl::StatusOr<TrainResult> result;
  std::unique_ptr<nn::Model> model;
  std::string log;
};

TrainRun Train(const std::string& train_yaml, const std::string& model_yaml, const Dataset& ds,
          uint64_t seed, const std::string& run_dir = "",
          TrainContext::Progress progress = TrainContext::Progress::kSummary, int threads = 1) {
  TrainRun run;
  auto scheme = Scheme(train_yaml);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  run.model = Model(model_yaml, ds, seed);
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = run.model.get(), .seed = seed, .threads = threads,
                   .run_dir = run_dir, .name = "t", .progress = progress, .log = log};
  // With threads > 1 the batch is split across replicas of the same model.
  ctx.make_replica = [&]() -> absl::StatusOr<std::unique_ptr<nn::Model>> { return Model(model_yaml, ds, seed); };
  run.result = (*scheme)->Train(ctx);
  std::rewind(log);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), log)) > 0) run.log.append(buf, n);
  std::fclose(log);
  return run;
}

constexpr char kSgd[] =
    "{scheme: fp32, epochs: 3, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9},"
    " schedule: {name: cosine}}";

TEST(Fp32SchemeTest, IsRegisteredAndLearns) {
  EXPECT_TRUE(Registry<TrainingScheme>::Get().Contains("fp32"));
  auto ds = Synthetic();
  TrainRun run = Train(kSgd, "{name: mlp, hidden: [32, 16]}", *ds, 0);
  ASSERT_TRUE(run.result.ok()) << run.result.status();
  ASSERT_EQ(run.result->epochs.size(), 3u);
  EXPECT_GT(run.result->final_test_accuracy, 0.9);
  EXPECT_LT(run.result->epochs[2].train_loss, run.result->epochs[0].train_loss);
  EXPECT_EQ(run.result->epochs[2].epoch, 3);
  EXPECT_GT(run.result->epochs[0].samples_per_s, 0);
  // One summary line per epoch, no carriage returns when not live.
  EXPECT_EQ(std::count(run.log.begin(), run.log.end(), '\n'), 3) << run.log;
  EXPECT_EQ(run.log.find('\r'), std::string::npos);
  EXPECT_NE(run.log.find("epoch 3/3"), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("test acc"), std::string::npos) << run.log;
}

TEST(Fp32SchemeTest, LiveProgressRewritesOneLine) {
  auto ds = Synthetic();
  TrainRun run = Train(kSgd, "{name: mlp, hidden: [16]}", *ds, 0, "", TrainContext::Progress::kLive);
  ASSERT_TRUE(run.result.ok());
  EXPECT_NE(run.log.find("\r[t] epoch 1/3  batch "), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("samples/s  ETA "), std::string::npos) << run.log;
}

TEST(Fp32SchemeTest, SameSeedIsBitForBitOtherSeedIsNot) {
  auto ds = Synthetic();
  const std::string model = "{name: cnn_bn, channels: [4, 8], hidden: 16}";
  const std::string train =
      "{epochs: 2, batch_size: 50, optimizer: {name: adamw, lr: 0.01}, schedule: {name: step, step_size: 1}}";
  TrainRun a = Train(train, model, *ds, 3), b = Train(train, model, *ds, 3), c = Train(train, model, *ds, 4);
  ASSERT_TRUE(a.result.ok() && b.result.ok() && c.result.ok());
  auto sa = a.model->StateTensors(), sb = b.model->StateTensors(), sc = c.model->StateTensors();
  bool differs = false;
  for (size_t k = 0; k < sa.size(); ++k) {
    for (int64_t i = 0; i < sa[k].second->numel(); ++i) {
      ASSERT_EQ((*sa[k].second)[i], (*sb[k].second)[i]) << sa[k].first << "[" << i << "]";
      differs = differs || (*sa[k].second)[i] != (*sc[k].second)[i];
    }
  }
  EXPECT_TRUE(differs);
  EXPECT_EQ(a.result->epochs[1].train_loss, b.result->epochs[1].train_loss);
}

TEST(Fp32SchemeTest, TwoThreadsAreReproducibleToo) {
  auto ds = Synthetic(16);
  const std::string model = "{name: cnn, channels: [8, 16], hidden: 32}";
  const std::string train = "{epochs: 1, batch_size: 100, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}";
  TrainRun a = Train(train, model, *ds, 1, "", TrainContext::Progress::kQuiet, 2);
  TrainRun b = Train(train, model, *ds, 1, "", TrainContext::Progress::kQuiet, 2);
  ASSERT_TRUE(a.result.ok() && b.result.ok());
  auto sa = a.model->StateTensors(), sb = b.model->StateTensors();
  for (size_t k = 0; k < sa.size(); ++k) {
    for (int64_t i = 0; i < sa[k].second->numel(); ++i) {
      ASSERT_EQ((*sa[k].second)[i], (*sb[k].second)[i]) << sa[k].first << "[" << i << "]";
    }
  }
  EXPECT_TRUE(a.log.empty()) << a.log;  // kQuiet
  // Split across two replicas: close to one thread's result, not the same bits.
  TrainRun one = Train(train, model, *ds, 1, "", TrainContext::Progress::kQuiet, 1);
  ASSERT_TRUE(one.result.ok());
  EXPECT_NEAR(a.result->epochs[0].train_loss, one.result->epochs[0].train_loss, 0.05);
  TrainRun loud = Train(train, model, *ds, 1, "", TrainContext::Progress::kSummary, 2);
  EXPECT_NE(loud.log.find("data-parallel: each batch split across 2 threads"), std::string::npos) << loud.log;
}

TEST(Fp32SchemeTest, NanLossStopsWithEpochAndBatchAndNoCheckpoint) {
  auto ds = Synthetic();
  const std::string dir = TempDir("nan_run");
  TrainRun run = Train("{epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 1.0e+6}}",
                  "{name: mlp, hidden: [16]}", *ds, 0, dir);
  ASSERT_FALSE(run.result.ok());
  const std::string msg(run.result.status().message());
  EXPECT_NE(msg.find("epoch 1, batch "), std::string::npos) << msg;
  EXPECT_NE(msg.find("no checkpoint"), std::string::npos) << msg;
  EXPECT_FALSE(std::filesystem::exists(dir + "/model.pb"));
}

TEST(Fp32SchemeTest, CheckpointAndInitFrom) {
  auto ds = Synthetic();
  const std::string dir = TempDir("ckpt_run");
  const std::string model = "{name: cnn, channels: [4], hidden: 16}";
  TrainRun first = Train(kSgd, model, *ds, 0, dir);
  ASSERT_TRUE(first.result.ok()) << first.result.status();
  ASSERT_EQ(first.result->checkpoint_path, dir + "/model.pb");
  ASSERT_TRUE(std::filesystem::exists(dir + "/model.pb"));
  // Zero epochs from the checkpoint (another seed): the same model, the same accuracy.
  TrainRun again = Train("{epochs: 0, init_from: " + dir + "/model.pb}", model, *ds, 9);
  ASSERT_TRUE(again.result.ok()) << again.result.status();
  EXPECT_EQ(again.result->final_test_accuracy, first.result->final_test_accuracy);
  // A checkpoint of another architecture is refused, naming the tensor.
  TrainRun wrong = Train("{epochs: 1, init_from: " + dir + "/model.pb}", "{name: cnn, channels: [8], hidden: 16}",
                    *ds, 0);
  ASSERT_FALSE(wrong.result.ok());
  EXPECT_NE(wrong.result.status().message().find("'conv1.weight'"), std::string::npos)
      << wrong.result.status();
}

TEST(Fp32SchemeTest, ConfigErrorsNameTheKey) {
  auto bad_opt = Scheme("{optimizer: {name: sgdd}}");
  ASSERT_FALSE(bad_opt.ok());
  EXPECT_NE(bad_opt.status().message().find("did you mean 'sgd'"), std::string::npos) << bad_opt.status();
  auto unknown = Scheme("{epoch: 3}");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("epochs"), std::string::npos) << unknown.status();
  EXPECT_FALSE(Scheme("{batch_size: 0}").ok());
  EXPECT_FALSE(Scheme("{schedule: {name: cosine, eta_min: -1}}").ok());
  // run --list: the factory declares its keys against a describing reader.
  for (const PluginDescription& d : Registry<TrainingScheme>::Get().Describe()) {
    std::vector<std::string> keys;
    for (const ParamInfo& p : d.params) keys.push_back(p.key);
    EXPECT_NE(std::find(keys.begin(), keys.end(), "optimizer.lr"), keys.end()) << d.name;
  }
}

}  // namespace
}  // namespace quant
