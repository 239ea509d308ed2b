// ptq `from_qat` (the trained quantizers of a QAT run converted exactly) and the
// numerical debugger (quant/ptq/numerical_debugger.h), on models trained with the
// qat scheme on synthetic data.
#include <cmath>
#include <memory>
#include <set>

#include "gtest/gtest.h"
#include "quant/backends/backend.h"
#include "quant/core/registry.h"
#include "quant/nn/linear.h"
#include "quant/ptq/converter.h"
#include "quant/ptq/evaluate.h"
#include "quant/ptq/numerical_debugger.h"
#include "quant/ptq/ptq_method.h"
#include "quant/quantizers/lsq_quantizer.h"
#include "quant/training/quantizer_transform.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::ptq {
namespace {

using ptq_test::Config;

std::unique_ptr<PtqMethod> FromQat() {
  ParamReader p(YAML::Load("{method: from_qat}"), "p.yaml", "ptq");
  auto m = Registry<PtqMethod>::Get().CreateFrom(p, "method", "static", "method");
  EXPECT_TRUE(m.ok()) << m.status();
  return std::move(m).value();
}

// fp32 pretraining, then QAT with `quant` for 2 epochs (observers frozen after the first).
absl::Status TrainQat(nn::Model* model, const Dataset& ds, const QuantConfig& quant, const std::string& extra = "") {
  ptq_test::TrainFp32(model, ds, 2);
  ParamReader p(YAML::Load("{scheme: qat, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.01, momentum: 0.9},"
                           " freeze_observers_after_epoch: 1" + extra + "}"),
                "t.yaml", "train");
  auto scheme = Registry<TrainingScheme>::Get().CreateFrom(p, "scheme", "fp32", "scheme");
  if (!scheme.ok()) return scheme.status();
  FILE* log = std::tmpfile();
  TrainContext ctx{.dataset = &ds, .model = model, .seed = 0, .threads = 1, .run_dir = "", .name = "t",
                   .quant = &quant, .progress = TrainContext::Progress::kQuiet, .log = log};
  auto r = (*scheme)->Train(ctx);
  std::fclose(log);
  return r.status();
}

struct Deployed {
  PtqResult r;
  std::vector<int32_t> reference_predictions;
  double reference_accuracy = 0;
};

Deployed Deploy(nn::Model* model, const Dataset& ds, const QuantConfig& quant) {
  Deployed d;
  auto m = FromQat();
  PtqContext ctx{.model = model, .quant = &quant, .dataset = &ds, .seed = 0, .log = nullptr, .name = "t"};
  auto r = m->Apply(ctx);
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return d;
  d.r = *r;
  auto evals = EvaluateBackends(d.r.model, ds.test(), ds.sample_shape(), {"reference"},
                                EvaluateOptions{.batch1_images = 1, .batch1_seconds = 0.1});
  EXPECT_TRUE(evals.ok()) << evals.status();
  if (evals.ok()) {
    d.reference_predictions = (*evals)[0].predictions;
    d.reference_accuracy = (*evals)[0].test_accuracy;
  }
  return d;
}

double Agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  int64_t same = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) same += a[i] == b[i];
  return a.empty() ? 0.0 : static_cast<double>(same) / a.size();
}

const backends::Tensor& WeightOf(const backends::QuantizedModel& m, const std::string& op) {
  for (const backends::Op& o : m.ops()) {
    if (o.name() == op) return m.tensors(backends::WeightTensor(o));
  }
  ADD_FAILURE() << "no op " << op;
  return m.tensors(0);
}

const backends::Tensor& OutputOf(const backends::QuantizedModel& m, const std::string& op) {
  for (const backends::Op& o : m.ops()) {
    if (o.name() == op) return m.tensors(o.outputs(0));
  }
  ADD_FAILURE() << "no op " << op;
  return m.tensors(0);
}

nn::Layer& LayerNamed(nn::Model& m, const std::string& name) {
  for (int i = 0; i < m.num_layers(); ++i) {
    if (m.layer(i).name() == name) return m.layer(i);
  }
  ADD_FAILURE() << "no layer " << name;
  return m.layer(0);
}

