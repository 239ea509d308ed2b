// PTQ passes brecq and qdrop (quant/ptq/brecq_pass.h, qdrop_pass.h): blocks found in a graph,
// block reconstruction that ends on the grid and beats nearest rounding on its own loss, the
// activation grids qdrop pins for the conversion, blocks it cannot handle said.
#include <cmath>
#include <memory>
#include <regex>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/ptq/brecq_pass.h"
#include "quant/ptq/converter.h"
#include "quant/ptq/ptq_pass.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::ptq {
namespace {

using ptq_test::Config;
using ptq_test::Pass;

// stem -> dw (depthwise) -> pw -> pool -> c2 (read by c3 and by the add) -> c3 -> add -> gap -> fc.
constexpr char kGraph[] =
    "{name: graph, nodes: ["
    "{name: stem, op: conv2d, inputs: [input], out_channels: 8, padding: 1}, {name: stem_relu, op: relu6},"
    "{name: dw, op: conv2d, out_channels: 8, groups: 8, padding: 1}, {name: dw_bn, op: batchnorm2d},"
    " {name: dw_relu, op: relu},"
    "{name: pw, op: conv2d, out_channels: 8}, {name: pw_relu, op: relu}, {name: pool, op: maxpool2d},"
    "{name: c2, op: conv2d, out_channels: 8, padding: 1}, {name: c2_relu, op: relu},"
    "{name: c3, op: conv2d, out_channels: 8, padding: 1}, {name: sum, op: add, inputs: [c3, c2_relu]},"
    "{name: gap, op: global_avg_pool}, {name: fc, op: linear, out_features: 10}]}";

class BrecqTest : public ::testing::Test {
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
    x_ = ToNhwc(ds_->train().Slice(0, 256).data(), 256, ds_->sample_shape());
  }
  absl::Status Run(PtqPass& pass, const QuantConfig* quant) {
    PtqPassContext ctx{&net_, quant, x_.data(), 256, &notes_};
    return pass.Run(ctx);
  }
  std::string Notes() const {
    std::string s;
    for (const std::string& n : notes_) s += n + "\n";
    return s;
  }
  // Every "<block> [...] (reconstruction loss nearest A -> <pass> B" of the notes: (A, B).
  std::vector<std::pair<double, double>> Losses(const std::string& pass) const {
    std::vector<std::pair<double, double>> out;
    const std::regex re("nearest ([-0-9.e+]+) -> " + pass + " ([-0-9.e+]+)");
    const std::string notes = Notes();
    for (auto it = std::sregex_iterator(notes.begin(), notes.end(), re); it != std::sregex_iterator(); ++it) {
      out.push_back({std::stod((*it)[1]), std::stod((*it)[2])});
    }
    return out;
  }
  static Dataset* ds_;
  static nn::Model* model_;
  FloatNet net_;
  std::vector<float> x_;
  std::vector<std::string> notes_;
};
Dataset* BrecqTest::ds_ = nullptr;
nn::Model* BrecqTest::model_ = nullptr;

TEST_F(BrecqTest, BlocksAreSingleEntrySingleExitRanges) {
  const std::vector<ReconstructionBlock> blocks = FindBlocks(net_, /*layer_wise=*/false);
  std::vector<std::string> names;
  for (const ReconstructionBlock& b : blocks) names.push_back(b.name);
  // c2's output feeds c3 and the add: the residual block is c3 + sum, reading c2's output.
  EXPECT_EQ(names, (std::vector<std::string>{"stem", "dw", "pw", "pool", "c2", "c3..sum", "gap", "fc"}));
  const ReconstructionBlock& res = blocks[5];
  EXPECT_EQ(res.input_tensor, blocks[4].output_tensor);
  EXPECT_EQ(res.weighted.size(), 1u);
  EXPECT_EQ(net_.model.ops(res.last).name(), "sum");
  EXPECT_EQ(FindBlocks(net_, /*layer_wise=*/true).size(), 6u);  // the six conv/linear layers
}

