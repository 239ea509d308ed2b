// The analysis package: the ILP against brute force, an infeasible budget, Hutchinson's
// estimator against exact traces (a quadratic; a linear softmax model through the
// finite-difference Hessian-vector product), the suffix engine against whole-net runs,
// Spearman's correlation, and the section's config errors.
#include "quant/analysis/analysis.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "quant/analysis/bit_allocation.h"
#include "quant/analysis/hessian_trace_metric.h"
#include "quant/analysis/sensitivity.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/registry.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::analysis {
namespace {

using ptq_test::MakeModel;
using ptq_test::Synthetic;
using ptq_test::TrainFp32;

AllocationProblem SmallProblem() {
  // Three layers, bits {2, 4, 8}: sizes n * b / 8 for n = 80, 40, 16; costs fall with bits.
  AllocationProblem p;
  p.layers = {"a", "b", "c"};
  const int n[3] = {80, 40, 16};
  const double cost[3][3] = {{5.0, 1.0, 0.0}, {9.0, 2.0, 0.1}, {3.0, 0.5, 0.0}};
  const int bits[3] = {2, 4, 8};
  for (int k = 0; k < 3; ++k) {
    std::vector<AllocationChoice> c;
    for (int j = 0; j < 3; ++j) c.push_back({bits[j], 8, cost[k][j], n[k] * bits[j] / 8, 0.0});
    p.choices.push_back(c);
  }
  p.fixed_size_bytes = 10;
  return p;
}

TEST(BitAllocationTest, SmallProblemKnownOptimum) {
  AllocationProblem p = SmallProblem();
  // 10 + budget 60 for the layers: b at 8 bits (40 B), a and c at 2 bits (20 + 4 B) = 64 > 60;
  // the optimum is a 4 (40), b 4 (20), c ... = 10 + 40 + 20 + 4 = 74 > 70. By hand, with 70:
  // a2 b8 c8 = 10+20+40+16 = 86 no; a4 b4 c2 = 10+40+20+4 = 74 no; a2 b4 c8 = 10+20+20+16 = 66 cost 5+2+0 = 7;
  // a2 b4 c4 = 62 cost 7.5; a4 b2 c8 = 76 no; a2 b4 c8 is the best under 70.
  p.budget = 70;
  auto a = SolveAllocation(p);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->choice, (std::vector<int>{0, 1, 2}));
  EXPECT_DOUBLE_EQ(a->cost, 7.0);
  EXPECT_EQ(a->size_bytes, 66);
  EXPECT_NE(a->solver.find("GLPK"), std::string::npos);
  // Room for everything at 8 bits: the cheapest choice everywhere.
  p.budget = 1000;
  a = SolveAllocation(p);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->choice, (std::vector<int>{2, 2, 2}));
}

TEST(BitAllocationTest, MatchesBruteForceOnRandomProblems) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 30; ++trial) {
    AllocationProblem p;
    const int layers = 2 + trial % 5;
    for (int k = 0; k < layers; ++k) {
      p.layers.push_back("l" + std::to_string(k));
      std::vector<AllocationChoice> c;
      const int n = 8 * (1 + rng() % 50);
      double cost = std::uniform_real_distribution<double>(1, 10)(rng);
      for (int b : {2, 3, 4, 8}) {
        // Latencies of microseconds: GLPK's absolute tolerances must not decide.
        c.push_back({b, 8, cost, n * b / 8, static_cast<double>(n) * b * 8, n * (1.0 + b) * 1e-9});
        cost *= std::uniform_real_distribution<double>(0.05, 0.9)(rng);
      }
      p.choices.push_back(c);
    }
    p.budget_kind = trial % 3 == 0   ? AllocationProblem::Budget::kSizeBytes
                    : trial % 3 == 1 ? AllocationProblem::Budget::kBops
                                     : AllocationProblem::Budget::kLatency;
    auto resource = [&](const AllocationChoice& c) {
      return p.budget_kind == AllocationProblem::Budget::kSizeBytes ? static_cast<double>(c.size_bytes)
             : p.budget_kind == AllocationProblem::Budget::kBops    ? c.bops
                                                                    : c.latency_seconds;
    };
    double lo = 0, hi = 0;
    for (const auto& c : p.choices) {
      lo += resource(c.front());
      hi += resource(c.back());
    }
    p.budget = lo + (hi - lo) * std::uniform_real_distribution<double>(0.1, 0.9)(rng);
    // Brute force over every combination.
    double best = 1e300;
    std::vector<int> idx(layers, 0);
    while (true) {
      double cost = 0, used = 0;
      for (int k = 0; k < layers; ++k) {
        const AllocationChoice& c = p.choices[k][idx[k]];
        cost += c.cost;
        used += resource(c);
      }
      if (used <= p.budget) best = std::min(best, cost);
      int k = 0;
      while (k < layers && ++idx[k] == 4) idx[k++] = 0;
      if (k == layers) break;
    }
    auto a = SolveAllocation(p);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_NEAR(a->cost, best, 1e-9 * std::max(1.0, best)) << "trial " << trial;
    EXPECT_LE(p.budget_kind == AllocationProblem::Budget::kSizeBytes ? a->size_bytes
              : p.budget_kind == AllocationProblem::Budget::kBops    ? a->bops
                                                                     : a->latency_seconds,
              p.budget);
  }
}

