// The qat scheme: registration, where quantizers go (groups, overrides in
// regex order), observer freezing, BN folding and freezing in a cnn_bn, the
// learned step sizes trained by the optimizer and kept in checkpoints,
// init_from with float and QAT checkpoints, the float pretrain stage, and
// configuration errors (bits: 1 affine).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/qat_scheme.h"
#include "tests/training/scheme_test_util.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

struct TrainRun {
  absl::StatusOr<TrainResult> result = absl::UnknownError("not run");
  std::string log;
};

TrainRun Train(const std::string& train, const QuantConfig* quant, nn::Model& model, const Dataset& ds,
          const std::string& run_dir = "") {
  TrainRun run;
  auto scheme = Scheme(train);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  if (!scheme.ok()) return run;
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = &model, .seed = 0, .threads = 1, .run_dir = run_dir,
                   .name = "t", .quant = quant, .progress = TrainContext::Progress::kSummary,
                   .log = log};
  run.result = (*scheme)->Train(ctx);
  std::rewind(log);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), log)) > 0) run.log.append(buf, n);
  std::fclose(log);
  return run;
}

const FakeQuantHooks::Hook* Find(const FakeQuantHooks& h, const std::string& layer, bool weights) {
  for (const auto& x : h.hooks) {
    if (x.layer_name == layer && x.weights == weights) return &x;
  }
  return nullptr;
}

TEST(QatSchemeTest, IsRegisteredAndNeedsTheQuantSection) {
  EXPECT_TRUE(Registry<TrainingScheme>::Get().Contains("qat"));
  auto s = Scheme("{scheme: qat, epochs: 1}");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE((*s)->uses_quant_config());
  auto ds = Synthetic();
  auto m = Model("{name: mlp, hidden: [16]}", *ds);
  TrainRun r = Train("{scheme: qat, epochs: 1}", nullptr, *m, *ds);
  ASSERT_FALSE(r.result.ok());
  EXPECT_NE(r.result.status().message().find("quant:"), std::string::npos);
}

TEST(QatSchemeTest, QuantizersGoOnWeightsAndGroupOutputsWithOverridesInOrder) {
  auto ds = Synthetic();
  auto m = Model("{name: mlp, hidden: [32, 16]}", *ds);  // flatten1 fc1 relu1 fc2 relu2 fc3
  auto c = Config(R"({
      weights: {bits: 4, symmetric: true},
      activations: {bits: 4},
      overrides: [
        {match: "fc1|fc3", weights: {bits: 8}, activations: {bits: 8}},
        {match: "fc3", weights: {bits: 6}, activations: none},
        {match: "relu.", activations: {bits: 5}},
        {match: "relu1", activations: {bits: 7}}]})");
  ASSERT_TRUE(c.ok()) << c.status();
  auto hooks = InsertFakeQuant(*m, **c);
  ASSERT_TRUE(hooks.ok()) << hooks.status();
  auto bits = [&](const std::string& layer, bool weights) {
    const FakeQuantHooks::Hook* h = Find(*hooks, layer, weights);
    return h ? h->quantizer->quantizer().spec().bits : 0;
  };
  EXPECT_EQ(bits("fc1", true), 8);  // first override
  EXPECT_EQ(bits("fc2", true), 4);  // base
  EXPECT_EQ(bits("fc3", true), 6);  // the later override wins
  EXPECT_EQ(bits("relu1", false), 7);  // base 4 -> 5 -> 7, in order
  EXPECT_EQ(bits("relu2", false), 5);
  EXPECT_EQ(bits("fc3", false), 0);    // activations: none
  // Inside groups and weightless layers: nothing.
  EXPECT_EQ(Find(*hooks, "fc1", false), nullptr);
  EXPECT_EQ(Find(*hooks, "flatten1", false), nullptr);
  EXPECT_EQ(hooks->hooks.size(), 5u);
  EXPECT_NE(m->layer(1).weight_transform(), nullptr);
  EXPECT_NE(m->layer(2).output_transform(), nullptr);
  EXPECT_EQ(m->layer(1).output_transform(), nullptr);
  // The weight quantizers saw their weights already.
  EXPECT_TRUE(Find(*hooks, "fc2", true)->quantizer->quantizer().calibrated());
  RemoveFakeQuant(*m);
  EXPECT_EQ(m->layer(1).weight_transform(), nullptr);
}

