// `reference`: registered, hand-computed arithmetic, close to the float model on
// every op (each op within one output step of its float computation on the same
// quantized inputs), the shared executor's liveness buffer plan.
#include "quant/backends/reference_backend.h"

#include <cmath>
#include <cstdio>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/float_kernels.h"
#include "quant/backends/model_builder.h"
#include "quant/core/registry.h"
#include "tests/backends/test_models.h"

namespace quant::backends {
namespace {

using ::testing::HasSubstr;

TEST(ReferenceBackendTest, IsRegistered) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("reference"));
  auto b = CreateBackend("reference");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name(), "reference");
}

// One FC op small enough to compute by hand.
QuantizedModel TinyFc() {
  QuantizedModel m = EmptyModel();
  const int x = AddActivation(&m, "x", {3}, INT8, 0.5f, -10);
  const int w = AddWeights(&m, "w", {2, 3}, INT8, {0.25f}, {0}, {1, 2, 3, -4, 5, -6});
  const int b = AddBias(&m, "b", {8, -3});  // 8 * 0.125 = 1.0
  const int y = AddActivation(&m, "y", {2}, INT8, 0.3f, 5);
  AddOp(&m, "fc", {x, w, b}, y, -128, 20)->mutable_fully_connected();
  m.add_inputs(x);
  m.add_outputs(y);
  EXPECT_TRUE(ComputeRequantization(&m).ok());
  return m;
}

TEST(ReferenceBackendTest, HandComputedFullyConnected) {
  auto b = CreateBackend("reference");
  ASSERT_TRUE(b.ok());
  ASSERT_TRUE((*b)->Prepare(TinyFc()).ok());
  // x = {1.0, -2.25, 100}: q = -10 + nearbyint(x / 0.5) = {-8, -14 (ties to even: -4.5 -> -4), 127 (clamped)}.
  const float x[3] = {1.0f, -2.25f, 100.0f};
  RunOutput out;
  ASSERT_TRUE((*b)->Run(x, 1, &out).ok());
  // (q - zp) = {2, -4, 137}; acc0 = 8 + 2*1 - 4*2 + 137*3 = 413; acc1 = -3 - 8 - 20 - 822 = -853.
  // multiplier 0.5*0.25/0.3 = 0.41666...; 413*0.41666 = 172.08 -> 172 + 5 -> clamp 20.
  // -853*0.41666 = -355.42 -> -355 + 5 = -350 -> clamp -128.
  ASSERT_EQ(out.quantized.size(), 2u);
  EXPECT_EQ(out.quantized[0], 20);
  EXPECT_EQ(out.quantized[1], -128);
  EXPECT_EQ(out.shape, (Shape{1, 2}));
  EXPECT_FLOAT_EQ(out.logits[0], 0.3f * 15);
  // Without the clamps the exact rounding shows.
  QuantizedModel m = TinyFc();
  m.mutable_ops(0)->set_output_max(127);
  m.mutable_tensors(0)->set_zero_point(0, 0);
  ASSERT_TRUE(ComputeRequantization(&m).ok());
  ASSERT_TRUE((*b)->Prepare(m).ok());
  const float y[3] = {0.5f, 0.5f, 1.5f};  // q = {1, 1, 3}
  ASSERT_TRUE((*b)->Run(y, 1, &out).ok());
  // acc0 = 8 + 1 + 2 + 9 = 20, acc1 = -3 - 4 + 5 - 18 = -20; 20 * 0.41667 = 8.33, but the
  // fixed-point path rounds twice, as gemmlowp/TFLite do: multiplier 1789569707 * 2^-32,
  // SaturatingRoundingDoublingHighMul(20, m) = round(16.67) = 17, RoundingDivideByPOT(17, 1)
  // = 8.5 -> 9 (ties away from zero). So 9 + 5 = 14 and -9 + 5 = -4, not 13 and -3.
  EXPECT_EQ(out.quantized[0], 14);
  EXPECT_EQ(out.quantized[1], -4);
}