// Sets a tensor's qparams and those of the max pools / flattens that pass it on, then the multipliers.
void SetQParams(backends::QuantizedModel* m, int tensor, float scale, int32_t zero_point) {
  m->mutable_tensors(tensor)->set_scale(0, scale);
  m->mutable_tensors(tensor)->set_zero_point(0, zero_point);
  for (const backends::Op& op : m->ops()) {
    if ((op.has_max_pool2d() || op.has_flatten()) && op.inputs(0) == tensor) {
      SetQParams(m, op.outputs(0), scale, zero_point);
    }
  }
}

class FromQatTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ds_ = ptq_test::Synthetic(1, 8, 1200, 1000).release(); }
  static void TearDownTestSuite() { delete ds_; }
  static Dataset* ds_;
};
Dataset* FromQatTest::ds_ = nullptr;

TEST_F(FromQatTest, LsqW4A4KeepsTheLearnedStepSizesAndTheSimulatedPredictions) {
  auto model = ptq_test::MakeModel("{name: mlp, hidden: [32, 16]}", ds_->sample_shape(), ds_->num_classes());
  auto quant = Config(
      "{weights: {quantizer: lsq, bits: 4}, activations: {quantizer: lsq, bits: 4},"
      " overrides: [{match: fc3, weights: {bits: 8}, activations: {bits: 8}}]}");
  ASSERT_TRUE(TrainQat(model.get(), *ds_, *quant).ok());
  Deployed d = Deploy(model.get(), *ds_, *quant);
  ASSERT_TRUE(d.r.has_integer_model);
  EXPECT_EQ(d.r.method, "from_qat");
  // The integer model's weight scale of fc2 is the learned LSQ step, bit for bit; 4-bit codes.
  auto* t = dynamic_cast<QuantizerTransform*>(LayerNamed(*model, "fc2").weight_transform());
  ASSERT_NE(t, nullptr);
  const float step = t->quantizer().qparams().scale[0];
  const backends::Tensor& w = WeightOf(d.r.model, "fc2");
  ASSERT_EQ(w.scale_size(), 1);
  EXPECT_EQ(w.scale(0), step);
  EXPECT_EQ(w.bits(), 4);
  for (int32_t v : backends::TensorValues(w)) {
    EXPECT_GE(v, -8);
    EXPECT_LE(v, 7);
  }
  // Activations after ReLU: LSQ's unsigned 4-bit grid [0, 15] at the learned step, zero point 0.
  const backends::Tensor& y = OutputOf(d.r.model, "fc1");
  auto* a = dynamic_cast<QuantizerTransform*>(LayerNamed(*model, "relu1").output_transform());
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(y.scale(0), a->quantizer().qparams().scale[0]);
  EXPECT_EQ(y.zero_point(0), 0);
  for (const backends::Op& op : d.r.model.ops()) {
    if (op.name() == "fc1") {
      EXPECT_EQ(op.output_min(), 0);
      EXPECT_EQ(op.output_max(), 15);
    }
  }
  // The deployed model predicts what the QAT model predicted.
  EXPECT_GE(Agreement(d.reference_predictions, d.r.simulated_predictions), 0.99);
  EXPECT_NEAR(d.reference_accuracy, d.r.test_accuracy, 0.01);
}

TEST_F(FromQatTest, ConvBnAffineW8A8FoldsTheBatchNormAsQatDid) {
  auto model = ptq_test::MakeModel("{name: cnn_bn, channels: [4, 6], hidden: 16}", ds_->sample_shape(),
                                   ds_->num_classes());
  auto quant = Config(
      "{weights: {quantizer: affine, bits: 8, symmetric: true, granularity: per_channel, observer: "
      "moving_average_per_channel_minmax}, activations: {quantizer: affine, bits: 8, observer: moving_average_minmax}}");
  ASSERT_TRUE(TrainQat(model.get(), *ds_, *quant, ", freeze_bn_after_epoch: 1").ok());
  Deployed d = Deploy(model.get(), *ds_, *quant);
  ASSERT_TRUE(d.r.has_integer_model);
  const backends::Tensor& w = WeightOf(d.r.model, "conv1");
  EXPECT_EQ(w.scale_size(), 4);  // per channel
  // PyTorch's quint8 activations [0, 255] live in int8 shifted by -128.
  EXPECT_LE(OutputOf(d.r.model, "conv1").zero_point(0), 0);
  EXPECT_GE(Agreement(d.reference_predictions, d.r.simulated_predictions), 0.99);
  EXPECT_NEAR(d.reference_accuracy, d.r.test_accuracy, 0.01);
}

