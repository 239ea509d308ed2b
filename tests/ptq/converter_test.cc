// The nn::Model -> QuantizedModel conversion: BN folding and the NCHW->NHWC
// permutation exact in float, static conversion agreeing with fake_quant
// (top-1) and gemmlowp (bit-identical) on trained models, save/load round trip,
// and the errors (unsupported layer, degenerate calibration, another model's file).
#include "quant/ptq/converter.h"

#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "quant/backends/float_kernels.h"
#include "quant/backends/quantized_model.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/linear.h"
#include "quant/ptq/evaluate.h"
#include "quant/ptq/ptq_method.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::ptq {
namespace {

using ptq_test::Config;
using ptq_test::MakeModel;

Tensor RandomImages(int64_t n, const std::vector<int64_t>& chw, uint64_t seed) {
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), chw.begin(), chw.end());
  Tensor t(shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = d(rng);
  return t;
}

void RandomizeBatchNorm(nn::Model* model, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.5f, 1.5f), c(-0.5f, 0.5f);
  for (int i = 0; i < model->num_layers(); ++i) {
    const std::string type = model->layer(i).type();
    if (type != "batchnorm1d" && type != "batchnorm2d") continue;
    auto* bn = static_cast<nn::BatchNorm*>(&model->layer(i));
    for (int64_t k = 0; k < bn->running_mean().numel(); ++k) {
      bn->running_mean().data()[k] = c(rng);
      bn->running_var().data()[k] = u(rng);
      bn->weight().value.data()[k] = u(rng);
      bn->bias().value.data()[k] = c(rng);
    }
  }
}

double MaxAbsDiff(const float* a, const float* b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// BN folded into the conv, ReLU fused, OIHW->OHWI and the first FC's columns
// permuted to NHWC order (3 input channels, so the permutation matters).
TEST(ConverterTest, BatchNormFoldingAndLayoutExactInFloat) {
  const std::vector<int64_t> chw = {3, 8, 8};
  auto model = MakeModel("{name: cnn_bn, channels: [4, 6], hidden: 16}", chw, 5);
  RandomizeBatchNorm(model.get(), 7);
  model->set_training(false);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  // conv1(+bn1+relu), pool, conv2(+bn2+relu), pool, flatten, fc1(+relu), fc2: BN layers are gone.
  ASSERT_EQ(net->model.ops_size(), 7);
  EXPECT_EQ(net->model.ops(0).fused_activation(), backends::RELU);
  // Each pass said what it did.
  ASSERT_EQ(net->log.size(), 5u);
  EXPECT_NE(net->log[1].find("fold_batch_norm: 2 BatchNorms folded: bn1 into conv1, bn2 into conv2"), std::string::npos)
      << net->log[1];
  EXPECT_NE(net->log[2].find("fuse_activations: 3 fused"), std::string::npos) << net->log[2];
  EXPECT_NE(net->log[4].find("1 linear column permutation"), std::string::npos) << net->log[4];
  EXPECT_EQ(net->weighted.size(), 4u);
  const Tensor x = RandomImages(64, chw, 3);
  const Tensor& want = model->Forward(x);
  std::vector<float> got;
  const std::vector<float> nhwc = ToNhwc(x);
  ASSERT_TRUE(FloatForward(net->model, nhwc.data(), 64, &got).ok());
  ASSERT_EQ(static_cast<int64_t>(got.size()), want.numel());
  EXPECT_LE(MaxAbsDiff(got.data(), want.data(), want.numel()), 1e-5);
  // Without the permutation of the first FC the outputs differ: the check can fail.
  backends::QuantizedModel wrong = net->model;
  const WeightedLayer& w = net->weighted[2];
  auto* fc = wrong.mutable_tensors(w.weight_tensor);
  for (int j = 0; j < fc->float_data_size(); ++j) fc->set_float_data(j, w.torch_weight.data()[j]);
  ASSERT_TRUE(FloatForward(wrong, nhwc.data(), 64, &got).ok());
  EXPECT_GT(MaxAbsDiff(got.data(), want.data(), want.numel()), 1e-3);
}

// Graph models: residual adds (resnet_mini), depthwise convs and ReLU6 (mobilenet_mini), global
// average pooling; the lowered float graph equals the nn model in float (BN folded).
TEST(ConverterTest, GraphModelsLowerExactlyInFloat) {
  for (const char* yaml : {"{name: resnet_mini, channels: [4, 8, 8]}", "{name: mobilenet_mini, expansion: 2}"}) {
    // 28x28: nn::Conv2d's depthwise kernel writes out of bounds on 8x8 inputs (see the report).
    const std::vector<int64_t> chw = {2, 28, 28};
    auto model = MakeModel(yaml, chw, 5);
    RandomizeBatchNorm(model.get(), 11);
    model->set_training(false);
    auto net = ExtractFloatNet(*model);
    ASSERT_TRUE(net.ok()) << yaml << ": " << net.status();
    for (const std::string& line : net->log) std::printf("%s: %s\n", yaml, line.c_str());
    int adds = 0, depthwise = 0;
    for (const backends::Op& op : net->model.ops()) {
      adds += op.has_add();
      depthwise += op.has_conv2d() && op.conv2d().groups() > 1;
    }
    EXPECT_GT(adds, 0) << yaml;
    const Tensor x = RandomImages(4, chw, 5);
    const Tensor& want = model->Forward(x);
    std::vector<float> got;
    const std::vector<float> nhwc = ToNhwc(x);
    ASSERT_TRUE(FloatForward(net->model, nhwc.data(), 4, &got).ok());
    ASSERT_EQ(static_cast<int64_t>(got.size()), want.numel());
    EXPECT_LE(MaxAbsDiff(got.data(), want.data(), want.numel()), 1e-4) << yaml;
    if (std::string(yaml).find("mobilenet") != std::string::npos) EXPECT_GT(depthwise, 0);
  }
}

// The float executor runs any range of ops: the second half from the first half's values
// gives the whole run's output.
TEST(ConverterTest, FloatExecutorRunsARangeOfOps) {
  auto model = MakeModel("{name: resnet_mini, channels: [4, 8, 8]}", {1, 8, 8}, 3);
  model->set_training(false);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  const Tensor x = RandomImages(4, {1, 8, 8}, 6);
  std::vector<std::vector<float>> values(net->model.tensors_size());
  values[backends::InputTensor(net->model)].assign(x.data(), x.data() + x.numel());
  const int half = net->model.ops_size() / 2;
  backends::floatk::RunOptions first, second;
  first.last_op = half - 1;
  second.first_op = half;
  ASSERT_TRUE(backends::floatk::RunGraph(net->model, 4, &values, first).ok());
  ASSERT_TRUE(backends::floatk::RunGraph(net->model, 4, &values, second).ok());
  std::vector<float> whole;
  ASSERT_TRUE(FloatForward(net->model, x.data(), 4, &whole).ok());
  EXPECT_EQ(values[backends::OutputTensor(net->model)], whole);
  // A range whose inputs were not computed is refused naming the op and the tensor.
  std::vector<std::vector<float>> empty(net->model.tensors_size());
  const absl::Status s = backends::floatk::RunGraph(net->model, 4, &empty, second);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("has no value"), std::string::npos) << s;
}