// A residual add by hand: x (scale 0.5, zp 2) + y = fc(x) (scale 0.1, zp -3), TFLite's add.h.
TEST(ReferenceBackendTest, HandComputedAddWithTwoScales) {
  QuantizedModel m = EmptyModel();
  const int x = AddActivation(&m, "x", {2}, INT8, 0.5f, 2);
  const int w = AddWeights(&m, "w", {2, 2}, INT8, {0.2f}, {0}, {1, 0, 0, 1});  // identity * 0.2
  const int y = AddActivation(&m, "y", {2}, INT8, 0.1f, -3);
  const int z = AddActivation(&m, "z", {2}, INT8, 0.25f, 1);
  AddOp(&m, "fc", {x, w}, y)->mutable_fully_connected();
  AddOp(&m, "add", {x, y}, z)->mutable_add();
  m.add_inputs(x);
  m.add_outputs(z);
  ASSERT_TRUE(ComputeRequantization(&m).ok());
  ASSERT_TRUE(ValidateQuantizedModel(m).ok()) << ValidateQuantizedModel(m);
  EXPECT_EQ(m.ops(1).add().left_shift(), 20);
  auto b = CreateBackend("reference");
  ASSERT_TRUE((*b)->Prepare(m).ok());
  // x = {3.0, -1.5} -> q {8, -1}; fc: acc (q - zp) = {6, -3}, * 0.5*0.2/0.1 = 1 -> y = {3, -6} (real 0.6, -0.3);
  // add: 3.0 + 0.6 = 3.6 -> 3.6 / 0.25 = 14.4 -> 14 + 1 = 15; -1.5 - 0.3 = -1.8 -> -7.2 -> -7 + 1 = -6.
  const float in[2] = {3.0f, -1.5f};
  RunOutput out;
  ASSERT_TRUE((*b)->Run(in, 1, &out).ok());
  EXPECT_EQ(out.quantized, (std::vector<int32_t>{15, -6}));
}

// Each op of every test graph, on the reference's own quantized inputs, against the
// float op on the dequantized inputs and weights: within one output step (clamps applied).
// RunOpAlone: an op run alone on the inputs it saw reproduces its output; on
// other inputs it computes from those (the per-op departure in isolation that
// evaluate records); and it refuses to run without the buffers kept.
TEST(ReferenceBackendTest, RunOpAloneRecomputesOneOpFromGivenInputs) {
  for (auto& [name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 51);
    const std::vector<float> calib = RandomImages(f, 8, 52);
    QuantizeOptions o;
    o.per_channel = true;
    auto m = QuantizeMinMax(f, calib.data(), 8, o);
    ASSERT_TRUE(m.ok()) << name << ": " << m.status();
    ReferenceBackend fresh;
    ASSERT_TRUE(fresh.Prepare(*m).ok());
    EXPECT_EQ(fresh.RunOpAlone(0, {}).code(), absl::StatusCode::kFailedPrecondition);
    ReferenceBackend b;
    b.set_keep_intermediates(true);
    ASSERT_TRUE(b.Prepare(*m).ok());
    std::vector<float> x = RandomImages(*m, 2, 53);
    RunOutput out;
    ASSERT_TRUE(b.Run(x.data(), 2, &out).ok());
    for (int i = 0; i < m->ops_size(); ++i) {
      std::vector<std::vector<int32_t>> inputs;
      for (int t : m->ops(i).inputs()) {
        if (b.buffer_of(t) < 0) continue;
        inputs.emplace_back();
        ASSERT_TRUE(b.ReadTensor(t, &inputs.back()));
      }
      std::vector<int32_t> before, after;
      ASSERT_TRUE(b.ReadTensor(m->ops(i).outputs(0), &before));
      ASSERT_TRUE(b.RunOpAlone(i, inputs).ok()) << name << ": " << OpLabel(*m, i);
      ASSERT_TRUE(b.ReadTensor(m->ops(i).outputs(0), &after));
      EXPECT_EQ(before, after) << name << ": " << OpLabel(*m, i);
    }
    // A wrong input size is refused, naming the op.
    absl::Status bad = b.RunOpAlone(0, {{1, 2, 3}});
    EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(bad.message().find(m->ops(0).name()), std::string::npos) << bad;
  }
}