TEST_F(FromQatTest, DorefaWeightsArePacked_AsOddCodesAtScaleOneOverN_AndPactClipsGiveTheScale) {
  auto model = ptq_test::MakeModel("{name: mlp, hidden: [32, 16]}", ds_->sample_shape(), ds_->num_classes());
  auto quant = Config(
      "{weights: {quantizer: dorefa, bits: 4}, activations: {quantizer: pact, bits: 4, alpha_init: 4},"
      " overrides: [{match: fc3, weights: none, activations: none},"
      " {match: fc3, weights: {quantizer: affine, bits: 8, symmetric: true}, activations: {quantizer: affine, bits: 8}}]}");
  ASSERT_TRUE(TrainQat(model.get(), *ds_, *quant).ok());
  Deployed d = Deploy(model.get(), *ds_, *quant);
  ASSERT_TRUE(d.r.has_integer_model);
  const backends::Tensor& w = WeightOf(d.r.model, "fc2");
  EXPECT_FLOAT_EQ(w.scale(0), 1.0f / 15.0f);
  EXPECT_EQ(w.bits(), 5);  // odd codes in [-15, 15]
  std::set<int32_t> codes;
  for (int32_t v : backends::TensorValues(w)) {
    EXPECT_EQ(std::abs(v) % 2, 1) << v;
    codes.insert(v);
  }
  EXPECT_GE(codes.size(), 4u);
  // PACT: scale alpha / 15 with the learned alpha.
  auto* a = dynamic_cast<QuantizerTransform*>(LayerNamed(*model, "relu1").output_transform());
  ASSERT_NE(a, nullptr);
  float alpha = 0;
  for (LearnedParameter* p : a->quantizer().parameters()) alpha = p->value[0];
  EXPECT_FLOAT_EQ(OutputOf(d.r.model, "fc1").scale(0), alpha / 15.0f);
  EXPECT_GE(Agreement(d.reference_predictions, d.r.simulated_predictions), 0.99);
}

TEST_F(FromQatTest, RefusesWhatCannotBecomeInteger) {
  auto model = ptq_test::MakeModel("{name: mlp, hidden: [16]}", ds_->sample_shape(), ds_->num_classes());
  auto m = FromQat();
  // A float tensor in the middle.
  auto float_mid = Config("{weights: {bits: 8}, activations: {bits: 8}, overrides: [{match: relu1, activations: none}]}");
  absl::Status s = m->Check(*model, *float_mid);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("relu1"), std::string::npos) << s;
  EXPECT_NE(s.message().find("float"), std::string::npos) << s;
  // A number format without an integer grid.
  auto fp8 = Config("{weights: {bits: 8}, activations: {quantizer: format_cast, format: fp8_e4m3}}");
  s = m->Check(*model, *fp8);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("integer grid"), std::string::npos) << s;
  // A model that QAT never touched.
  auto int8 = Config("{weights: {bits: 8}, activations: {bits: 8}}");
  PtqContext ctx{.model = model.get(), .quant = int8.get(), .dataset = ds_, .seed = 0, .log = nullptr, .name = "t"};
  auto r = m->Apply(ctx);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("train.scheme must be qat"), std::string::npos) << r.status();
}

