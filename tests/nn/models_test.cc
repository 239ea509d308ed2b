// Models: registration, architectures and names, shape-chain errors, whole-model
// gradient checks (finite differences of the mean cross-entropy; tolerance
// below), determinism from the seed, output hooks, and checkpoints.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/loss.h"
#include "quant/nn/buffer_plan.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/fusion.h"
#include "quant/nn/model.h"
#include "tests/nn/gradcheck.h"
#include "yaml-cpp/yaml.h"

namespace quant::nn {
namespace {

absl::StatusOr<std::unique_ptr<Model>> MakeModel(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "model.yaml", "model");
  auto m = Registry<Model>::Get().CreateFrom(p, "name", "", "model");
  if (!m.ok()) return m.status();
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return m;
}

std::unique_ptr<Model> Built(const std::string& yaml, const Shape& sample, int classes,
                             uint64_t seed = 0) {
  auto m = MakeModel(yaml);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  absl::Status s = (*m)->Build(sample, classes, seed);
  EXPECT_TRUE(s.ok()) << s;
  return std::move(m).value();
}

std::vector<std::string> LayerNames(Model& m) {
  std::vector<std::string> names;
  for (int i = 0; i < m.num_layers(); ++i) names.push_back(m.layer(i).name());
  return names;
}

TEST(ModelsTest, RegisteredArchitecturesAndNames) {
  for (const char* name : {"mlp", "cnn", "cnn_bn", "sequential"}) {
    EXPECT_TRUE(Registry<Model>::Get().Contains(name)) << name;
  }
  auto mlp = Built("{name: mlp}", {1, 28, 28}, 10);
  ASSERT_NE(mlp, nullptr);
  EXPECT_EQ(mlp->NumParameters(), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  EXPECT_EQ(LayerNames(*mlp),
            (std::vector<std::string>{"flatten1", "fc1", "relu1", "fc2", "relu2", "fc3"}));
  // Forward: 2 * MACs; backward skips fc1's input gradient.
  EXPECT_EQ(mlp->ForwardFlopsPerSample(), 2 * (784 * 256 + 256 * 128 + 128 * 10));
  EXPECT_EQ(mlp->BackwardFlopsPerSample(), 2 * (784 * 256 + 2 * 256 * 128 + 2 * 128 * 10));

  auto cnn = Built("{name: cnn}", {1, 28, 28}, 10);
  ASSERT_NE(cnn, nullptr);
  EXPECT_EQ(cnn->NumParameters(), (16 * 9 + 16) + (32 * 144 + 32) + (1568 * 128 + 128) + 1290);
  EXPECT_EQ(LayerNames(*cnn),
            (std::vector<std::string>{"conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                      "flatten1", "fc1", "relu3", "fc2"}));
  auto cnn_bn = Built("{name: cnn_bn}", {1, 28, 28}, 10);
  ASSERT_NE(cnn_bn, nullptr);
  EXPECT_EQ(cnn_bn->layer(1).name(), "bn1");
  EXPECT_EQ(cnn_bn->StateTensors().size(), 8u + 4u + 4u);  // + 2 BN x (w, b) + 2 BN x 2 buffers
  auto matched = cnn->MatchLayers("conv1|fc2");
  ASSERT_TRUE(matched.ok());
  ASSERT_EQ(matched->size(), 2u);
  EXPECT_EQ((*matched)[1]->name(), "fc2");
  EXPECT_FALSE(cnn->MatchLayers("(").ok());
}

TEST(ModelsTest, SequentialShapesThatDoNotChainNameLayerAndShapes) {
  auto m = MakeModel(R"({name: sequential, layers: [
      {type: conv2d, out_channels: 32, kernel: 3, padding: 1}, relu, {type: maxpool2d, kernel: 4},
      flatten, {type: linear, in_features: 100, out_features: 10}]})");
  ASSERT_TRUE(m.ok()) << m.status();
  absl::Status s = (*m)->Build({1, 28, 28}, 10, 0);
  ASSERT_FALSE(s.ok());
  const std::string msg(s.message());
  EXPECT_NE(msg.find("node 4"), std::string::npos) << msg;
  EXPECT_NE(msg.find("fc1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[100]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[1568]"), std::string::npos) << msg;

  // The last layer must produce one logit per class.
  auto wrong_classes = MakeModel("{name: sequential, layers: [flatten, {type: linear, out_features: 7}]}");
  ASSERT_TRUE(wrong_classes.ok());
  s = (*wrong_classes)->Build({1, 28, 28}, 10, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("10 classes"), std::string::npos) << s;

  // Config errors: unknown layer type, missing size, unknown key.
  EXPECT_FALSE(MakeModel("{name: sequential, layers: [{type: lineer}]}").ok());
  EXPECT_FALSE(MakeModel("{name: sequential, layers: [{type: linear}]}").ok());
  auto typo = MakeModel("{name: sequential, layers: [{type: linear, out_feature: 3}]}");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("layers[0]"), std::string::npos) << typo.status();
  EXPECT_FALSE(MakeModel("{name: sequential}").ok());
}

TEST(ModelsTest, SequentialBuildsWhatItLists) {
  auto m = Built(R"({name: sequential, layers: [
      {type: conv2d, name: stem, out_channels: 4, kernel: 3, stride: 2},
      {type: batchnorm2d}, relu6, {type: avgpool2d, kernel: 2}, flatten,
      {type: dropout, p: 0.1}, {type: linear, out_features: 8},
      {type: hardtanh, min_val: -2, max_val: 2}, {type: batchnorm1d}, {type: linear, out_features: 3}]})",
                 {2, 9, 9}, 3);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->layer(0).name(), "stem");
  EXPECT_EQ(m->layer(6).name(), "fc1");
  EXPECT_NE(m->Summary().find("Conv2d(2, 4, kernel=3, stride=2"), std::string::npos) << m->Summary();
}

