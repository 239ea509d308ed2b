// PTQ passes (quant/ptq/ptq_pass.h): cle, bias_absorption, bias_correction on small
// graphs trained on synthetic data.
#include <Eigen/Dense>
#include <cmath>
#include <memory>
#include <random>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/batch_norm.h"
#include "quant/ptq/adaround_pass.h"
#include "quant/ptq/bias_correction_pass.h"
#include "quant/ptq/converter.h"
#include "quant/ptq/gptq_pass.h"
#include "quant/ptq/ptq_pass.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::ptq {
namespace {

using ptq_test::Config;
using ptq_test::Pass;

// stem conv -> BN -> ReLU6 -> depthwise -> BN -> ReLU -> pointwise -> ReLU -> max pool
// -> c2 -> ReLU (read by c3 and by an add) -> c3 -> add -> global average pool -> fc.
constexpr char kGraph[] =
    "{name: graph, nodes: ["
    "{name: stem, op: conv2d, inputs: [input], out_channels: 8, padding: 1}, {name: stem_bn, op: batchnorm2d},"
    " {name: stem_relu, op: relu6},"
    "{name: dw, op: conv2d, out_channels: 8, groups: 8, padding: 1}, {name: dw_bn, op: batchnorm2d},"
    " {name: dw_relu, op: relu},"
    "{name: pw, op: conv2d, out_channels: 8}, {name: pw_relu, op: relu}, {name: pool, op: maxpool2d},"
    "{name: c2, op: conv2d, out_channels: 8, padding: 1}, {name: c2_relu, op: relu},"
    "{name: c3, op: conv2d, out_channels: 8, padding: 1}, {name: sum, op: add, inputs: [c3, c2_relu]},"
    "{name: gap, op: global_avg_pool}, {name: fc, op: linear, out_features: 10}]}";

class PassesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ds_ = ptq_test::Synthetic(1, 8, 1200, 512).release();
    model_ = ptq_test::MakeModel(kGraph, ds_->sample_shape(), ds_->num_classes()).release();
    ptq_test::TrainFp32(model_, *ds_, 2);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ds_;
  }
  void SetUp() override {
    auto net = ExtractFloatNet(*model_);
    ASSERT_TRUE(net.ok()) << net.status();
    net_ = *net;
    x_ = ToNhwc(ds_->test().Slice(0, 256).data(), 256, ds_->sample_shape());
  }
  std::vector<float> Logits(const FloatNet& net) {
    std::vector<float> logits;
    EXPECT_TRUE(FloatForward(net.model, x_.data(), 256, &logits).ok());
    return logits;
  }
  int Layer(const std::string& name) const {
    for (size_t k = 0; k < net_.weighted.size(); ++k) {
      if (net_.weighted[k].name == name) return static_cast<int>(k);
    }
    ADD_FAILURE() << name;
    return 0;
  }
  absl::Status Run(PtqPass& pass, const QuantConfig* quant = nullptr) {
    PtqPassContext ctx{&net_, quant, x_.data(), 256, &notes_};
    return pass.Run(ctx);
  }
  std::string Notes() const {
    std::string s;
    for (const std::string& n : notes_) s += n + "\n";
    return s;
  }
  static Dataset* ds_;
  static nn::Model* model_;
  FloatNet net_;
  std::vector<float> x_;
  std::vector<std::string> notes_;
};
Dataset* PassesTest::ds_ = nullptr;
nn::Model* PassesTest::model_ = nullptr;

double MaxAbs(const WeightedLayer& w, const std::vector<int64_t>& idx) {
  double m = 0;
  for (int64_t j : idx) m = std::max(m, static_cast<double>(std::fabs(w.torch_weight[j])));
  return m;
}