TEST_F(FromQatTest, AWeightQuantizedBeforeAnUnfoldedBatchNormIsRefusedNamingTheLayer) {
  auto model = ptq_test::MakeModel("{name: cnn_bn, channels: [4, 6], hidden: 16}", ds_->sample_shape(),
                                   ds_->num_classes());
  auto quant = Config("{weights: {bits: 8, symmetric: true}, activations: {bits: 8}}");
  ASSERT_TRUE(TrainQat(model.get(), *ds_, *quant, ", fold_bn: false").ok());
  auto m = FromQat();
  PtqContext ctx{.model = model.get(), .quant = quant.get(), .dataset = ds_, .seed = 0, .log = nullptr, .name = "t"};
  auto r = m->Apply(ctx);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("conv1"), std::string::npos) << r.status();
  EXPECT_NE(r.status().message().find("fold_bn"), std::string::npos) << r.status();
}

// ---- train.integer_exact ----

// The QAT model's logits against the reference backend's, image by image.
struct Exactness {
  int64_t images = 0, same_top1 = 0, logits = 0, same_logits = 0;
};
Exactness CompareLogits(nn::Model& model, const backends::QuantizedModel& int_model, const Dataset& ds) {
  Exactness e;
  model.set_training(false);
  auto ref = backends::CreateBackend("reference");
  EXPECT_TRUE(ref.ok());
  EXPECT_TRUE((*ref)->Prepare(int_model).ok());
  const DataSplit& test = ds.test();
  for (int64_t start = 0; start < test.size(); start += 250) {
    const int64_t b = std::min<int64_t>(250, test.size() - start);
    const Tensor x = test.Slice(start, b);
    const Tensor& logits = model.Forward(x);
    const std::vector<float> nhwc = ToNhwc(x);
    backends::RunOutput out;
    EXPECT_TRUE((*ref)->Run(nhwc.data(), b, &out).ok());
    const int64_t classes = logits.numel() / b;
    for (int64_t i = 0; i < b; ++i) {
      int64_t a = 0, r = 0;
      for (int64_t k = 0; k < classes; ++k) {
        const float lq = logits[i * classes + k], lr = out.logits[i * classes + k];
        e.same_logits += std::fabs(lq - lr) <= 1e-6f * std::max(1.0f, std::fabs(lr));
        if (lq > logits[i * classes + a]) a = k;
        if (lr > out.logits[i * classes + r]) r = k;
      }
      e.logits += classes;
      e.same_top1 += a == r;
      ++e.images;
    }
  }
  return e;
}

TEST_F(FromQatTest, IntegerExactQatComputesWhatTheIntegerModelComputes) {
  struct Case {
    const char* model;
    const char* quant;
    const char* train;
    bool every_op_exact;  // no add/concat/lookup table (those stay float-simulated)
  };
  const Case cases[] = {
      {"{name: mlp, hidden: [32, 16]}",
       "{weights: {quantizer: lsq, bits: 4}, activations: {quantizer: lsq, bits: 4},"
       " overrides: [{match: fc3, weights: {bits: 8}, activations: {bits: 8}}]}",
       ", integer_exact: true", true},
      {"{name: cnn_bn, channels: [4, 6], hidden: 16}",
       "{weights: {bits: 8, symmetric: true, granularity: per_channel}, activations: {bits: 8}}",
       ", integer_exact: true, freeze_bn_after_epoch: 1", true},
      {"{name: mlp, hidden: [32, 16]}",
       "{weights: {quantizer: dorefa, bits: 4}, activations: {quantizer: pact, bits: 2, alpha_init: 4},"
       " overrides: [{match: fc3, weights: none, activations: none},"
       " {match: fc3, weights: {quantizer: affine, bits: 8, symmetric: true}, activations: {quantizer: affine, bits: 8}}]}",
       ", integer_exact: true", true},
      {"{name: graph, nodes: [{name: c1, op: conv2d, inputs: [input], out_channels: 6, padding: 1}, {name: r1, op: relu},"
       " {name: c2, op: conv2d, out_channels: 6, padding: 1}, {name: sum, op: add, inputs: [c2, r1]},"
       " {name: r2, op: relu}, {name: gap, op: global_avg_pool}, {name: fc, op: linear, out_features: 10}]}",
       "{weights: {bits: 8, symmetric: true, granularity: per_channel}, activations: {bits: 8}}",
       ", integer_exact: true", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.model);
    auto model = ptq_test::MakeModel(c.model, ds_->sample_shape(), ds_->num_classes());
    auto quant = Config(c.quant);
    ASSERT_TRUE(TrainQat(model.get(), *ds_, *quant, c.train).ok());
    ASSERT_NE(model->input_transform(), nullptr);  // the input is quantized in this mode
    Deployed d = Deploy(model.get(), *ds_, *quant);
    ASSERT_TRUE(d.r.has_integer_model);
    const Exactness e = CompareLogits(*model, d.r.model, *ds_);
    if (c.every_op_exact) {
      EXPECT_EQ(e.same_logits, e.logits);  // every logit, bit for bit (dequantized)
      EXPECT_EQ(e.same_top1, e.images);
    } else {
      EXPECT_GE(static_cast<double>(e.same_top1) / e.images, 0.99);
    }
    // The exact float simulation agrees with the reference on every op.
    BackendEvaluation fq;
    fq.backend = "fake_quant_exact";
    const std::vector<float> x = ToNhwc(ds_->test().Slice(0, 64).data(), 64, ds_->sample_shape());
    ASSERT_TRUE(ComparePerOp(d.r.model, d.r.model, "fake_quant_exact", x.data(), 64, &fq).ok());
    for (const OpAgreement& o : fq.per_op) {
      if (!c.every_op_exact && (o.kind == "add")) continue;
      EXPECT_EQ(o.alone.identical, o.alone.compared) << o.op << " (" << o.kind << ")";
    }
  }
}