// Mean cross-entropy of the model on a fixed batch, in double.
double Loss(Model& m, const Tensor& x, const std::vector<int32_t>& labels) {
  SoftmaxCrossEntropy ce;
  return ce.Forward(m.Forward(x), labels, nullptr);
}

// Whole-model check: every parameter gradient from Model::Backward against
// central differences of the loss (h = 1e-3 in float32 parameters;
// |numeric - analytic| <= 2e-3 + 5e-2 |numeric|, for 40 sampled entries per
// tensor). A ReLU or max-pool kink within h of the point makes the central
// difference meaningless; such points are detected (the one-sided differences
// disagree by more than the tolerance) and skipped, and at most a third may be (one unit near its kink spoils a whole weight row).
void ExpectModelGradientsMatch(Model& m, const Shape& sample, int classes) {
  Shape xs{4};
  xs.insert(xs.end(), sample.begin(), sample.end());
  Tensor x = testing::RandomTensor(xs, 23);
  std::vector<int32_t> labels = {0, 1 % classes, 2 % classes, 1};
  SoftmaxCrossEntropy ce;
  const double l0 = ce.Forward(m.Forward(x), labels, nullptr);
  Tensor dlogits;
  ce.Backward(&dlogits);
  m.Backward(x, dlogits);
  int checked = 0, skipped = 0;
  for (auto& [name, p] : m.NamedParameters()) {
    Tensor analytic = p->grad;
    const int64_t n = p->value.numel();
    for (int64_t k = 0; k < std::min<int64_t>(n, 40); ++k) {
      const int64_t i = (k * 7919) % n;
      const float saved = p->value[i];
      const float hi = saved + 1e-3f, lo = saved - 1e-3f;
      p->value[i] = hi;
      const double up = Loss(m, x, labels);
      p->value[i] = lo;
      const double down = Loss(m, x, labels);
      p->value[i] = saved;
      const double numeric = (up - down) / (static_cast<double>(hi) - lo);
      const double forward = (up - l0) / (static_cast<double>(hi) - saved);
      const double backward = (l0 - down) / (static_cast<double>(saved) - lo);
      const double tol = 2e-3 + 5e-2 * std::fabs(numeric);
      if (std::fabs(forward - backward) > tol) {
        ++skipped;
        continue;
      }
      ++checked;
      EXPECT_NEAR(numeric, analytic[i], tol) << name << "[" << i << "]";
    }
  }
  EXPECT_LE(skipped * 3, checked + skipped) << skipped << " kinks among " << checked + skipped;
  EXPECT_GT(checked, 0);
}