TEST_F(PassesTest, CleKeepsTheReluNetworkAndEqualizesTheRanges) {
  const std::vector<float> before = Logits(net_);
  auto cle = Pass("{name: cle, replace_relu6: false}");
  ASSERT_TRUE(Run(*cle).ok());
  const std::vector<float> after = Logits(net_);
  ASSERT_EQ(before.size(), after.size());
  double worst = 0, scale = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    worst = std::max(worst, static_cast<double>(std::fabs(before[i] - after[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(before[i])));
  }
  EXPECT_LE(worst, 1e-5 * scale) << Notes();
  // dw -> pw (depthwise first) and pw -> c2 (through the max pool) are equalized: r1_i == r2_i.
  for (auto [a, b, depthwise] : {std::tuple{"dw", "pw", false}, std::tuple{"pw", "c2", false}}) {
    const WeightedLayer& w1 = net_.weighted[Layer(a)];
    const WeightedLayer& w2 = net_.weighted[Layer(b)];
    const int64_t per = ValuesPerOutputChannel(w1);
    for (int64_t c = 0; c < OutputChannels(w1); ++c) {
      std::vector<int64_t> out;
      for (int64_t j = c * per; j < (c + 1) * per; ++j) out.push_back(j);
      const double r1 = MaxAbs(w1, out), r2 = MaxAbs(w2, InputChannelIndices(w2, c, depthwise));
      EXPECT_NEAR(r1, r2, 1e-5 * r1) << a << " -> " << b << " channel " << c;
    }
  }
  // What it could not equalize, it says: the ReLU6 (kept), the add.
  EXPECT_NE(Notes().find("stem -> dw: a ReLU6 between them (replace_relu6: false)"), std::string::npos) << Notes();
  EXPECT_NE(Notes().find("c3: feeds sum (add)"), std::string::npos) << Notes();
  EXPECT_NE(Notes().find("c2: its output feeds 2 ops (c3, sum)"), std::string::npos) << Notes();
  EXPECT_NE(Notes().find("cle: 2 pairs equalized"), std::string::npos) << Notes();
}

TEST_F(PassesTest, CleReplacesRelu6ByReluAsThePaperDoes) {
  auto cle = Pass("{name: cle}");
  ASSERT_TRUE(Run(*cle).ok());
  EXPECT_EQ(net_.model.ops(net_.weighted[Layer("stem")].index).fused_activation(), backends::RELU);
  EXPECT_NE(Notes().find("ReLU6 replaced by ReLU after stem"), std::string::npos) << Notes();
  EXPECT_NE(Notes().find("cle: 3 pairs equalized"), std::string::npos) << Notes();
}

TEST_F(PassesTest, BiasCorrectionRemovesTheMeanOutputErrorOfALayer) {
  auto quant = Config("{weights: {bits: 3, symmetric: true}, activations: {bits: 8}}");
  // The fc layer's input (the global average pool's output) on the calibration images.
  const int fc = Layer("fc");
  std::vector<float> fc_in;
  std::vector<float> logits;
  ASSERT_TRUE(FloatForward(net_.model, x_.data(), 256, &logits, [&](int k, float* x, int64_t n) {
                if (k == fc) fc_in.assign(x, x + n);
                return absl::OkStatus();
              }).ok());
  auto wq = quant->WeightQuantizer("fc");
  ASSERT_TRUE(wq.ok() && *wq != nullptr);
  const WeightedLayer original = net_.weighted[fc];
  ASSERT_TRUE((*wq)->Observe(original.torch_weight).ok());
  ASSERT_TRUE((*wq)->ComputeQParams().ok());
  Tensor q;
  ASSERT_TRUE((*wq)->Forward(original.torch_weight, &q).ok());
  // Mean over the images of (W~ x + b') - (W x + b), per output.
  auto mean_error = [&](const std::vector<float>& bias) {
    const int64_t O = OutputChannels(original), I = original.torch_weight.dim(1);
    double worst = 0;
    for (int64_t o = 0; o < O; ++o) {
      double e = 0;
      for (int64_t b = 0; b < 256; ++b) {
        double y = bias[o] - original.bias[o];
        for (int64_t i = 0; i < I; ++i) y += (q[o * I + i] - original.torch_weight[o * I + i]) * fc_in[b * I + i];
        e += y;
      }
      worst = std::max(worst, std::fabs(e / 256));
    }
    return worst;
  };
  const double before = mean_error(original.bias);
  auto bc = Pass("{name: bias_correction}");
  ASSERT_TRUE(Run(*bc, quant.get()).ok());
  const double after = mean_error(net_.weighted[fc].bias);
  EXPECT_GT(before, 1e-3);
  EXPECT_LT(after, 1e-5 + 1e-4 * before) << "before " << before;
  EXPECT_NE(Notes().find("bias_correction (empirical): 6 layers"), std::string::npos) << Notes();
}

TEST_F(PassesTest, AnalyticBiasCorrectionUsesTheBatchNormAndSaysWhereItCannot) {
  auto quant = Config("{weights: {bits: 4, symmetric: true}, activations: {bits: 8}}");
  auto bc = Pass("{name: bias_correction, mode: analytic}");
  ASSERT_TRUE(Run(*bc, quant.get()).ok());
  // dw's input comes from stem + BN + ReLU6, pw's from dw + BN + ReLU (analytic); stem reads the model
  // input, c2 a max pool, c3 a layer without BN, fc an add: empirical.
  EXPECT_NE(Notes().find("empirical E[x] (no BatchNorm statistics for the input) for stem, c2, c3, fc"),
            std::string::npos)
      << Notes();
}

TEST(ClippedNormalMeanTest, MatchesNumericalIntegration) {
  for (auto [mu, sd, upper] : {std::tuple{0.3, 1.2, HUGE_VAL}, std::tuple{-1.0, 0.5, HUGE_VAL},
                               std::tuple{2.0, 3.0, 6.0}, std::tuple{7.0, 1.0, 6.0}}) {
    double sum = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {  // midpoint rule over +-12 sd
      const double z = mu + sd * (-12.0 + 24.0 * (i + 0.5) / n);
      const double p = std::exp(-0.5 * std::pow((z - mu) / sd, 2)) / (sd * std::sqrt(2 * M_PI));
      sum += std::min(std::max(z, 0.0), upper) * p * (24.0 * sd / n);
    }
    EXPECT_NEAR(ClippedNormalMean(mu, sd, upper), sum, 1e-6) << mu << " " << sd << " " << upper;
  }
}

TEST(BiasAbsorptionTest, MovesTheSureOffsetIntoTheNextLayer) {
  auto ds = ptq_test::Synthetic(1, 8, 600, 256);
  auto model = ptq_test::MakeModel(
      "{name: graph, nodes: [{name: a, op: conv2d, inputs: [input], out_channels: 4, padding: 1},"
      " {name: a_bn, op: batchnorm2d}, {name: a_relu, op: relu}, {name: b, op: conv2d, out_channels: 4},"
      " {name: gap, op: global_avg_pool}, {name: fc, op: linear, out_features: 10}]}",
      ds->sample_shape(), ds->num_classes());
  ptq_test::TrainFp32(model.get(), *ds, 1);
  // a's pre-activations ~ N(5, 0.01^2): every value is far above c = 5 - 100 * 0.01 = 4.
  auto& bn = static_cast<nn::BatchNorm&>(model->layer(1));
  for (int64_t c = 0; c < 4; ++c) bn.weight().value[c] = 0.01f, bn.bias().value[c] = 5.0f;
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok());
  const std::vector<float> x = ToNhwc(ds->test().Slice(0, 64).data(), 64, ds->sample_shape());
  std::vector<float> before, after;
  ASSERT_TRUE(FloatForward(net->model, x.data(), 64, &before).ok());
  const float b1 = net->weighted[0].bias[0];
  std::vector<std::string> notes;
  PtqPassContext ctx{&*net, nullptr, x.data(), 64, &notes};
  ASSERT_TRUE(Pass("{name: bias_absorption, sigmas: 100}")->Run(ctx).ok());
  EXPECT_NEAR(net->weighted[0].bias[0], b1 - 4.0f, 1e-5);
  ASSERT_TRUE(FloatForward(net->model, x.data(), 64, &after).ok());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_NEAR(after[i], before[i], 1e-4 * (1 + std::fabs(before[i])));
  EXPECT_NE(notes[0].find("a -> b: 4 of 4 channels, mean c 4"), std::string::npos) << notes[0];
}