TEST(ReferenceBackendTest, EveryOpWithinOneStepOfItsFloatComputation) {
  auto cases = LayerModels();
  for (auto& c : GraphModels()) cases.push_back(c);
  int64_t compared = 0;
  double worst = 0;
  for (auto& [name, f0] : cases) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 31);
    const std::vector<float> calib = RandomImages(f, 16, 32);
    for (DType act : {INT8, UINT8}) {
      QuantizeOptions o;
      o.activation_dtype = act;
      o.per_channel = true;
      auto m = QuantizeMinMax(f, calib.data(), 16, o);
      ASSERT_TRUE(m.ok()) << name << ": " << m.status();
      ReferenceBackend b;
      b.set_keep_intermediates(true);
      ASSERT_TRUE(b.Prepare(*m).ok());
      const int64_t batch = 4;
      std::vector<float> x = RandomImages(*m, batch, 33);
      for (float& v : x) v = v * 1.2f - 0.1f;
      RunOutput out;
      ASSERT_TRUE(b.Run(x.data(), batch, &out).ok());
      const std::vector<Shape> shapes = *InferShapes(*m);
      for (int i = 0; i < m->ops_size(); ++i) {
        const Op& op = m->ops(i);
        std::vector<std::vector<float>> deq;
        std::vector<const float*> inputs;
        deq.reserve(op.inputs_size());
        for (int t : op.inputs()) {
          const Tensor& tt = m->tensors(t);
          if (IsConstant(tt)) continue;
          std::vector<int32_t> q;
          ASSERT_TRUE(b.ReadTensor(t, &q));
          deq.emplace_back(q.size());
          for (size_t k = 0; k < q.size(); ++k) deq.back()[k] = TensorScale(tt) * (q[k] - TensorZeroPoint(tt));
          inputs.push_back(deq.back().data());
        }
        const Tensor& yt = m->tensors(op.outputs(0));
        std::vector<float> want(batch * Numel(shapes[op.outputs(0)]));
        std::vector<float> col;
        floatk::RunOp(*m, shapes, i, batch, inputs, floatk::FloatWeights(*m, op, /*dequantize=*/true), &col,
                      want.data());
        std::vector<int32_t> got;
        ASSERT_TRUE(b.ReadTensor(op.outputs(0), &got));
        double op_worst = 0;
        for (size_t k = 0; k < got.size(); ++k) {
          double q = want[k] / TensorScale(yt) + TensorZeroPoint(yt);
          q = std::min<double>(std::max<double>(q, op.output_min()), op.output_max());
          op_worst = std::max(op_worst, std::fabs(got[k] - q));
        }
        EXPECT_LE(op_worst, 1.0 + 1e-3) << name << " " << DTypeName(act) << ": " << OpLabel(*m, i);
        worst = std::max(worst, op_worst);
        compared += static_cast<int64_t>(got.size());
      }
    }
  }
  std::printf("reference vs float, per op on the same quantized inputs: %lld outputs, worst %.3f steps\n",
              static_cast<long long>(compared), worst);
}

TEST(ReferenceBackendTest, TracksTheFloatModel) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(3) : MakeFloatMlp(3);
    std::vector<float> calib = RandomImages(f, 64, 4);
    QuantizeOptions opt;
    opt.per_channel = true;
    auto m = QuantizeMinMax(f, calib.data(), 64, opt);
    ASSERT_TRUE(m.ok());
    auto b = CreateBackend("reference");
    ASSERT_TRUE((*b)->Prepare(*m).ok());
    // The calibration images themselves: no activation falls outside its calibrated
    // range, so the only differences are rounding (a few output steps).
    std::vector<float> x(calib.begin(), calib.begin() + 32 * 784);
    RunOutput out;
    ASSERT_TRUE((*b)->Run(x.data(), 32, &out).ok());
    auto ref = FloatForward(f, x.data(), 32);
    ASSERT_TRUE(ref.ok());
    double err = 0, mag = 0;
    for (size_t i = 0; i < ref->size(); ++i) {
      err = std::max(err, std::fabs(static_cast<double>(out.logits[i]) - (*ref)[i]));
      mag = std::max(mag, std::fabs(static_cast<double>((*ref)[i])));
    }
    const float s_out = TensorScale(m->tensors(OutputTensor(*m)));
    EXPECT_LT(err, 6 * s_out) << (cnn ? "cnn" : "mlp") << " max |logit| " << mag;
  }
}