TEST(ModelsTest, WholeModelGradientsMatchFiniteDifferences) {
  auto mlp = Built("{name: mlp, hidden: [6, 5]}", {1, 4, 3}, 3);
  ASSERT_NE(mlp, nullptr);
  ExpectModelGradientsMatch(*mlp, {1, 4, 3}, 3);
  auto cnn = Built("{name: cnn_bn, channels: [3, 4], hidden: 6}", {2, 8, 8}, 3);
  ASSERT_NE(cnn, nullptr);
  ExpectModelGradientsMatch(*cnn, {2, 8, 8}, 3);
}

TEST(ModelsTest, SameSeedSameWeightsOtherSeedOther) {
  auto a = Built("{name: cnn}", {1, 28, 28}, 10, 5);
  auto b = Built("{name: cnn}", {1, 28, 28}, 10, 5);
  auto c = Built("{name: cnn}", {1, 28, 28}, 10, 6);
  auto sa = a->StateTensors(), sb = b->StateTensors(), sc = c->StateTensors();
  bool differs = false;
  for (size_t k = 0; k < sa.size(); ++k) {
    for (int64_t i = 0; i < sa[k].second->numel(); ++i) {
      ASSERT_EQ((*sa[k].second)[i], (*sb[k].second)[i]) << sa[k].first;
      differs = differs || (*sa[k].second)[i] != (*sc[k].second)[i];
    }
  }
  EXPECT_TRUE(differs);
}

// y -> 2y at an output hook.
class Double : public TensorTransform {
 public:
  std::string Describe() const override { return "x2"; }
  void Forward(const Tensor& in, Tensor* out, bool) override {
    for (int64_t i = 0; i < in.numel(); ++i) (*out)[i] = 2 * in[i];
  }
  void Backward(const Tensor& in, const Tensor& g, Tensor* gi) override {
    for (int64_t i = 0; i < in.numel(); ++i) (*gi)[i] = 2 * g[i];
  }
};

TEST(ModelsTest, OutputHookChangesForwardAndBackward) {
  auto m = Built("{name: mlp, hidden: [6, 5]}", {1, 4, 3}, 3);
  Tensor x = testing::RandomTensor({2, 1, 4, 3}, 1);
  Tensor before = m->Forward(x);
  m->FindLayer("fc3")->set_output_transform(std::make_shared<Double>());
  Tensor after = m->Forward(x);
  for (int64_t i = 0; i < before.numel(); ++i) EXPECT_FLOAT_EQ(after[i], 2 * before[i]);
  m->FindLayer("relu1")->set_output_transform(std::make_shared<Double>());
  ExpectModelGradientsMatch(*m, {1, 4, 3}, 3);
}

// A residual block with a fan-out (stem feeds both the conv branch and the
// add), a concat of two branches and a head: every gradient, including those
// summed where a value fans out, against finite differences.
constexpr char kResidualGraph[] = R"({name: graph, nodes: [
    {name: stem, op: conv2d, inputs: [input], out_channels: 3, padding: 1},
    {name: stem_relu, op: relu},
    {name: c1, op: conv2d, out_channels: 3, padding: 1},
    {name: r1, op: relu},
    {name: c2, op: conv2d, out_channels: 3, padding: 1},
    {name: sum, op: add, inputs: [c2, stem_relu]},
    {name: sum_relu, op: relu},
    {name: side, op: conv2d, inputs: [stem_relu], out_channels: 2, kernel: 1},
    {name: cat, op: concat, inputs: [sum_relu, side]},
    {name: pool, op: maxpool2d, kernel: 2},
    {name: flat, op: flatten},
    {name: fc, op: linear, out_features: 3}]})";