// A graph: conv -> bn -> relu fans out to a residual add (add -> relu is one
// group) and a sigmoid branch; QAT places output quantizers at group outputs
// only, folds each BN into its conv, and gives the sigmoid PyTorch's fixed
// qparams (1/256, 0) while an lsq spec keeps its own.
TEST(QatSchemeTest, GraphGroupsFromPatternsAndFixedQParamsForSigmoid) {
  auto ds = Synthetic();
  const char* graph = R"({name: graph, nodes: [
      {name: c1, op: conv2d, inputs: [input], out_channels: 4, padding: 1},
      {name: b1, op: batchnorm2d}, {name: r1, op: relu},
      {name: c2, op: conv2d, out_channels: 4, padding: 1}, {name: b2, op: batchnorm2d},
      {name: sum, op: add, inputs: [b2, r1]}, {name: r2, op: relu},
      {name: gate, op: sigmoid, inputs: [r1]},
      {name: cat, op: concat, inputs: [r2, gate]},
      {name: gap, op: global_avg_pool}, {name: fc, op: linear}]})";
  const std::string graph_yaml = std::string(graph).replace(std::string(graph).find("{name: fc, op: linear}"), 22,
      "{name: fc, op: linear, out_features: " + std::to_string(ds->num_classes()) + "}");
  graph = graph_yaml.c_str();
  auto m = Model(graph, *ds);
  auto c = Config("{weights: {bits: 8, symmetric: true}, activations: {bits: 8, observer: moving_average_minmax}}");
  ASSERT_TRUE(c.ok()) << c.status();
  auto hooks = InsertFakeQuant(*m, **c);
  ASSERT_TRUE(hooks.ok()) << hooks.status();
  for (const char* inside : {"c1", "b1", "c2", "sum", "gap"}) {
    EXPECT_EQ(Find(*hooks, inside, false), nullptr) << inside;
  }
  for (const char* out : {"r1", "b2", "r2", "gate", "cat", "fc"}) EXPECT_NE(Find(*hooks, out, false), nullptr) << out;
  EXPECT_NE(Find(*hooks, "c1", true)->folded_bn, nullptr);
  EXPECT_EQ(Find(*hooks, "c1", true)->folded_bn->name(), "b1");
  EXPECT_EQ(Find(*hooks, "c2", true)->folded_bn->name(), "b2");
  Quantizer& gate = Find(*hooks, "gate", false)->quantizer->quantizer();
  ASSERT_TRUE(gate.ComputeQParams().ok());
  EXPECT_EQ(gate.qparams().scale[0], 1.0f / 256.0f);
  EXPECT_EQ(gate.qparams().zero_point[0], 0);
  EXPECT_EQ(gate.qparams().quant_min, 0);
  EXPECT_EQ(gate.qparams().quant_max, 255);
  // One training step runs through the graph with every hook in place.
  nn::Shape xs = {2};
  const nn::Shape sample = ds->sample_shape();
  xs.insert(xs.end(), sample.begin(), sample.end());
  Tensor x(xs);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 17) / 17.0f;
  const Tensor& y = m->Forward(x);
  Tensor dy(y.shape());
  dy.Fill(0.1f);
  m->Backward(x, dy);
  EXPECT_NE(m->FindLayer("c1")->parameters()[0]->grad[0], 0.0f);

  // An override naming an observer for the sigmoid, or 4-bit activations, keep the user's spec.
  auto m3 = Model(graph, *ds);
  auto chosen = Config(R"({weights: {bits: 8}, activations: {bits: 8, observer: moving_average_minmax},
      overrides: [{match: gate, activations: {observer: histogram}}]})");
  ASSERT_TRUE(chosen.ok()) << chosen.status();
  auto hooks3 = InsertFakeQuant(*m3, **chosen);
  ASSERT_TRUE(hooks3.ok()) << hooks3.status();
  EXPECT_NE(Find(*hooks3, "gate", false)->quantizer->Describe().find("histogram"), std::string::npos)
      << Find(*hooks3, "gate", false)->quantizer->Describe();
  auto m4 = Model(graph, *ds);
  auto four = Config("{weights: {bits: 8}, activations: {bits: 4}}");
  ASSERT_TRUE(four.ok()) << four.status();
  auto hooks4 = InsertFakeQuant(*m4, **four);
  ASSERT_TRUE(hooks4.ok()) << hooks4.status();
  EXPECT_EQ(Find(*hooks4, "gate", false)->quantizer->quantizer().spec().bits, 4);
  // A learned quantizer is not replaced by the fixed qparams.
  auto m2 = Model(graph, *ds);
  auto lsq = Config("{weights: {bits: 8}, activations: {quantizer: lsq, bits: 8}}");
  ASSERT_TRUE(lsq.ok()) << lsq.status();
  auto hooks2 = InsertFakeQuant(*m2, **lsq);
  ASSERT_TRUE(hooks2.ok()) << hooks2.status();
  EXPECT_NE(Find(*hooks2, "gate", false)->quantizer->Describe().find("lsq"), std::string::npos)
      << Find(*hooks2, "gate", false)->quantizer->Describe();
}