// The executor reuses a buffer once the last consumer of its tensor has run.
TEST(ReferenceBackendTest, BuffersArePlannedByLiveness) {
  QuantizeOptions o;
  {
    QuantizedModel f = MakeFloatMlp(1);
    const std::vector<float> calib = RandomImages(f, 4, 1);
    auto m = QuantizeMinMax(f, calib.data(), 4, o);
    ReferenceBackend b;
    ASSERT_TRUE(b.Prepare(*m).ok());
    // input -> flatten -> fc1 -> fc2 -> fc3: two buffers in turn.
    EXPECT_EQ(b.num_buffers(), 2) << b.BufferPlanString();
    EXPECT_EQ(b.buffer_of(0), b.buffer_of(OutputTensor(*m)));  // fc3 reuses the input's buffer
    EXPECT_EQ(b.buffer_of(2), -1);  // a constant (fc1.weight)
    std::printf("mlp: %s\n", b.BufferPlanString().c_str());
    EXPECT_THAT(b.BufferPlanString(), HasSubstr("2 buffers"));
  }
  {
    // The residual input stays alive until the add: three buffers.
    QuantizedModel f = GraphModels()[0].second;
    RandomizeFloatWeights(&f, 2);
    const std::vector<float> calib = RandomImages(f, 4, 1);
    auto m = QuantizeMinMax(f, calib.data(), 4, o);
    ReferenceBackend b;
    ASSERT_TRUE(b.Prepare(*m).ok());
    EXPECT_EQ(b.num_buffers(), 3) << b.BufferPlanString();  // input, conv and the add's output
    std::printf("residual: %s\n", b.BufferPlanString().c_str());
    ReferenceBackend keep;
    keep.set_keep_intermediates(true);
    ASSERT_TRUE(keep.Prepare(*m).ok());
    EXPECT_EQ(keep.num_buffers(), 3);
  }
  {
    // The cnn: 8 activation tensors in 2 buffers; kept apart, 8.
    QuantizedModel f = MakeFloatCnn(1);
    const std::vector<float> calib = RandomImages(f, 4, 1);
    auto m = QuantizeMinMax(f, calib.data(), 4, o);
    ReferenceBackend b;
    ASSERT_TRUE(b.Prepare(*m).ok());
    EXPECT_EQ(b.num_buffers(), 2) << b.BufferPlanString();
    std::printf("cnn: %s\n", b.BufferPlanString().c_str());
    ReferenceBackend keep;
    keep.set_keep_intermediates(true);
    ASSERT_TRUE(keep.Prepare(*m).ok());
    EXPECT_EQ(keep.num_buffers(), 8);
    // Same results either way.
    const std::vector<float> x = RandomImages(*m, 3, 5);
    RunOutput r1, r2;
    ASSERT_TRUE(b.Run(x.data(), 3, &r1).ok());
    ASSERT_TRUE(keep.Run(x.data(), 3, &r2).ok());
    EXPECT_EQ(r1.quantized, r2.quantized);
  }
}

TEST(ReferenceBackendTest, RunChecksItsInputs) {
  auto b = CreateBackend("reference");
  RunOutput out;
  float x[3] = {0, 0, 0};
  EXPECT_EQ((*b)->Run(x, 1, &out).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*b)->Prepare(TinyFc()).ok());
  EXPECT_EQ((*b)->Run(x, 0, &out).code(), absl::StatusCode::kInvalidArgument);
  ::quant::Tensor wrong({2, 4});
  EXPECT_THAT(std::string((*b)->Run(wrong, &out).message()), HasSubstr("is not a batch of [3]"));
  ::quant::Tensor right({2, 3});
  EXPECT_TRUE((*b)->Run(right, &out).ok());
  EXPECT_EQ(out.shape, (Shape{2, 2}));
  QuantizedModel bad = TinyFc();
  bad.mutable_tensors(2)->add_int_data(1);
  EXPECT_THAT(std::string((*b)->Prepare(bad).message()),
              HasSubstr("op 0 'fc' (fully_connected): inputs[2] (bias).int_data: 3 values; expected 2"));
}

}  // namespace
}  // namespace quant::backends