TEST(ConverterTest, BatchNorm1dAfterLinearFolds) {
  auto model = MakeModel(
      "{name: sequential, layers: [flatten, {type: linear, out_features: 12}, batchnorm1d, relu6,"
      " {type: linear, out_features: 4}]}",
      {1, 6, 6}, 4);
  RandomizeBatchNorm(model.get(), 9);
  model->set_training(false);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok()) << net.status();
  EXPECT_EQ(net->model.ops(1).fused_activation(), backends::RELU6);
  const Tensor x = RandomImages(32, {1, 6, 6}, 4);
  const Tensor& want = model->Forward(x);
  std::vector<float> got;
  ASSERT_TRUE(FloatForward(net->model, x.data(), 32, &got).ok());
  EXPECT_LE(MaxAbsDiff(got.data(), want.data(), want.numel()), 1e-5);
}

TEST(ConverterTest, UnsupportedLayersNamed) {
  // Average pooling has an integer form in v2; a standalone ReLU (nothing to fuse into) has not.
  auto avg = MakeModel("{name: sequential, layers: [{type: conv2d, out_channels: 2}, relu,"
                       " {type: avgpool2d, kernel: 2}, flatten, {type: linear, out_features: 3}]}",
                       {1, 8, 8}, 3);
  auto s = ExtractFloatNet(*avg);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->model.ops(1).has_average_pool2d());
  auto lone_relu = MakeModel("{name: sequential, layers: [relu, flatten, {type: linear, out_features: 3}]}",
                             {1, 4, 4}, 3);
  s = ExtractFloatNet(*lone_relu);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("relu1"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("there is none"), std::string::npos) << s.status();
  auto ht = MakeModel("{name: sequential, layers: [flatten, {type: linear, out_features: 5}, hardtanh,"
                      " {type: linear, out_features: 3}]}",
                      {1, 4, 4}, 3);
  s = ExtractFloatNet(*ht);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("Hardtanh"), std::string::npos) << s.status();
  auto bn_first = MakeModel("{name: sequential, layers: [batchnorm2d, flatten, {type: linear, out_features: 3}]}",
                            {1, 4, 4}, 3);
  s = ExtractFloatNet(*bn_first);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("bn1"), std::string::npos) << s.status();
}