// ---- the numerical debugger ----

class DebuggerTest : public FromQatTest {
 protected:
  void SetUp() override {
    model_ = ptq_test::MakeModel("{name: cnn_bn, channels: [4, 6], hidden: 16}", ds_->sample_shape(),
                                 ds_->num_classes());
    quant_ = Config("{weights: {bits: 8, symmetric: true, granularity: per_channel}, activations: {bits: 8}}");
    ASSERT_TRUE(TrainQat(model_.get(), *ds_, *quant_).ok());
    auto m = FromQat();
    PtqContext ctx{.model = model_.get(), .quant = quant_.get(), .dataset = ds_, .seed = 0, .log = nullptr, .name = "t"};
    auto r = m->Apply(ctx);
    ASSERT_TRUE(r.ok()) << r.status();
    r_ = *r;
    x_ = ToNhwc(ds_->test().Slice(0, kImages).data(), kImages, ds_->sample_shape());
  }
  int OpIndex(const std::string& name) const {
    for (int i = 0; i < r_.model.ops_size(); ++i) {
      if (r_.model.ops(i).name() == name) return i;
    }
    return -1;
  }
  static constexpr int64_t kImages = 64;
  std::unique_ptr<nn::Model> model_;
  std::unique_ptr<QuantConfig> quant_;
  PtqResult r_;
  std::vector<float> x_;
};

TEST_F(DebuggerTest, AWrongZeroPointInOneLayerIsNamedAsTheFirstDivergence) {
  const int conv2 = OpIndex("conv2");
  ASSERT_GE(conv2, 0);
  backends::QuantizedModel bad = r_.model;
  const backends::Tensor& y = bad.tensors(bad.ops(conv2).outputs(0));
  // A backend that got conv2's output zero point wrong.
  SetQParams(&bad, bad.ops(conv2).outputs(0), y.scale(0), y.zero_point(0) + 3);
  ASSERT_TRUE(backends::ComputeRequantization(&bad).ok());
  BackendEvaluation e;
  e.backend = "reference_with_a_wrong_zero_point";
  e.integer_outputs = true;
  absl::Status s = ComparePerOp(r_.model, bad, "reference", x_.data(), kImages, &e);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_GE(e.first_departure, 0);
  EXPECT_EQ(e.per_op[e.first_departure].op, "conv2");
  for (int k = 0; k < e.first_departure; ++k) EXPECT_EQ(e.per_op[k].counts.identical, e.per_op[k].counts.compared);
  const std::string summary = DebugSummary({}, {e});
  EXPECT_NE(summary.find("first divergence: reference_with_a_wrong_zero_point at conv2"), std::string::npos)
      << summary;
  // The same model on both sides: no divergence.
  BackendEvaluation same;
  same.backend = "gemmlowp";
  same.integer_outputs = true;
  ASSERT_TRUE(ComparePerOp(r_.model, r_.model, "gemmlowp", x_.data(), kImages, &same).ok());
  EXPECT_EQ(same.first_departure, -1);
  EXPECT_NE(DebugSummary({}, {same}).find("reference == gemmlowp everywhere"), std::string::npos);
}