TEST_F(BrecqTest, ReconstructionEndsOnTheGridAndBeatsNearestOnItsLoss) {
  auto quant = Config(
      "{weights: {bits: 3, symmetric: true, granularity: per_channel, observer: per_channel_minmax},"
      " activations: {bits: 8}}");
  ASSERT_TRUE(Run(*Pass("{name: brecq, iterations: 1500}"), quant.get()).ok()) << Notes();
  const auto losses = Losses("brecq");
  ASSERT_EQ(losses.size(), 6u) << Notes();
  double nearest = 0, learned = 0;
  for (auto [a, b] : losses) {
    EXPECT_LE(b, a * 1.02 + 1e-9) << Notes();  // no block ends clearly worse than nearest
    nearest += a;
    learned += b;
  }
  EXPECT_LT(learned, 0.9 * nearest) << Notes();
  // Every weight lies on its layer's grid, and the conversion takes those codes.
  for (const WeightedLayer& w : net_.weighted) {
    ASSERT_TRUE(w.weight_grid.has_value()) << w.name;
    const int64_t per = w.torch_weight.numel() / static_cast<int64_t>(w.bias.size());
    for (int64_t j = 0; j < w.torch_weight.numel(); ++j) {
      const double code = w.torch_weight[j] / w.weight_grid->scale[j / per];
      ASSERT_NEAR(code, std::nearbyint(code), 1e-4) << w.name << " " << j;
      ASSERT_GE(std::nearbyint(code), w.weight_grid->quant_min);
      ASSERT_LE(std::nearbyint(code), w.weight_grid->quant_max);
    }
  }
  EXPECT_TRUE(net_.activation_grid.empty());  // activations float: the conversion calibrates
}

TEST_F(BrecqTest, QdropPinsTheActivationGridsItLearned) {
  auto quant = Config("{weights: {bits: 4, symmetric: true}, activations: {bits: 4}}");
  ASSERT_TRUE(Run(*Pass("{name: qdrop, iterations: 400}"), quant.get()).ok()) << Notes();
  EXPECT_NE(Notes().find("activations quantized, dropped with p 0.50, step sizes learned"), std::string::npos)
      << Notes();
  // The input and every op output with qparams of its own (the max pool passes its input's on).
  ASSERT_EQ(net_.activation_grid.size(), 9u) << Notes();
  auto q = MakeStaticQuantizers(net_, *quant);
  ASSERT_TRUE(q.ok()) << q.status();
  PassLog log;
  auto m = QuantizeStatic(net_, *q, x_.data(), 256, 256, &log);
  ASSERT_TRUE(m.ok()) << m.status();
  for (const auto& [tensor, grid] : net_.activation_grid) {
    EXPECT_EQ(m->tensors(tensor).scale(0), grid.scale[0]) << tensor;
    EXPECT_EQ(m->tensors(tensor).zero_point(0), grid.zero_point[0]) << tensor;
  }
  EXPECT_NE(log[0].find("9 of them on the grids a pass fixed"), std::string::npos) << log[0];
}

TEST_F(BrecqTest, AdaroundWithQuantizedActivationsPinsTheGridsItsInputsSaw) {
  auto quant = Config("{weights: {bits: 4, symmetric: true}, activations: {bits: 4}}");
  PtqPassContext before{&net_, quant.get(), x_.data(), 256, &notes_};
  auto calibrated = CalibratedActivationGrids(before);  // on the float net, before any rounding
  ASSERT_TRUE(calibrated.ok()) << calibrated.status();
  ASSERT_TRUE(Run(*Pass("{name: adaround, iterations: 200, act_quant: true}"), quant.get()).ok()) << Notes();
  EXPECT_NE(Notes().find("inputs with quantized activations"), std::string::npos) << Notes();
  ASSERT_EQ(net_.activation_grid.size(), calibrated->size());
  for (const auto& [tensor, grid] : *calibrated) {
    EXPECT_EQ(net_.activation_grid.at(tensor).scale, grid.scale) << tensor;
    EXPECT_EQ(net_.activation_grid.at(tensor).zero_point, grid.zero_point) << tensor;
  }
}