TEST(PassesConfigTest, UnknownPassesAndKeysAreErrors) {
  ParamReader p(YAML::Load("{method: static, passes: [cle, {name: bias_corection}]}"), "c.yaml", "ptq");
  auto passes = ReadPasses(p);
  ASSERT_FALSE(passes.ok());
  EXPECT_NE(passes.status().message().find("bias_corection"), std::string::npos) << passes.status();
  EXPECT_NE(passes.status().message().find("did you mean 'bias_correction'"), std::string::npos) << passes.status();
  ParamReader q(YAML::Load("{passes: [{name: cle, iteratons: 3}]}"), "c.yaml", "ptq");
  EXPECT_FALSE(ReadPasses(q).ok());
  ParamReader r(YAML::Load("{passes: cle}"), "c.yaml", "ptq");
  EXPECT_FALSE(ReadPasses(r).ok());
}

TEST(GptqTest, AKnownHessianGivesTheHandComputedCodes) {
  // W = [0.4, 0.45], H = [[2, 1], [1, 2]], integer grid, no dampening. H^-1 = [[2, -1], [-1, 2]] / 3,
  // U = chol(H^-1) = [[0.8165, -0.4082], [0, 0.7071]]. Column 0: q = 0, e = 0.4 / 0.8165 = 0.4899;
  // w1 = 0.45 - e * (-0.4082) = 0.65 -> q = 1. Nearest rounding gives [0, 0].
  auto round = [](float v, int64_t) { return std::nearbyint(v); };
  for (int block : {1, 128}) {
    std::vector<double> h = {2, 1, 1, 2};
    const std::vector<float> q = GptqQuantize({0.4f, 0.45f}, 1, 2, &h, round, block, 0.0);
    EXPECT_EQ(q, (std::vector<float>{0.0f, 1.0f})) << "block " << block;
  }
  // The lazy batch update is the same algorithm: any block size gives the same codes.
  std::mt19937 rng(3);
  std::normal_distribution<double> g(0, 1);
  const int64_t rows = 4, k = 10;
  Eigen::MatrixXd a(k, 3 * k);
  for (int64_t i = 0; i < a.size(); ++i) a.data()[i] = g(rng);
  Eigen::MatrixXd hm = a * a.transpose() / (3.0 * k);
  std::vector<float> w(rows * k);
  for (float& v : w) v = static_cast<float>(2.0 * g(rng));
  std::vector<std::vector<float>> results;
  for (int block : {1, 3, 128}) {
    std::vector<double> h(hm.data(), hm.data() + k * k);
    results.push_back(GptqQuantize(w, rows, k, &h, round, block, 0.01));
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
  // And it is never worse than nearest on the H-weighted error (here: clearly better).
  auto err = [&](const std::vector<float>& q) {
    double e = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < k; ++i)
        for (int64_t j = 0; j < k; ++j) e += (w[r * k + i] - q[r * k + i]) * hm(i, j) * (w[r * k + j] - q[r * k + j]);
    return e;
  };
  std::vector<float> nearest(w.size());
  for (size_t i = 0; i < w.size(); ++i) nearest[i] = std::nearbyint(w[i]);
  EXPECT_LT(err(results[0]), err(nearest));
}