TEST(BitAllocationTest, InfeasibleBudgetNamesTheSmallestFeasibleSize) {
  AllocationProblem p = SmallProblem();
  p.budget = 30;  // smallest: 10 + 20 + 10 + 4 = 44
  auto a = SolveAllocation(p);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(a.status().message());
  EXPECT_NE(msg.find("smallest feasible is 44 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("a W2A8"), std::string::npos) << msg;
  p.budget_kind = AllocationProblem::Budget::kLatency;
  p.fixed_latency_seconds = 1e-5;
  p.budget = 5e-6;
  a = SolveAllocation(p);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("the smallest feasible is 1e-05 seconds"), std::string::npos) << a.status();
  p.budget_kind = AllocationProblem::Budget::kSizeBytes;
  p.budget = 44;  // exactly the smallest: feasible
  p.fixed_latency_seconds = 0;
  EXPECT_TRUE(SolveAllocation(p).ok());
}

TEST(HutchinsonTest, MatchesTheExactTraceOfAQuadraticWithinItsError) {
  // f(x) = x^T H x / 2 with H block diagonal (blocks of 5 and 12), symmetric, indefinite.
  std::mt19937 rng(3);
  const std::vector<int64_t> sizes = {5, 12};
  std::vector<std::vector<std::vector<double>>> h(2);
  std::vector<double> exact(2, 0.0);
  for (int k = 0; k < 2; ++k) {
    const int n = static_cast<int>(sizes[k]);
    h[k].assign(n, std::vector<double>(n));
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j <= i; ++j) h[k][i][j] = h[k][j][i] = std::normal_distribution<double>(0.5, 1.0)(rng);
      exact[k] += h[k][i][i];
    }
  }
  auto apply = [&](const std::vector<std::vector<float>>& v, std::vector<std::vector<double>>* hv) {
    hv->assign(2, {});
    for (int k = 0; k < 2; ++k) {
      (*hv)[k].assign(sizes[k], 0.0);
      for (int i = 0; i < sizes[k]; ++i) {
        for (int j = 0; j < sizes[k]; ++j) (*hv)[k][i] += h[k][i][j] * v[k][j];
      }
    }
    return absl::OkStatus();
  };
  auto t = HutchinsonTrace(sizes, 4000, 11, apply);
  ASSERT_TRUE(t.ok()) << t.status();
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ((*t)[k].samples, 4000);
    EXPECT_GT((*t)[k].stderr_of_mean, 0.0);
    EXPECT_NEAR((*t)[k].mean, exact[k], 4 * (*t)[k].stderr_of_mean) << "block " << k;
    // The stated error is the real one: a sample's spread is sqrt(2 sum_{i != j} H_ij^2).
    double off = 0;
    for (int i = 0; i < sizes[k]; ++i) {
      for (int j = 0; j < sizes[k]; ++j) off += i == j ? 0 : h[k][i][j] * h[k][i][j];
    }
    EXPECT_NEAR((*t)[k].stddev, std::sqrt(2 * off), 0.1 * std::sqrt(2 * off));
  }
  EXPECT_FALSE(HutchinsonTrace(sizes, 1, 0, apply).ok());  // no error estimate from one sample
}