TEST(BrecqBlocksTest, ABlockWithoutADifferentiableFormIsSkippedAndSaid) {
  auto ds = ptq_test::Synthetic(1, 8, 600, 256);
  // b -> sigmoid -> add(a): the block [b, sig, sum] holds a sigmoid.
  auto model = ptq_test::MakeModel(
      "{name: graph, nodes: [{name: a, op: conv2d, inputs: [input], out_channels: 4, padding: 1},"
      " {name: a_relu, op: relu}, {name: b, op: conv2d, out_channels: 4, padding: 1}, {name: sig, op: sigmoid},"
      " {name: sum, op: add, inputs: [sig, a_relu]}, {name: gap, op: global_avg_pool},"
      " {name: fc, op: linear, out_features: 10}]}",
      ds->sample_shape(), ds->num_classes());
  ptq_test::TrainFp32(model.get(), *ds, 1);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = ToNhwc(ds->train().Slice(0, 64).data(), 64, ds->sample_shape());
  std::vector<std::string> notes;
  auto quant = Config("{weights: {bits: 4, symmetric: true}, activations: {bits: 8}}");
  PtqPassContext ctx{&*net, quant.get(), x.data(), 64, &notes};
  ASSERT_TRUE(Pass("{name: brecq, iterations: 20}")->Run(ctx).ok());
  std::string all;
  for (const std::string& n : notes) all += n + "\n";
  EXPECT_NE(all.find("brecq: skipped: block 'b..sum': op 'sig' (sigmoid, tanh or reshape) has no differentiable "
                     "block form here"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("brecq: 2 blocks"), std::string::npos) << all;  // a and fc were reconstructed
  EXPECT_FALSE(net->weighted[1].weight_grid.has_value());            // b kept for the conversion to round
}

// A linear after a flatten of [C, H, W] (C > 1) reads its input in the lowered net's NHWC order:
// the block must use the lowered column order, or it reconstructs on permuted inputs. The
// block's reported nearest-rounding loss equals one computed independently on the lowered net.
TEST(BrecqBlocksTest, ALinearAfterAFlattenSeesItsInputsInTheLoweredOrder) {
  auto ds = ptq_test::Synthetic(3, 4, 600, 256);
  auto model = ptq_test::MakeModel(
      "{name: graph, nodes: [{name: flat, op: flatten, inputs: [input]},"
      " {name: fc, op: linear, out_features: 10}]}",
      ds->sample_shape(), ds->num_classes());
  ptq_test::TrainFp32(model.get(), *ds, 1);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  const std::vector<float> x = ToNhwc(ds->train().Slice(0, 64).data(), 64, ds->sample_shape());
  auto quant = Config("{weights: {bits: 3, symmetric: true}, activations: {bits: 8}}");
  const WeightedLayer& fc = net->weighted[0];
  ASSERT_NE(fc.perm[1], 1);  // the columns are permuted
  auto grid = WeightGridOf(*quant, fc, "test");
  ASSERT_TRUE(grid.ok() && grid->has_value());
  // Nearest rounding on the lowered weights, applied to the lowered inputs.
  const backends::Tensor& wt = net->model.tensors(fc.weight_tensor);
  const int64_t O = 10, I = 48;
  double expected = 0;
  for (int64_t s = 0; s < 64; ++s) {
    for (int64_t o = 0; o < O; ++o) {
      double y = 0, yq = 0;
      const double sc = (*grid)->scale[0];
      for (int64_t i = 0; i < I; ++i) {
        const double w = wt.float_data(o * I + i);
        const double wq =
            std::min(std::max(std::nearbyint(w / sc), double((*grid)->quant_min)), double((*grid)->quant_max)) * sc;
        y += w * x[s * I + i];
        yq += wq * x[s * I + i];
      }
      expected += (yq - y) * (yq - y);
    }
  }
  expected /= 64;
  std::vector<std::string> notes;
  PtqPassContext ctx{&*net, quant.get(), x.data(), 64, &notes};
  ASSERT_TRUE(Pass("{name: brecq, iterations: 10}")->Run(ctx).ok());
  const std::regex re("nearest ([-0-9.e+]+) ->");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(notes[0], m, re)) << notes[0];
  EXPECT_NEAR(std::stod(m[1]), expected, 1e-3 * expected) << notes[0];
}

TEST(BrecqConfigTest, BadKeysAreErrors) {
  for (const char* yaml : {"{name: brecq, blocks: residual}", "{name: brecq, iterations: 0}",
                           "{name: qdrop, drop_prob: 1.5}", "{name: qdrop, act_quant: false}"}) {
    ParamReader p(YAML::Load(yaml), "p.yaml", "ptq.passes[0]");
    auto pass = Registry<PtqPass>::Get().CreateFrom(p, "name", "", "pass");
    EXPECT_FALSE(pass.ok() && p.Finish().ok()) << yaml;
  }
}

}  // namespace
}  // namespace quant::ptq