TEST(QatSchemeTest, CnnBnGroupsAndFolding) {
  auto ds = Synthetic();
  auto m = Model("{name: cnn_bn, channels: [4, 8], hidden: 16}", *ds);
  auto c = Config("{weights: {bits: 8, symmetric: true, granularity: per_channel}, activations: {bits: 8}}");
  ASSERT_TRUE(c.ok()) << c.status();
  auto hooks = InsertFakeQuant(*m, **c);
  ASSERT_TRUE(hooks.ok()) << hooks.status();
  // conv1 bn1 relu1 pool1 conv2 bn2 relu2 pool2 flatten1 fc1 relu3 fc2
  ASSERT_NE(Find(*hooks, "conv1", true), nullptr);
  EXPECT_NE(Find(*hooks, "conv1", true)->folded_bn, nullptr);
  EXPECT_EQ(Find(*hooks, "fc1", true)->folded_bn, nullptr);
  EXPECT_NE(Find(*hooks, "relu1", false), nullptr);
  EXPECT_EQ(Find(*hooks, "bn1", false), nullptr);
  EXPECT_EQ(Find(*hooks, "conv1", false), nullptr);
  EXPECT_EQ(Find(*hooks, "pool1", false), nullptr);
  EXPECT_NE(Find(*hooks, "fc2", false), nullptr);
  RemoveFakeQuant(*m);
  auto unfolded = InsertFakeQuant(*m, **c, /*fold_bn=*/false);
  ASSERT_TRUE(unfolded.ok());
  EXPECT_EQ(Find(*unfolded, "conv1", true)->folded_bn, nullptr);
}

TEST(QatSchemeTest, FrozenObserversStopUpdatingQParams) {
  auto ds = Synthetic();
  auto m = Model("{name: mlp, hidden: [16]}", *ds);
  auto c = Config("{activations: {bits: 8}}");
  ASSERT_TRUE(c.ok());
  auto hooks = InsertFakeQuant(*m, **c);
  ASSERT_TRUE(hooks.ok());
  Quantizer& q = Find(*hooks, "relu1", false)->quantizer->quantizer();
  Tensor x(std::vector<int64_t>{4, 1, 8, 8});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 0.01f * (i % 17);
  m->set_training(true);
  m->Forward(x);
  const float s1 = q.qparams().scale[0];
  for (int64_t i = 0; i < x.numel(); ++i) x[i] *= 10.0f;
  m->Forward(x);
  const float s2 = q.qparams().scale[0];
  EXPECT_GT(s2, s1);  // live observer: the range grew
  hooks->FreezeObservers(true);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] *= 10.0f;
  m->Forward(x);
  EXPECT_EQ(q.qparams().scale[0], s2);
  // Eval mode never updates either.
  hooks->FreezeObservers(false);
  m->set_training(false);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] *= 10.0f;
  m->Forward(x);
  EXPECT_EQ(q.qparams().scale[0], s2);
  m->set_training(true);
  m->Forward(x);
  EXPECT_GT(q.qparams().scale[0], s2);
}