struct Trained {
  std::unique_ptr<Dataset> ds;
  std::unique_ptr<nn::Model> model;
};

Trained Train(const std::string& model_yaml, int channels, int image_size = 8) {
  Trained t;
  t.ds = ptq_test::Synthetic(channels, image_size);
  t.model = MakeModel(model_yaml, t.ds->sample_shape(), t.ds->num_classes());
  ptq_test::TrainFp32(t.model.get(), *t.ds, 3);
  return t;
}

absl::StatusOr<backends::QuantizedModel> Convert(nn::Model& model, const Dataset& ds, const std::string& quant,
                                                 int64_t n = 256) {
  auto net = ExtractFloatNet(model);
  if (!net.ok()) return net.status();
  auto config = Config(quant);
  auto q = MakeStaticQuantizers(*net, *config);
  if (!q.ok()) return q.status();
  const std::vector<float> calib = CalibrationImages(ds.train(), n, 0);
  return QuantizeStatic(*net, *q, calib.data(), n, 64);
}

struct Case {
  const char* model;
  int channels;
  const char* quant;
  int image_size = 8;  // mobilenet_mini: 28 (nn::Conv2d's depthwise kernel fails on 8x8 inputs)
};

class StaticAgreement : public ::testing::TestWithParam<Case> {};

TEST_P(StaticAgreement, FakeQuantTop1AndGemmlowpBitIdentical) {
  const Case& c = GetParam();
  Trained t = Train(c.model, c.channels, c.image_size);
  auto qm = Convert(*t.model, *t.ds, c.quant);
  ASSERT_TRUE(qm.ok()) << qm.status();
  auto evals = EvaluateBackends(*qm, t.ds->test(), t.ds->sample_shape(), {"reference", "fake_quant", "gemmlowp"},
                                {.batch1_images = 5});
  ASSERT_TRUE(evals.ok()) << evals.status();
  const BackendEvaluation& ref = (*evals)[0];
  const BackendEvaluation& fq = (*evals)[1];
  const BackendEvaluation& gl = (*evals)[2];
  EXPECT_EQ(ref.agreement.identical, ref.agreement.compared);
  EXPECT_GT(ref.test_accuracy, 0.5) << "the trained model should have learned the synthetic task";
  EXPECT_GE(fq.agreement.top1_agreement, 0.995);
  EXPECT_GT(fq.agreement.compared, 0);
  EXPECT_EQ(gl.agreement.identical, gl.agreement.compared);
  EXPECT_EQ(gl.agreement.top1_agreement, 1.0);
  // Per op: every op's output compared; gemmlowp never departs from the reference.
  ASSERT_EQ(static_cast<int>(gl.per_op.size()), qm->ops_size());
  EXPECT_EQ(gl.first_departure, -1);
  for (const OpAgreement& o : gl.per_op) EXPECT_EQ(o.counts.identical, o.counts.compared) << o.op;
  ASSERT_EQ(static_cast<int>(fq.per_op.size()), qm->ops_size());
  EXPECT_GT(fq.per_op[0].counts.compared, 0);
  std::printf("%s %s: reference acc %.4f, fake_quant top-1 agreement %.4f (%lld of %lld outputs identical, max %lld "
              "steps)\n",
              c.model, c.quant, ref.test_accuracy, fq.agreement.top1_agreement,
              static_cast<long long>(fq.agreement.identical), static_cast<long long>(fq.agreement.compared),
              static_cast<long long>(fq.agreement.max_abs_steps));
}

INSTANTIATE_TEST_SUITE_P(
    Models, StaticAgreement,
    ::testing::Values(Case{"{name: mlp}", 1, ptq_test::kInt8PerChannel},
                      Case{"{name: cnn, channels: [4, 8], hidden: 32}", 1, ptq_test::kInt8PerChannel},
                      Case{"{name: cnn_bn, channels: [4, 8], hidden: 32}", 3, ptq_test::kInt8PerChannel},
                      Case{"{name: cnn, channels: [4, 8], hidden: 32}", 3,
                           "{weights: {bits: 8, signed: false}, activations: {bits: 8, signed: true}}"},
                      Case{"{name: resnet_mini, channels: [4, 8, 8]}", 1, ptq_test::kInt8PerChannel},
                      Case{"{name: mobilenet_mini, expansion: 2}", 2, ptq_test::kInt8PerChannel, 28}));