// A one-layer linear softmax classifier: its cross-entropy Hessian w.r.t. W has the exact
// trace (1/N) sum_i ||x_i||^2 sum_c p_ic (1 - p_ic).
TEST(HessianTraceMetricTest, LinearSoftmaxModelMatchesTheExactTrace) {
  auto ds = Synthetic(1, 4, 600, 100);
  const int classes = ds->num_classes();
  auto model =
      MakeModel("{name: sequential, layers: [flatten, {type: linear, out_features: " + std::to_string(classes) + "}]}",
                {1, 4, 4}, classes);
  TrainFp32(model.get(), *ds, 1);
  SensitivityContext ctx;
  ctx.model = model.get();
  auto net = ptq::ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  ctx.net = *net;
  ctx.bits = {8};
  ctx.at_bits[8].weights = {
      std::vector<float>(ctx.net.model.tensors(ctx.net.weighted[0].weight_tensor).float_data().begin(),
                         ctx.net.model.tensors(ctx.net.weighted[0].weight_tensor).float_data().end())};
  const int64_t n = 256;
  ctx.images = n;
  ctx.nchw = Tensor({n, 1, 4, 4});
  std::copy(ds->train().images.data(), ds->train().images.data() + n * 16, ctx.nchw.data());
  ctx.labels.assign(ds->train().labels.begin(), ds->train().labels.begin() + n);
  ctx.batch_size = 100;
  // The exact trace from the model's own probabilities.
  model->set_training(false);
  const Tensor& logits = model->Forward(ctx.nchw);
  double exact = 0;
  for (int64_t i = 0; i < n; ++i) {
    double mx = -1e30, z = 0, sq = 0, pp = 0;
    const float* row = logits.data() + i * classes;
    for (int c = 0; c < classes; ++c) mx = std::max(mx, static_cast<double>(row[c]));
    for (int c = 0; c < classes; ++c) z += std::exp(row[c] - mx);
    for (int c = 0; c < classes; ++c) {
      const double p = std::exp(row[c] - mx) / z;
      pp += p * (1 - p);
    }
    for (int j = 0; j < 16; ++j) sq += static_cast<double>(ctx.nchw.data()[i * 16 + j]) * ctx.nchw.data()[i * 16 + j];
    exact += sq * pp / n;
  }
  ParamReader p(YAML::Load("{samples: 300, images: 256, step: 0.01}"), "t.yaml", "analysis.metrics[0]");
  auto metric = HessianTraceMetric::Create(p);
  ASSERT_TRUE(metric.ok()) << metric.status();
  SensitivityTable table;
  table.layers = {ctx.net.weighted[0].name};
  ASSERT_TRUE((*metric)->Compute(ctx, &table).ok());
  const std::string layer = ctx.net.weighted[0].name;
  const double trace = *table.Find(layer, 0, "", "hessian_trace");
  const double err = *table.Find(layer, 0, "", "hessian_trace_stderr");
  EXPECT_GT(err, 0);
  EXPECT_NEAR(trace, exact, 4 * err + 1e-3 * exact) << "exact " << exact;
  EXPECT_LT(err, 0.1 * exact);
  // Omega at 8 bits with the float weights as "quantized": no perturbation, zero.
  EXPECT_DOUBLE_EQ(*table.Find(layer, 8, "weights", "hawq_omega"), 0.0);
}

class SensitivityEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ds_ = Synthetic(1, 8, 1500, 200);
    model_ = MakeModel(
        "{name: sequential, layers: [{type: conv2d, out_channels: 6, kernel: 3, padding: 1}, relu, "
        "{type: maxpool2d, kernel: 2}, {type: conv2d, out_channels: 8, kernel: 3, padding: 1}, relu, flatten, "
        "{type: linear, out_features: " +
            std::to_string(ds_->num_classes()) + "}]}",
        {1, 8, 8}, ds_->num_classes());
    TrainFp32(model_.get(), *ds_, 2);
    quant_ = YAML::Load(
        "{weights: {bits: 8, symmetric: true, granularity: per_channel}, "
        "activations: {bits: 8, observer: histogram, calibration: percentile, percentile: 99.99}}");
    PrepareOptions o;
    o.bits = {3, 8};
    o.images = 300;
    o.calibration_images = 256;
    o.batch_size = 128;
    auto ctx = PrepareSensitivity(*model_, quant_, "q.yaml", *ds_, o);
    ASSERT_TRUE(ctx.ok()) << ctx.status();
    ctx_ = std::move(ctx).value();
  }
  // The loss of the whole net run from scratch with layer k's weights at `bits` (the rest float).
  double DirectLoss(int k, int bits, bool quantize_output) {
    backends::QuantizedModel m = ctx_.net.model;
    const ptq::WeightedLayer& w = ctx_.net.weighted[k];
    auto* d = m.mutable_tensors(w.weight_tensor)->mutable_float_data();
    std::copy(ctx_.at_bits[bits].weights[k].begin(), ctx_.at_bits[bits].weights[k].end(), d->mutable_data());
    const QParams& g = ctx_.at_bits[bits].grids.at(m.ops(w.index).outputs(0));
    backends::floatk::RunOptions run;
    run.after = [&](int op, float* x, int64_t count) {
      if (quantize_output && op == w.index) ptq::FakeQuantizeOnGrid(g, x, count);
      return absl::OkStatus();
    };
    std::vector<float> logits;
    EXPECT_TRUE(backends::floatk::Forward(m, ctx_.nhwc.data(), ctx_.images, &logits, run).ok());
    double loss = 0;
    const int classes = ds_->num_classes();
    for (int64_t i = 0; i < ctx_.images; ++i) {
      double mx = -1e30, z = 0;
      const float* row = logits.data() + i * classes;
      for (int c = 0; c < classes; ++c) mx = std::max(mx, static_cast<double>(row[c]));
      for (int c = 0; c < classes; ++c) z += std::exp(row[c] - mx);
      loss += std::log(z) - (row[ctx_.labels[i]] - mx);
    }
    return loss / ctx_.images;
  }
  std::unique_ptr<Dataset> ds_;
  std::unique_ptr<nn::Model> model_;
  YAML::Node quant_;
  SensitivityContext ctx_;
};

TEST_F(SensitivityEngineTest, SuffixRunsEqualWholeNetRuns) {
  ASSERT_EQ(ctx_.net.weighted.size(), 3u);
  std::vector<LayerChange> changes = {{0, true, false}, {2, true, true}, {1, true, true}, {0, true, true}};
  Score base;
  std::vector<Score> scores;
  ASSERT_TRUE(EvaluateChanges(ctx_, 3, BaseState{}, changes, &base, &scores).ok());
  EXPECT_NEAR(base.loss, DirectLoss(0, 8, false), 0.05);  // 8-bit weights ~ float
  for (size_t i = 0; i < changes.size(); ++i) {
    // Equal up to float rounding (the whole-net run takes every image in one batch).
    EXPECT_NEAR(scores[i].loss, DirectLoss(changes[i].layer, 3, changes[i].quantize_output), 1e-6) << "change " << i;
  }
  // 3-bit weights hurt more than 8-bit ones.
  std::vector<Score> at8;
  Score base8;
  ASSERT_TRUE(EvaluateChanges(ctx_, 8, BaseState{}, changes, &base8, &at8).ok());
  EXPECT_DOUBLE_EQ(base8.loss, base.loss);  // the float net either way
  EXPECT_GT(scores[3].loss - base.loss, at8[3].loss - base.loss);
}