TEST(AdaroundTest, RoundingEndsBinaryAndBeatsNearestOnItsOwnLoss) {
  // A fixed layer: 6 outputs, 16 inputs, ReLU, 400 input rows, weights on a coarse 3-bit grid.
  std::mt19937 rng(7);
  std::normal_distribution<float> g(0, 1);
  const int64_t rows = 6, k = 16, n = 400;
  std::vector<float> w(rows * k), x(n * k), bias(rows, 0.1f);
  for (float& v : w) v = 0.3f * g(rng);
  for (float& v : x) v = std::max(0.0f, g(rng));
  std::vector<double> scale(rows, 0.25);
  std::vector<int32_t> zp(rows, 0);
  std::vector<float> t(n * rows);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < rows; ++r) {
      double y = bias[r];
      for (int64_t j = 0; j < k; ++j) y += w[r * k + j] * x[i * k + j];
      t[i * rows + r] = static_cast<float>(std::max(0.0, y));
    }
  AdaroundOptions o;  // the paper's 10000 iterations (Adam moves V by about lr per step)
  o.batch_rows = 128;
  const AdaroundResult r = AdaroundLayer(w, rows, k, bias, scale, zp, -4, 3, x, t, n, /*relu=*/1, o);
  EXPECT_LE(r.loss_adaround, r.loss_nearest);
  EXPECT_LT(r.loss_adaround, 0.9 * r.loss_nearest) << "nearest " << r.loss_nearest;
  // The annealed regulariser drives h(V) to 0 or 1 (on this small, loss-dominated layer 81 % get
  // there; on the cnn's layers 86-99 %); the final rounding is hard whatever h is, checked below.
  EXPECT_GE(r.binary, 0.75);
  // Every weight is on the grid and rounds W / s either down or up (or clips to the range).
  for (int64_t j = 0; j < rows * k; ++j) {
    const double code = r.weights[j] / 0.25;
    EXPECT_NEAR(code, std::nearbyint(code), 1e-5);
    const double f = std::floor(w[j] / 0.25);
    EXPECT_TRUE(code == std::min(std::max(f, -4.0), 3.0) || code == std::min(std::max(f + 1, -4.0), 3.0))
        << w[j] << " -> " << r.weights[j];
  }
}

}  // namespace
}  // namespace quant::ptq