TEST(QatSchemeTest, FreezingByStepAndEpochInTraining) {
  auto ds = Synthetic();
  auto c = Config("{weights: {bits: 8, symmetric: true}, activations: {bits: 8}}");
  ASSERT_TRUE(c.ok());
  // 600 samples / 100 = 6 steps per epoch.
  for (const char* freeze : {"freeze_observers_after_step: 0", "freeze_observers_after_epoch: 0"}) {
    auto m = Model("{name: mlp, hidden: [16]}", *ds);
    // Qparams after the insertion's calibration (weights) stay as they are.
    auto probe = InsertFakeQuant(*m, **c);
    ASSERT_TRUE(probe.ok());
    const float before = Find(*probe, "fc1", true)->quantizer->quantizer().qparams().scale[0];
    RemoveFakeQuant(*m);
    TrainRun r = Train(std::string("{scheme: qat, epochs: 2, batch_size: 100, optimizer: {name: sgd, lr: 0.1}, ") +
                      freeze + "}",
                  c->get(), *m, *ds);
    ASSERT_TRUE(r.result.ok()) << r.result.status();
    EXPECT_NE(r.log.find("observers frozen"), std::string::npos) << r.log;
    auto* t = dynamic_cast<QuantizerTransform*>(m->layer(1).weight_transform());
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(t->observer_frozen());
    EXPECT_EQ(t->quantizer().qparams().scale[0], before) << freeze;
  }
  // Never frozen: the weights moved, so did their range.
  auto m = Model("{name: mlp, hidden: [16]}", *ds);
  TrainRun r = Train("{scheme: qat, epochs: 2, batch_size: 100, optimizer: {name: sgd, lr: 0.1}}", c->get(), *m, *ds);
  ASSERT_TRUE(r.result.ok());
  auto* t = dynamic_cast<QuantizerTransform*>(m->layer(1).weight_transform());
  EXPECT_FALSE(t->observer_frozen());
}

TEST(QatSchemeTest, BatchNormStatisticsFreeze) {
  auto ds = Synthetic();
  auto c = Config("{weights: {bits: 8, symmetric: true, granularity: per_channel}, activations: {bits: 8}}");
  ASSERT_TRUE(c.ok());
  auto m = Model("{name: cnn_bn, channels: [4, 8], hidden: 16}", *ds);
  auto* bn = dynamic_cast<nn::BatchNorm*>(m->FindLayer("bn1"));
  ASSERT_NE(bn, nullptr);
  // Epoch 1 with live statistics, epoch 2 frozen: record after each by running 1 then 2 epochs.
  TrainRun r1 = Train("{scheme: qat, epochs: 1, batch_size: 100, optimizer: {name: sgd, lr: 0.05}, "
                 "freeze_bn_after_epoch: 0}",
                 c->get(), *m, *ds);
  ASSERT_TRUE(r1.result.ok()) << r1.result.status();
  EXPECT_NE(r1.log.find("BatchNorm statistics frozen"), std::string::npos) << r1.log;
  // Frozen from the start: running statistics never moved from the init (0, 1).
  for (int c2 = 0; c2 < 4; ++c2) {
    EXPECT_EQ(bn->running_mean()[c2], 0.0f);
    EXPECT_EQ(bn->running_var()[c2], 1.0f);
  }
  auto m2 = Model("{name: cnn_bn, channels: [4, 8], hidden: 16}", *ds);
  auto* bn2 = dynamic_cast<nn::BatchNorm*>(m2->FindLayer("bn1"));
  TrainRun r2 = Train("{scheme: qat, epochs: 3, batch_size: 50, optimizer: {name: adamw, lr: 0.01}}",
                      c->get(), *m2, *ds);
  ASSERT_TRUE(r2.result.ok());
  EXPECT_NE(bn2->running_var()[0], 1.0f);
  EXPECT_GT(r2.result->final_test_accuracy, 0.5);
}