TEST(GraphTest, ResidualAndConcatGradientsMatchFiniteDifferences) {
  auto m = Built(kResidualGraph, {2, 6, 6}, 3, /*seed=*/1);
  ASSERT_NE(m, nullptr);
  EXPECT_FALSE(m->is_chain());
  EXPECT_EQ(m->value_shape(Model::OutputOf(m->FindNode("cat"))), (Shape{5, 6, 6}));
  EXPECT_EQ(m->consumers(Model::OutputOf(m->FindNode("stem_relu"))).size(), 3u);
  EXPECT_TRUE(m->warnings().empty());
  ExpectModelGradientsMatch(*m, {2, 6, 6}, 3);
}

TEST(GraphTest, NodesListedOutOfOrderAreSortedTopologically) {
  auto m = Built(R"({name: graph, output: fc, nodes: [
      {name: fc, op: linear, inputs: [flat], out_features: 3},
      {name: flat, op: flatten, inputs: [r]},
      {name: r, op: relu, inputs: [input]}]})", {1, 2, 2}, 3);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(LayerNames(*m), (std::vector<std::string>{"r", "flat", "fc"}));
  EXPECT_TRUE(m->is_chain());
}

// Structural errors: reported when the model is built (before anything runs;
// --validate builds it), at the node's line in the config.
absl::Status BuildError(const std::string& yaml) {
  auto m = MakeModel(yaml);
  if (!m.ok()) return m.status();
  return (*m)->Build({4}, 4, 0);
}

TEST(GraphTest, StructuralErrorsNameTheNodeAndItsLine) {
  absl::Status unknown = BuildError("{name: graph, nodes: [{name: a, op: relu}, {name: b, op: add, inputs: [a, c]}]}");
  EXPECT_NE(unknown.message().find("node 1 'b' (add, model.yaml:1:"), std::string::npos) << unknown;
  EXPECT_NE(unknown.message().find("unknown input 'c'"), std::string::npos) << unknown;

  absl::Status duplicate = BuildError("{name: graph, nodes: [{name: a, op: relu}, {name: a, op: relu}]}");
  EXPECT_NE(duplicate.message().find("node 1 'a' (relu, model.yaml:1:"), std::string::npos) << duplicate;
  EXPECT_NE(duplicate.message().find("the name is used twice"), std::string::npos) << duplicate;

  absl::Status cycle = BuildError(R"({name: graph, nodes: [
      {name: a, op: relu, inputs: [c]}, {name: b, op: relu, inputs: [a]}, {name: c, op: add, inputs: [b, input]}]})");
  EXPECT_NE(cycle.message().find("model.yaml:2:"), std::string::npos) << cycle;
  EXPECT_NE(cycle.message().find("is on a cycle: a <- c <- b <- a"), std::string::npos) << cycle;

  absl::Status bad_output = BuildError("{name: graph, output: zz, nodes: [{name: a, op: relu}]}");
  EXPECT_NE(bad_output.message().find("output: unknown node 'zz'"), std::string::npos) << bad_output;

  absl::Status wrong_arity = BuildError("{name: graph, nodes: [{name: a, op: add, inputs: [input]}]}");
  EXPECT_NE(wrong_arity.message().find("takes 2 input(s), but 1 are given"), std::string::npos) << wrong_arity;

  // And through the driver's reader: a typo'd op is an unknown-plugin error at its key.
  auto typo = MakeModel("{name: graph, nodes: [{name: a, op: rleu}]}");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("model.yaml:1:"), std::string::npos) << typo.status();
  EXPECT_NE(typo.status().message().find("did you mean 'relu'"), std::string::npos) << typo.status();
}

TEST(GraphTest, ShapeMismatchNamesBothInputs) {
  auto m = MakeModel(R"({name: graph, nodes: [
      {name: a, op: conv2d, inputs: [input], out_channels: 16, padding: 1},
      {name: b, op: conv2d, inputs: [input], out_channels: 32, padding: 1, stride: 2},
      {name: sum, op: add, inputs: [a, b]},
      {name: flat, op: flatten}, {name: fc, op: linear, out_features: 10}]})");
  ASSERT_TRUE(m.ok()) << m.status();
  absl::Status s = (*m)->Build({1, 14, 14}, 10, 0);
  ASSERT_FALSE(s.ok());
  const std::string msg(s.message());
  EXPECT_NE(msg.find("'sum' (add, model.yaml:4:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[16, 14, 14] (output of a)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[32, 7, 7] (output of b)"), std::string::npos) << msg;
}