TEST_F(DebuggerTest, ARangeTooSmallShowsUpAsClippingAndLowSqnrAtThatTensor) {
  auto good = CompareWithFloat(r_.float_model, r_.model, x_.data(), kImages);
  ASSERT_TRUE(good.ok()) << good.status();
  const int conv1 = OpIndex("conv1");
  backends::QuantizedModel narrow = r_.model;
  const backends::Tensor& y = narrow.tensors(narrow.ops(conv1).outputs(0));
  // The range covers an eighth of what the data needs.
  SetQParams(&narrow, narrow.ops(conv1).outputs(0), y.scale(0) / 8, y.zero_point(0));
  ASSERT_TRUE(backends::ComputeRequantization(&narrow).ok());
  auto bad = CompareWithFloat(r_.float_model, narrow, x_.data(), kImages);
  ASSERT_TRUE(bad.ok()) << bad.status();
  ASSERT_EQ(good->size(), bad->size());
  const TensorDebug* g = nullptr;
  const TensorDebug* b = nullptr;
  for (size_t k = 0; k < good->size(); ++k) {
    if ((*good)[k].op == "conv1") g = &(*good)[k], b = &(*bad)[k];
  }
  ASSERT_NE(g, nullptr);
  EXPECT_LT(g->clipped, 0.01);
  EXPECT_GT(g->sqnr_db, 25.0);
  EXPECT_GT(b->clipped, 0.2);
  EXPECT_GT(b->saturated, 0.2);
  EXPECT_LT(b->sqnr_db, g->sqnr_db - 10.0);
  // conv1's grid, or the max pool that passes it on (and keeps the largest values), is named.
  const std::string summary = DebugSummary(*bad, {});
  EXPECT_TRUE(summary.find("most clipped: conv1") != std::string::npos ||
              summary.find("most clipped: pool1") != std::string::npos)
      << summary;
  // The histogram counts every value, from the smallest (first bin) to the largest (last bin), and
  // the clipped fraction lies between the mass of the bins wholly beyond the narrow range and
  // that of the bins reaching beyond it.
  ASSERT_EQ(b->histogram.size(), static_cast<size_t>(TensorDebug::kHistogramBins));
  int64_t total = 0;
  for (int64_t c : b->histogram) total += c;
  EXPECT_EQ(total, b->values);
  EXPECT_GT(b->histogram.front(), 0);
  EXPECT_GT(b->histogram.back(), 0);
  EXPECT_EQ(b->histogram_min, g->histogram_min);  // the same float values
  const double top = b->scale * (b->quant_max - b->zero_point + 0.5);
  const double bottom = b->scale * (b->quant_min - b->zero_point - 0.5);
  const double width = (b->histogram_max - b->histogram_min) / TensorDebug::kHistogramBins;
  int64_t surely = 0, maybe = 0;
  for (int k = 0; k < TensorDebug::kHistogramBins; ++k) {
    const double lo = b->histogram_min + k * width, hi = lo + width;
    if (lo > top || hi < bottom) surely += b->histogram[k];
    if (hi > top || lo < bottom) maybe += b->histogram[k];
  }
  EXPECT_LE(static_cast<double>(surely) / total, b->clipped);
  EXPECT_GE(static_cast<double>(maybe) / total, b->clipped);
  // The input tensor comes first, with the model input's grid.
  EXPECT_EQ((*good)[0].name, "input");
  EXPECT_GT((*good)[0].sqnr_db, 30.0);
}

}  // namespace
}  // namespace quant::ptq