TEST(QatSchemeTest, LsqStepSizesAreTrainedAndCheckpointed) {
  auto ds = Synthetic();
  auto c = Config("{weights: {quantizer: lsq, bits: 4}, activations: {quantizer: lsq, bits: 4}}");
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string dir = TempDir("qat_lsq");
  auto m = Model("{name: mlp, hidden: [32, 16]}", *ds);
  TrainRun r = Train("{scheme: qat, epochs: 3, batch_size: 50, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}, "
                "pretrain: {epochs: 2, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}}",
                c->get(), *m, *ds, dir);
  ASSERT_TRUE(r.result.ok()) << r.result.status();
  ASSERT_EQ(r.result->epochs.size(), 5u);  // 2 float + 3 QAT
  EXPECT_EQ(r.result->epochs[4].epoch, 5);
  EXPECT_GT(r.result->final_test_accuracy, 0.8);
  EXPECT_NE(r.log.find("fp32"), std::string::npos);
  // The step sizes are model parameters, moved away from their init.
  bool found = false;
  for (auto& [name, p] : m->NamedParameters()) {
    if (name == "fc2.weight_hook.step_size") {
      found = true;
      EXPECT_GT(p->value[0], 0.0f);
    }
  }
  EXPECT_TRUE(found);
  auto* t = dynamic_cast<QuantizerTransform*>(m->FindLayer("relu1")->output_transform());
  ASSERT_NE(t, nullptr);
  const float trained_step = t->quantizer().parameters()[0]->value[0];
  // Resume from the QAT checkpoint: the steps come back (not re-initialised).
  auto m2 = Model("{name: mlp, hidden: [32, 16]}", *ds);
  TrainRun r2 = Train("{scheme: qat, epochs: 0, init_from: " + r.result->checkpoint_path + "}", c->get(), *m2, *ds);
  ASSERT_TRUE(r2.result.ok()) << r2.result.status();
  auto* t2 = dynamic_cast<QuantizerTransform*>(m2->FindLayer("relu1")->output_transform());
  EXPECT_EQ(t2->quantizer().parameters()[0]->value[0], trained_step);
  EXPECT_NEAR(r2.result->final_test_accuracy, r.result->final_test_accuracy, 1e-12);
}

TEST(QatSchemeTest, StartsFromAFloatCheckpoint) {
  auto ds = Synthetic();
  const std::string dir = TempDir("qat_float");
  auto f = Model("{name: mlp, hidden: [16]}", *ds, 7);
  ASSERT_TRUE(nn::SaveCheckpoint(*f, dir + ".pb").ok());
  auto c = Config("{weights: {bits: 8, symmetric: true}}");
  ASSERT_TRUE(c.ok());
  auto m = Model("{name: mlp, hidden: [16]}", *ds, 1);
  TrainRun r = Train("{scheme: qat, epochs: 0, init_from: " + dir + ".pb}", c->get(), *m, *ds);
  ASSERT_TRUE(r.result.ok()) << r.result.status();
  EXPECT_NE(r.log.find("starting from"), std::string::npos);
  EXPECT_EQ(m->FindLayer("fc1")->parameters()[0]->value[3], f->FindLayer("fc1")->parameters()[0]->value[3]);
  TrainRun bad = Train("{scheme: qat, epochs: 0, init_from: /nonexistent/model.pb}", c->get(), *m, *ds);
  EXPECT_FALSE(bad.result.ok());
}

TEST(QatSchemeTest, ConfigErrors) {
  auto one = Config("{weights: {quantizer: affine, bits: 1}}");
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("binary"), std::string::npos) << one.status();
  EXPECT_NE(one.status().message().find("t.yaml:1:"), std::string::npos) << one.status();
  auto both = Scheme("{scheme: qat, init_from: a.pb, pretrain: {epochs: 1}}");
  EXPECT_FALSE(both.ok());
  auto typo = Scheme("{scheme: qat, freeze_observer_after_epoch: 1}");
  EXPECT_FALSE(typo.ok());
  // lsq per_channel on activations is refused, naming the layer.
  auto ds = Synthetic();
  auto m = Model("{name: mlp, hidden: [16]}", *ds);
  auto c = Config("{activations: {quantizer: lsq, granularity: per_channel}}");
  ASSERT_TRUE(c.ok());
  auto h = InsertFakeQuant(*m, **c);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("relu1"), std::string::npos) << h.status();
  // lsq weights on a layer without weights.
  auto lw = Config("{weights: {bits: 8}, overrides: [{match: relu1, weights: {quantizer: lsq}}]}");
  ASSERT_TRUE(lw.ok()) << lw.status();
  auto h2 = InsertFakeQuant(*m, **lw);
  ASSERT_FALSE(h2.ok());
  EXPECT_NE(h2.status().message().find("relu1, which has no weights"), std::string::npos) << h2.status();
  EXPECT_NE(h2.status().message().find("fc1, fc2"), std::string::npos) << h2.status();
  // A broad regex that also covers weightless layers is fine.
  auto broad = Config("{weights: {bits: 8}, overrides: [{match: \".*\", weights: {bits: 6}}]}");
  ASSERT_TRUE(broad.ok()) << broad.status();
  EXPECT_TRUE(InsertFakeQuant(*m, **broad).ok());
}

}  // namespace
}  // namespace quant