TEST(GraphTest, UnusedOutputIsAWarning) {
  auto m = Built(R"({name: graph, output: fc, nodes: [
      {name: flat, op: flatten, inputs: [input]},
      {name: dead, op: relu, inputs: [flat]},
      {name: fc, op: linear, inputs: [flat], out_features: 2}]})", {1, 2, 2}, 2);
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->warnings().size(), 1u);
  EXPECT_NE(m->warnings()[0].find("'dead'"), std::string::npos) << m->warnings()[0];
  EXPECT_NE(m->warnings()[0].find("not used"), std::string::npos);
  // The dead branch does not disturb training.
  ExpectModelGradientsMatch(*m, {1, 2, 2}, 2);
}

TEST(GraphTest, EvalBuffersPlannedByLivenessGiveTheSameValues) {
  auto m = Built(kResidualGraph, {2, 6, 6}, 3);
  Tensor x = testing::RandomTensor({3, 2, 6, 6}, 4);
  m->set_training(false);
  m->set_keep_values(true);
  Tensor kept = m->Forward(x);
  std::vector<Tensor> values(m->num_values());
  for (int v = 1; v < m->num_values(); ++v) values[v] = m->value(v);
  m->set_keep_values(false);
  for (int round = 0; round < 2; ++round) {
    const Tensor& planned = m->Forward(x);
    ASSERT_EQ(planned.shape(), kept.shape());
    for (int64_t i = 0; i < kept.numel(); ++i) ASSERT_EQ(planned[i], kept[i]);
  }
  // The float executor over a range of nodes reproduces the intermediate values.
  std::vector<Tensor> run(m->num_values());
  run[Model::kInputValue] = x;
  const int c1 = m->FindNode("c1");
  ASSERT_TRUE(m->RunNodes(0, c1, &run).ok());
  ASSERT_TRUE(m->RunNodes(c1, m->num_layers(), &run).ok());
  for (int v = 1; v < m->num_values(); ++v) {
    ASSERT_EQ(run[v].shape(), values[v].shape()) << m->value_name(v);
    for (int64_t i = 0; i < run[v].numel(); ++i) ASSERT_EQ(run[v][i], values[v][i]) << m->value_name(v);
  }
  std::vector<Tensor> missing(m->num_values());
  absl::Status s = m->RunNodes(m->FindNode("sum"), m->num_layers(), &missing);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("'c2' has not been computed"), std::string::npos) << s;
}

TEST(GraphTest, FusionGroupsFollowSoleConsumers) {
  auto cnn = Built("{name: cnn_bn}", {1, 28, 28}, 10);
  std::vector<FusionGroup> g = FindFusionGroups(*cnn);
  ASSERT_EQ(g.size(), 4u);  // conv1-bn1-relu1, conv2-bn2-relu2, fc1-relu3, fc2
  EXPECT_EQ(cnn->layer(g[0].anchor).name(), "conv1");
  EXPECT_EQ(cnn->layer(g[0].batch_norm).name(), "bn1");
  EXPECT_EQ(cnn->layer(g[0].activation).name(), "relu1");
  EXPECT_EQ(cnn->layer(g[2].activation).name(), "relu3");
  EXPECT_EQ(g[3].activation, -1);
  auto res = Built(kResidualGraph, {2, 6, 6}, 3);
  std::vector<FusionGroup> r = FindFusionGroups(*res);
  // stem -> stem_relu fans out, but the relu is stem's only consumer: fused.
  EXPECT_EQ(res->layer(r[0].activation).name(), "stem_relu");
  bool add_found = false;
  for (const FusionGroup& f : r) {
    if (f.kind != FusionGroup::Kind::kAdd) continue;
    add_found = true;
    EXPECT_EQ(res->layer(f.anchor).name(), "sum");
    EXPECT_EQ(res->layer(f.activation).name(), "sum_relu");
  }
  EXPECT_TRUE(add_found);
}