TEST_F(SensitivityEngineTest, MetricsFillTheTable) {
  SensitivityTable table;
  for (const ptq::WeightedLayer& w : ctx_.net.weighted) table.layers.push_back(w.name);
  table.bits = ctx_.bits;
  for (const char* name : {"one_layer", "all_but_one", "sqnr"}) {
    ParamReader p(YAML::Load(std::string("{name: ") + name + "}"), "t.yaml", "m");
    auto m = Registry<SensitivityMetric>::Get().CreateFrom(p, "name", "", "metric");
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE((*m)->Compute(ctx_, &table).ok()) << name;
  }
  for (const std::string& layer : table.layers) {
    for (const char* t : {"weights", "activations", "both"}) {
      for (int b : {3, 8}) {
        EXPECT_TRUE(table.Find(layer, b, t, "one_layer_loss_increase").has_value());
        EXPECT_TRUE(table.Find(layer, b, t, "all_but_one_loss_decrease").has_value());
        EXPECT_TRUE(table.Find(layer, b, t, "output_sqnr_db").has_value());
      }
    }
    // More bits, higher SQNR: about 6 dB a bit for the weights.
    const double w3 = *table.Find(layer, 3, "weights", "weight_sqnr_db");
    const double w8 = *table.Find(layer, 8, "weights", "weight_sqnr_db");
    EXPECT_GT(w8 - w3, 20.0) << layer;
    EXPECT_LT(w8 - w3, 40.0) << layer;
  }
  EXPECT_NE(table.Markdown().find("| one_layer_loss_increase (weights) |"), std::string::npos);
  // A metric limited to one target measures only that one.
  SensitivityTable weights_only;
  ParamReader p(YAML::Load("{name: one_layer, targets: [weights]}"), "t.yaml", "m");
  auto m = Registry<SensitivityMetric>::Get().CreateFrom(p, "name", "", "metric");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE((*m)->Compute(ctx_, &weights_only).ok());
  EXPECT_EQ(weights_only.entries.size(), 3u * 2 * 2);  // layers x bits x (drop, increase)
  for (const SensitivityEntry& e : weights_only.entries) {
    EXPECT_EQ(e.target, "weights");
    EXPECT_DOUBLE_EQ(e.value, *table.Find(e.layer, e.bits, "weights", e.metric));  // the same runs
  }
  EXPECT_GT(table.scalars.at("float_accuracy"), 0.5);
}

// analysis.passes: the weights at each bit width as GPTQ rounds them; its output error is
// lower than nearest rounding's, layer by layer.
TEST_F(SensitivityEngineTest, PassesRoundTheWeightsAsTheDeploymentWill) {
  auto gptq = ptq_test::Pass("{name: gptq}");
  PrepareOptions o;
  o.bits = {3};
  o.images = 300;
  o.calibration_images = 256;
  o.batch_size = 128;
  o.passes = {gptq.get()};
  auto with = PrepareSensitivity(*model_, quant_, "q.yaml", *ds_, o);
  ASSERT_TRUE(with.ok()) << with.status();
  auto sqnr = [](const SensitivityContext& c) {
    SensitivityTable t;
    ParamReader p(YAML::Load("{name: sqnr, targets: [weights]}"), "t.yaml", "m");
    auto m = Registry<SensitivityMetric>::Get().CreateFrom(p, "name", "", "metric");
    EXPECT_TRUE(m.ok()) << m.status();
    EXPECT_TRUE((*m)->Compute(c, &t).ok());
    return t;
  };
  const SensitivityTable nearest = sqnr(ctx_), rounded = sqnr(*with);
  for (const ptq::WeightedLayer& w : ctx_.net.weighted) {
    EXPECT_NE(with->at_bits.at(3).weights.size(), 0u);
    const double a = *nearest.Find(w.name, 3, "weights", "output_sqnr_db");
    const double b = *rounded.Find(w.name, 3, "weights", "output_sqnr_db");
    EXPECT_GT(b, a) << w.name;
  }
  EXPECT_NE(with->at_bits.at(3).weights[1], ctx_.at_bits.at(3).weights[1]);
}