TEST(ConverterTest, QuantizedModelRoundTripAndOtherModelRejected) {
  Trained t = Train("{name: cnn, channels: [4, 8], hidden: 32}", 1);
  auto qm = Convert(*t.model, *t.ds, ptq_test::kInt8PerChannel);
  ASSERT_TRUE(qm.ok()) << qm.status();
  EXPECT_GT(qm->tensors(qm->ops(0).inputs(1)).float_data_size(), 0) << "float weights are kept";
  const std::string bytes = backends::SerializeQuantizedModel(*qm);
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/m.qlq";
  ASSERT_TRUE(backends::SaveQuantizedModel(*qm, path).ok());
  auto loaded = backends::LoadQuantizedModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(backends::SerializeQuantizedModel(*loaded), bytes);
  EXPECT_EQ(loaded->SerializeAsString(), qm->SerializeAsString());
  EXPECT_TRUE(backends::CheckModelMatches(*loaded, "cnn", {8, 8, 1}, t.ds->num_classes()).ok());
  absl::Status other = backends::CheckModelMatches(*loaded, "mlp", {8, 8, 1}, t.ds->num_classes());
  EXPECT_FALSE(other.ok());
  EXPECT_NE(other.message().find("mlp"), std::string::npos) << other;
  // Truncated file.
  auto truncated = backends::ParseQuantizedModel(std::string_view(bytes).substr(0, bytes.size() / 2), path);
  EXPECT_FALSE(truncated.ok());
}

TEST(ConverterTest, DegenerateCalibrationNamesTheLayer) {
  Trained t = Train("{name: mlp}", 1);
  // A NaN weight makes fc2's outputs NaN: its observers see no usable range.
  auto* fc2 = dynamic_cast<nn::Linear*>(t.model->FindLayer("fc2"));
  ASSERT_NE(fc2, nullptr);
  for (int64_t i = 0; i < fc2->weight().value.numel(); ++i) fc2->weight().value.data()[i] = NAN;
  auto qm = Convert(*t.model, *t.ds, "{weights: {bits: 8, signed: true, symmetric: true}, activations: {bits: 8}}");
  ASSERT_FALSE(qm.ok());
  EXPECT_NE(qm.status().message().find("fc2"), std::string::npos) << qm.status();
}

TEST(ConverterTest, SpecsTheIntegerModelCannotHoldAreRejected) {
  auto model = MakeModel("{name: mlp}", {1, 8, 8}, 4);
  auto net = ExtractFloatNet(*model);
  ASSERT_TRUE(net.ok());
  auto c = Config("{weights: {bits: 4, signed: true, symmetric: true, granularity: per_block, axis: 1,"
                  " block_size: 16}, activations: {bits: 8}}");
  auto q = MakeStaticQuantizers(*net, *c);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("fc1"), std::string::npos) << q.status();
  EXPECT_NE(q.status().message().find("weight_only"), std::string::npos) << q.status();
  c = Config("{weights: {bits: 8}, activations: {bits: 8}, overrides: [{match: fc2, activations: none}]}");
  q = MakeStaticQuantizers(*net, *c);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("fc2"), std::string::npos) << q.status();
  c = Config("{weights: {bits: 8}, activations: {bits: 8}, overrides: [{match: fc2, activations: {signed: true}}]}");
  q = MakeStaticQuantizers(*net, *c);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("one activation dtype"), std::string::npos) << q.status();
  // Static PTQ needs an affine (integer-grid) quantizer: a number format cast is refused by name.
  c = Config("{weights: {bits: 8}, activations: {quantizer: format_cast, format: bf16}}");
  q = MakeStaticQuantizers(*net, *c);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(q.status().message().find("layer 'input': activation quantizer"), std::string::npos) << q.status();
  EXPECT_NE(q.status().message().find("is not an affine quantizer"), std::string::npos) << q.status();
  c = Config("{weights: {quantizer: format_cast, format: fp8_e4m3}, activations: {bits: 8}}");
  q = MakeStaticQuantizers(*net, *c);
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("layer 'fc1': weight quantizer"), std::string::npos) << q.status();
}

}  // namespace
}  // namespace quant::ptq