// The built-in graph models: shapes, names, parameters as documented in
// docs/nn.md, and a training step on small images (the depthwise kernel's
// short rows; run under ASan too).
TEST(GraphTest, ResnetMiniAndMobilenetMiniAsDocumented) {
  auto resnet = Built("{name: resnet_mini}", {1, 28, 28}, 10);
  ASSERT_NE(resnet, nullptr);
  EXPECT_EQ(resnet->NumParameters(), 77754);
  EXPECT_EQ(resnet->value_shape(Model::OutputOf(resnet->FindNode("stem_pool"))), (Shape{16, 14, 14}));
  EXPECT_EQ(resnet->value_shape(Model::OutputOf(resnet->FindNode("s3b1_relu2"))), (Shape{64, 4, 4}));
  EXPECT_EQ(resnet->FindNode("s1b1_proj"), -1);  // identity shortcut in stage 1
  EXPECT_NE(resnet->FindNode("s2b1_proj"), -1);
  auto mobile = Built("{name: mobilenet_mini}", {1, 28, 28}, 10);
  ASSERT_NE(mobile, nullptr);
  EXPECT_EQ(mobile->NumParameters(), 32234);
  EXPECT_EQ(mobile->value_shape(Model::OutputOf(mobile->FindNode("ir4_dw"))), (Shape{96, 4, 4}));
  EXPECT_EQ(static_cast<Conv2d*>(mobile->FindLayer("ir2_dw"))->options().groups, 64);
  EXPECT_EQ(mobile->FindNode("ir2_add"), -1);  // stride 2: no residual
  EXPECT_NE(mobile->FindNode("ir3_add"), -1);
  for (const char* yaml : {"{name: resnet_mini}", "{name: mobilenet_mini}"}) {
    auto m = Built(yaml, {1, 8, 8}, 4);
    ASSERT_NE(m, nullptr) << yaml;
    Tensor x = testing::RandomTensor({3, 1, 8, 8}, 9);
    const Tensor& y = m->Forward(x);
    ASSERT_EQ(y.shape(), (Shape{3, 4}));
    Tensor dy(y.shape());
    dy.Fill(0.25f);
    m->Backward(x, dy);
    for (auto& [name, p] : m->NamedParameters()) {
      for (int64_t i = 0; i < p->grad.numel(); ++i) ASSERT_TRUE(std::isfinite(p->grad[i])) << name;
    }
  }
}