TEST(SpearmanTest, RanksWithTies) {
  EXPECT_DOUBLE_EQ(SpearmanCorrelation({1, 2, 3, 4}, {10, 20, 30, 40}), 1.0);
  EXPECT_DOUBLE_EQ(SpearmanCorrelation({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
  EXPECT_NEAR(SpearmanCorrelation({1, 2, 2, 3}, {1, 2, 3, 4}), 0.9486832980505138, 1e-12);
  EXPECT_TRUE(std::isnan(SpearmanCorrelation({1, 1, 1}, {1, 2, 3})));
}

absl::Status ReadError(const std::string& yaml) {
  ParamReader r(YAML::Load(yaml), "c.yaml", "analysis");
  auto spec = ReadAnalysis(r);
  if (!spec.ok()) return spec.status();
  return r.Finish();
}

TEST(AnalysisSpecTest, BadSectionsAreClearErrors) {
  EXPECT_TRUE(ReadError("{bits: [2, 4, 8], allocate: {budget: {size_bits: 4}}}").ok());
  auto expect = [](const std::string& yaml, const std::string& text) {
    absl::Status s = ReadError(yaml);
    ASSERT_FALSE(s.ok()) << yaml;
    EXPECT_NE(s.message().find(text), std::string::npos) << s;
  };
  expect("{bits: [1, 4]}", "outside 2..8");
  expect("{metrics: [one_layr]}", "one_layer");
  expect("{allocate: {budget: {size_bits: 4, bops_bits: 4}}}", "exactly one of");
  expect("{allocate: {budget: {}}}", "exactly one of");
  expect("{bits: [4, 8], allocate: {weights: [2, 4], budget: {size_bits: 4}}}",
         "candidate 2 bits is not in analysis.bits");
  expect("{allocate: {objective: hawq_omega, budget: {size_bits: 4}}}",
         "'hessian_trace', which analysis.metrics does not list");
  expect("{metrics: [hessian_trace], allocate: {objective: hawq_omega, activations: [4, 8], budget: {size_bits: 4}}}",
         "measures weights only");
  expect("{allocate: {activations: [4, 8], budget: {bops_bits: 4}}}", "one activation bit width");
  expect("{allocate: {budget: {size_bits: 4}, objectiv: x}}", "unknown key 'objectiv'");
  expect("{metrics: [{name: one_layer, targets: [weight]}]}", "'weight' is not one of weights, activations, both");
  expect("{metrics: [{name: one_layer, targets: [activations]}], allocate: {budget: {size_bits: 4}}}",
         "with the weights target; one_layer (activations) does not measure it");
  expect("{metrics: [{name: one_layer, targets: [weights]}], allocate: {activations: [4, 8], budget: {size_bits: 4}}}",
         "with the activations target");
  EXPECT_TRUE(ReadError("{metrics: [{name: one_layer, targets: [weights]}], allocate: {budget: {size_bits: 4}}}").ok());
}

TEST(AnalysisSpecTest, QuantSectionAtBitsKeepsEverythingButBits) {
  YAML::Node q = YAML::Load(
      "{weights: {bits: 8, symmetric: true}, activations: {bits: 8}, overrides: [{match: fc, weights: {bits: 4, "
      "granularity: per_tensor}}, {match: x, activations: none}]}");
  YAML::Node at = QuantSectionAtBits(q, 3);
  EXPECT_EQ(at["weights"]["bits"].as<int>(), 3);
  EXPECT_TRUE(at["weights"]["symmetric"].as<bool>());
  EXPECT_EQ(at["activations"]["bits"].as<int>(), 3);
  EXPECT_FALSE(at["overrides"][0]["weights"]["bits"].IsDefined());
  EXPECT_EQ(at["overrides"][0]["weights"]["granularity"].as<std::string>(), "per_tensor");
  EXPECT_EQ(at["overrides"][1]["activations"].as<std::string>(), "none");
  EXPECT_EQ(q["weights"]["bits"].as<int>(), 8);  // the original untouched
  YAML::Node with = QuantWithAllocation(q, {{"s1.conv", 2, 8, 0, 0, 0, 0}}, false);
  ASSERT_EQ(with["overrides"].size(), 3u);
  EXPECT_EQ(with["overrides"][2]["match"].as<std::string>(), "s1\\.conv");
  EXPECT_EQ(with["overrides"][2]["weights"]["bits"].as<int>(), 2);
  EXPECT_FALSE(with["overrides"][2]["activations"].IsDefined());
}

}  // namespace
}  // namespace quant::analysis