TEST(BufferPlanTest, OverlappingUsesNeverShareAndShapesMustMatch) {
  // a [0,1], b [1,2], c [2,3] (same shape): a and c may share, b may not.
  BufferPlan p = PlanBuffers({{{4}, 0, 1}, {{4}, 1, 2}, {{4}, 2, 3}, {{8}, 3, 4}});
  EXPECT_EQ(p.slot[0], p.slot[2]);
  EXPECT_NE(p.slot[0], p.slot[1]);
  EXPECT_NE(p.slot[3], p.slot[0]);  // another shape
  EXPECT_EQ(p.num_slots(), 3);
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(CheckpointTest, RoundTripRestoresOutputsExactly) {
  auto a = Built("{name: cnn_bn}", {1, 28, 28}, 10, 1);
  Tensor x = testing::RandomTensor({3, 1, 28, 28}, 2);
  a->Forward(x);  // moves the BatchNorm running statistics away from their init
  a->set_training(false);
  Tensor ya = a->Forward(x);
  const std::string path = TempPath("cnn_bn.pb");
  ASSERT_TRUE(SaveCheckpoint(*a, path, {.seed = 1, .epochs = 1}).ok());
  auto b = Built("{name: cnn_bn}", {1, 28, 28}, 10, 2);
  b->set_training(false);
  ASSERT_TRUE(LoadCheckpoint(path, b.get()).ok());
  Tensor yb = b->Forward(x);
  for (int64_t i = 0; i < ya.numel(); ++i) ASSERT_EQ(ya[i], yb[i]);
}

TEST(CheckpointTest, MismatchNamesTheFirstTensor) {
  auto a = Built("{name: mlp}", {1, 28, 28}, 10);
  const std::string path = TempPath("mlp.pb");
  ASSERT_TRUE(SaveCheckpoint(*a, path).ok());
  auto narrower = Built("{name: mlp, hidden: [256, 64]}", {1, 28, 28}, 10);
  absl::Status s = LoadCheckpoint(path, narrower.get());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'fc2.weight'"), std::string::npos) << s;
  EXPECT_NE(s.message().find("[128, 256]"), std::string::npos) << s;
  EXPECT_NE(s.message().find("[64, 256]"), std::string::npos) << s;
  // Loading did not touch the model.
  auto fresh = Built("{name: mlp, hidden: [256, 64]}", {1, 28, 28}, 10);
  EXPECT_EQ(narrower->layer(1).parameters()[0]->value[0], fresh->layer(1).parameters()[0]->value[0]);

  auto cnn = Built("{name: cnn}", {1, 28, 28}, 10);
  s = LoadCheckpoint(path, cnn.get());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'conv1.weight'"), std::string::npos) << s;
  auto deeper = Built("{name: mlp, hidden: [256, 128, 10]}", {1, 28, 28}, 10);
  s = LoadCheckpoint(path, deeper.get());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("'fc4.weight'"), std::string::npos) << s;

  EXPECT_EQ(LoadCheckpoint(TempPath("nope.pb"), a.get()).code(), absl::StatusCode::kNotFound);
  std::ofstream(TempPath("junk.pb")) << "this is not a protobuf \x01\x02\xff";
  EXPECT_EQ(LoadCheckpoint(TempPath("junk.pb"), a.get()).code(), absl::StatusCode::kInvalidArgument);
}

// `model: {winograd: true}` reaches the eligible convs (CreateModel, then
// Build): the cnn's conv2 switches to Winograd F(2x2, 3x3), conv1 (one input
// channel) does not; the logits move by float rounding only. A value that is
// not a boolean is an error naming the key.
TEST(ModelsTest, WinogradKeyReachesTheEligibleConvs) {
  std::unique_ptr<Model> models[2];
  for (int on = 0; on < 2; ++on) {
    ParamReader p(YAML::Load(on == 1 ? "{name: cnn, winograd: true}" : "{name: cnn}"), "model.yaml", "model");
    auto m = CreateModel(p);
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_TRUE(p.Finish().ok());
    EXPECT_EQ((*m)->winograd(), on == 1);
    ASSERT_TRUE((*m)->Build({1, 28, 28}, 10, 7).ok());
    models[on] = std::move(m).value();
  }
  auto* conv2 = dynamic_cast<Conv2d*>(models[1]->FindLayer("conv2"));
  ASSERT_NE(conv2, nullptr);
  EXPECT_TRUE(conv2->WinogradLayer());
  EXPECT_FALSE(dynamic_cast<Conv2d*>(models[1]->FindLayer("conv1"))->WinogradLayer());
  const Tensor x = testing::RandomTensor({4, 1, 28, 28}, 3);
  const Tensor exact = models[0]->Forward(x);
  const Tensor fast = models[1]->Forward(x);
  double largest = 0.0;
  for (int64_t i = 0; i < exact.numel(); ++i) largest = std::max(largest, double{std::fabs(exact[i] - fast[i])});
  EXPECT_GT(largest, 0.0) << "the switch changed nothing";
  EXPECT_LT(largest, 1e-4);

  ParamReader bad(YAML::Load("{name: cnn, winograd: maybe}"), "model.yaml", "model");
  auto m = CreateModel(bad);
  const absl::Status s = m.ok() ? bad.Finish() : m.status();
  EXPECT_NE(std::string(s.message()).find("model.winograd: expected a boolean"), std::string::npos) << s;
}

}  // namespace
}  // namespace quant::nn
