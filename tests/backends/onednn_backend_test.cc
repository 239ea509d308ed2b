// `onednn` against `reference`: differences counted (identical / off by one step /
// larger) and explained, as for xnnpack. oneDNN requantizes in float (output scales
// s_in*s_w/s_out applied to float(acc), round to nearest even, + zero point); the
// single-layer test shows oneDNN equals an emulation of that formula exactly, so
// every single-layer difference from the reference is that rounding, at most one step.
// Also: every graph op tensor by tensor, profile rejections, primitive reuse across
// batch sizes, and that the VNNI kernels (not oneDNN's reference code) are chosen.
#include "quant/backends/onednn_backend.h"

#include <cmath>
#include <cstdio>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
#include "quant/backends/reference_backend.h"
#include "quant/backends/reference_kernels.h"
#include "quant/core/registry.h"
#include "tests/backends/backend_compare.h"
#include "tests/backends/test_models.h"

namespace quant::backends {
namespace {

using ::testing::HasSubstr;

// What oneDNN runs: symmetric int8 weights, per-tensor or per-channel, int8 or uint8 activations.
std::vector<Variant> OnednnVariants() {
  std::vector<Variant> out;
  for (const Variant& v : Variants()) {
    if (v.opt.weight_dtype == INT8 && v.opt.symmetric_weights) out.push_back(v);
  }
  return out;
}

// oneDNN's int8 epilogue as the backend configures it: float(acc) times the float
// output scale (computed in double, rounded to float once), clamp, + zero point,
// round half to even, saturate.
std::vector<int32_t> EmulateOnednn(const QuantizedModel& m, const std::vector<int32_t>& acc) {
  const Op& l = m.ops(0);
  const Tensor& wq = m.tensors(WeightTensor(l));
  const Tensor& y = m.tensors(l.outputs(0));
  const int out_c = wq.shape(0);
  const int32_t zp = TensorZeroPoint(y);
  std::vector<int32_t> out(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) {
    const int o = static_cast<int>(i % out_c);
    const float scale = static_cast<float>(static_cast<double>(TensorScale(m.tensors(l.inputs(0)))) *
                                           TensorScale(wq, IsPerChannel(wq) ? o : 0) / TensorScale(y));
    float v = static_cast<float>(acc[i]) * scale;
    v = std::min<float>(std::max<float>(v, l.output_min() - zp), l.output_max() - zp);
    out[i] = static_cast<int32_t>(std::nearbyint(v + static_cast<float>(zp)));
  }
  return out;
}

// The backend needs VNNI (see OnednnBackend::CanRunHere). On a CPU without it the
// tests that run models check instead that it refuses, plainly, before and at Prepare.
bool RefusesWithoutVnni() {
  if (OnednnBackend::HasVnni()) return false;
  auto b = CreateBackend("onednn");
  EXPECT_TRUE(b.ok());
  if (!b.ok()) return true;
  const absl::Status here = (*b)->CanRunHere();
  EXPECT_EQ(here.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(here.message()), HasSubstr("needs a CPU with VNNI"));
  QuantizedModel f = MakeFloatMlp(8);
  std::vector<float> calib = RandomImages(f, 16, 9);
  auto m = QuantizeMinMax(f, calib.data(), 16, QuantizeOptions());
  EXPECT_TRUE(m.ok());
  if (m.ok()) {
    const absl::Status s = (*b)->Prepare(*m);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
    EXPECT_EQ(s.message(), here.message());
  }
  std::printf("no VNNI on this CPU (oneDNN ISA: %s): checked that onednn refuses to run\n",
              OnednnBackend::Isa().c_str());
  return true;
}

TEST(OnednnBackendTest, IsRegisteredAndNamesItsIsa) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("onednn"));
  auto b = CreateBackend("onednn");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name(), "onednn");
  std::printf("oneDNN ISA on this machine: %s\n", OnednnBackend::Isa().c_str());
}

TEST(OnednnBackendTest, SingleLayerDifferencesAreTheFloatRequantization) {
  if (RefusesWithoutVnni()) return;
  Stats all;
  int layers = 0;
  for (const auto& [layer_name, f0] : LayerModels()) {
    QuantizedModel f = FirstOpOnly(f0);
    RandomizeFloatWeights(&f, 23);
    std::vector<float> calib = RandomImages(f, 16, 24);
    for (const Variant& v : OnednnVariants()) {
      auto m = QuantizeMinMax(f, calib.data(), 16, v.opt);
      ASSERT_TRUE(m.ok());
      const int64_t batch = 9;
      const std::vector<float> x = Inputs(*m, batch, 25);
      const RunOutput ref = RunBackend("reference", *m, x, batch);
      const RunOutput dnn = RunBackend("onednn", *m, x, batch);
      const std::vector<int32_t> emulated = EmulateOnednn(*m, Accumulators(*m, x, batch));
      const Stats vs_emulation = Compare(emulated, dnn.quantized);
      EXPECT_EQ(vs_emulation.identical, vs_emulation.total)
          << layer_name << ", " << v.name << ": onednn vs emulated float requantization: " << vs_emulation.ToString();
      const Stats s = Compare(ref.quantized, dnn.quantized);
      EXPECT_LE(s.max_steps, 1) << layer_name << ", " << v.name << ": " << s.ToString();
      all.Add(s);
      ++layers;
    }
  }
  std::printf("onednn vs reference, %d single layers: %s\n", layers, all.ToString().c_str());
  EXPECT_GT(all.identical, all.total * 95 / 100);
  EXPECT_GT(layers, 20);
}

TEST(OnednnBackendTest, WholeModelDifferencesAreCountedAndSmall) {
  if (RefusesWithoutVnni()) return;
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(8) : MakeFloatMlp(8);
    std::vector<float> calib = RandomImages(f, 64, 9);
    for (DType act : {INT8, UINT8}) {
      for (bool per_channel : {false, true}) {
        QuantizeOptions o;
        o.activation_dtype = act;
        o.per_channel = per_channel;
        auto m = QuantizeMinMax(f, calib.data(), 64, o);
        ASSERT_TRUE(m.ok());
        const int64_t batch = 256;
        const std::vector<float> x = RandomImages(*m, batch, 10);
        const RunOutput ref = RunBackend("reference", *m, x, batch);
        const RunOutput dnn = RunBackend("onednn", *m, x, batch);
        const Stats s = Compare(ref.quantized, dnn.quantized);
        std::printf("onednn vs reference, %s %s %s: %s\n", cnn ? "cnn" : "mlp", DTypeName(act).c_str(),
                    per_channel ? "per-channel" : "per-tensor", s.ToString().c_str());
        EXPECT_GT(s.identical, s.total * 8 / 10) << s.ToString();
        EXPECT_LE(s.max_steps, 4) << s.ToString();
      }
    }
  }
}

// Every v2 graph op (add, concat, depthwise conv, pools, lookup tables), tensor by tensor.
TEST(OnednnBackendTest, GraphOpsWithinOneStepPerOp) {
  if (RefusesWithoutVnni()) return;
  int graphs = 0;
  for (const auto& [graph_name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 51);
    const std::vector<float> calib = RandomImages(f, 16, 52);
    for (DType dtype : {INT8, UINT8}) {
      QuantizeOptions o;
      o.activation_dtype = dtype;
      o.per_channel = dtype == INT8;
      auto m = QuantizeMinMax(f, calib.data(), 16, o);
      ASSERT_TRUE(m.ok());
      OnednnBackend dnn;
      dnn.set_keep_intermediates(true);
      const absl::Status prepared = dnn.Prepare(*m);
      ASSERT_TRUE(prepared.ok()) << graph_name << " " << DTypeName(dtype) << ": " << prepared;
      ReferenceBackend ref;
      ref.set_keep_intermediates(true);
      ASSERT_TRUE(ref.Prepare(*m).ok());
      const int64_t batch = 8;
      const std::vector<float> x = Inputs(*m, batch, 53);
      RunOutput a, b;
      ASSERT_TRUE(ref.Run(x.data(), batch, &a).ok());
      ASSERT_TRUE(dnn.Run(x.data(), batch, &b).ok());
      std::string per_op;
      for (int i = 0; i < m->ops_size(); ++i) {
        std::vector<int32_t> qa, qb;
        ASSERT_TRUE(ref.ReadTensor(m->ops(i).outputs(0), &qa));
        ASSERT_TRUE(dnn.ReadTensor(m->ops(i).outputs(0), &qb));
        const Stats s = Compare(qa, qb);
        absl::StrAppend(&per_op, "\n    ", OpLabel(*m, i), ": ", s.total - s.identical, " of ", s.total,
                        " differ, max ", s.max_steps, " [", dnn.ImplementationOf(i), "]");
        EXPECT_LE(s.max_steps, i == 0 ? 1 : 2) << graph_name << " " << DTypeName(dtype) << ": " << OpLabel(*m, i);
        // Each op alone, from the reference's inputs: its own rounding, at most one step.
        std::vector<std::vector<int32_t>> inputs;
        for (int t : m->ops(i).inputs()) {
          if (IsConstant(m->tensors(t))) continue;
          inputs.emplace_back();
          ASSERT_TRUE(ref.ReadTensor(t, &inputs.back()));
        }
        ASSERT_TRUE(dnn.RunOpAlone(i, inputs).ok());
        std::vector<int32_t> alone;
        ASSERT_TRUE(dnn.ReadTensor(m->ops(i).outputs(0), &alone));
        EXPECT_LE(Compare(qa, alone).max_steps, 1) << graph_name << " " << DTypeName(dtype) << ": " << OpLabel(*m, i);
      }
      std::printf("onednn vs reference, %s %s:%s\n", graph_name.c_str(), DTypeName(dtype).c_str(), per_op.c_str());
      ++graphs;
    }
  }
  EXPECT_EQ(graphs, 2 * static_cast<int>(GraphModels().size()));
}

// A clamp narrower than the dtype range (a fused ReLU6) is applied on every op kind that
// carries one: no output outside it.
TEST(OnednnBackendTest, ClampsAreApplied) {
  if (RefusesWithoutVnni()) return;
  QuantizedModel f = MakeFloatCnn(21);
  std::vector<float> calib = RandomImages(f, 16, 22);
  auto m = QuantizeMinMax(f, calib.data(), 16, QuantizeOptions());
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < m->ops_size(); ++i) {
    Op* op = m->mutable_ops(i);
    op->set_output_min(std::max(op->output_min(), -20));
    op->set_output_max(std::min(op->output_max(), 30));
  }
  const int64_t batch = 16;
  const std::vector<float> x = Inputs(*m, batch, 23);
  OnednnBackend dnn;
  dnn.set_keep_intermediates(true);
  ASSERT_TRUE(dnn.Prepare(*m).ok());
  ReferenceBackend ref;
  ref.set_keep_intermediates(true);
  ASSERT_TRUE(ref.Prepare(*m).ok());
  RunOutput a, b;
  ASSERT_TRUE(ref.Run(x.data(), batch, &a).ok());
  ASSERT_TRUE(dnn.Run(x.data(), batch, &b).ok());
  for (int i = 0; i < m->ops_size(); ++i) {
    std::vector<int32_t> qa, qb;
    ASSERT_TRUE(dnn.ReadTensor(m->ops(i).outputs(0), &qb));
    ASSERT_TRUE(ref.ReadTensor(m->ops(i).outputs(0), &qa));
    int at_bounds = 0;
    for (int32_t v : qb) {
      EXPECT_GE(v, -20) << OpLabel(*m, i);
      EXPECT_LE(v, 30) << OpLabel(*m, i);
      at_bounds += v == -20 || v == 30;
    }
    EXPECT_GT(at_bounds, 0) << OpLabel(*m, i) << ": the clamp was never reached, so this checks nothing";
    EXPECT_LE(Compare(qa, qb).max_steps, 2) << OpLabel(*m, i);
  }
}

// A NaN input is defined (qmin) in the shared scalar definition and the AVX2 loop alike,
// in the vectorised body and the scalar tail of a row.
TEST(OnednnBackendTest, NanInputsQuantizeToQmin) {
  if (RefusesWithoutVnni()) return;
  for (DType dtype : {INT8, UINT8}) {
    QuantizedModel m = EmptyModel();
    const int x = AddActivation(&m, "x", {5, 5, 3}, dtype, 0.05f, dtype == INT8 ? 2 : 130);
    const int y = AddActivation(&m, "y", {5, 5, 3}, dtype, 0.05f, dtype == INT8 ? 2 : 130);
    Pool2DOptions* p = AddOp(&m, "pool", {x}, y, DTypeMin(dtype), DTypeMax(dtype))->mutable_max_pool2d();
    p->set_kernel_h(1);
    p->set_kernel_w(1);
    p->set_stride_h(1);
    p->set_stride_w(1);
    m.add_inputs(x);
    m.add_outputs(y);
    ASSERT_TRUE(ValidateQuantizedModel(m).ok()) << ValidateQuantizedModel(m);
    std::vector<float> in = RandomImages(m, 2, 41);  // 150 values: 4 AVX2 steps and a tail of 22
    for (int i : {0, 31, 64, 140, 149}) in[i] = std::nanf("");
    const RunOutput ref = RunBackend("reference", m, in, 2);
    const RunOutput dnn = RunBackend("onednn", m, in, 2);
    EXPECT_EQ(ref.quantized, dnn.quantized) << DTypeName(dtype);
    for (int i : {0, 31, 64, 140, 149}) EXPECT_EQ(dnn.quantized[i], DTypeMin(dtype)) << i;
  }
}

// Max pooling has no rounding, so onednn must equal reference exactly: 3x3 stride 2 with
// padding 1 (padding never wins), under 64 channels (the byte-max loop: 8 channels
// byte by byte, 16 and 48 in 16-channel registers) and over
// (oneDNN's pooling_max), int8 and uint8, with a clamp narrower than the input's range.
TEST(OnednnBackendTest, MaxPoolingIsExact) {
  if (RefusesWithoutVnni()) return;
  for (int channels : {8, 16, 48, 70}) {
    for (DType dtype : {INT8, UINT8}) {
      QuantizedModel m = EmptyModel();
      const int32_t zp = dtype == INT8 ? -3 : 120;
      const int x = AddActivation(&m, "x", {9, 9, channels}, dtype, 0.01f, zp);
      const int y = AddActivation(&m, "y", {5, 5, channels}, dtype, 0.01f, zp);
      const int32_t lo = DTypeMin(dtype) + 40, hi = DTypeMax(dtype) - 30;
      Pool2DOptions* p = AddOp(&m, "pool", {x}, y, lo, hi)->mutable_max_pool2d();
      p->set_kernel_h(3);
      p->set_kernel_w(3);
      p->set_stride_h(2);
      p->set_stride_w(2);
      p->set_pad_top(1);
      p->set_pad_bottom(1);
      p->set_pad_left(1);
      p->set_pad_right(1);
      m.add_inputs(x);
      m.add_outputs(y);
      ASSERT_TRUE(ValidateQuantizedModel(m).ok());
      const int64_t batch = 5;
      std::vector<float> in = RandomImages(m, batch, 31 + channels);
      for (float& v : in) v = (v - 0.5f) * 3.0f;  // covers the whole int8/uint8 range: both clamp ends
      const RunOutput ref = RunBackend("reference", m, in, batch);
      const RunOutput dnn = RunBackend("onednn", m, in, batch);
      const Stats s = Compare(ref.quantized, dnn.quantized);
      EXPECT_EQ(s.identical, s.total) << channels << " channels " << DTypeName(dtype) << ": " << s.ToString();
      int at_lo = 0, at_hi = 0;
      for (int32_t v : dnn.quantized) at_lo += v == lo, at_hi += v == hi;
      EXPECT_GT(at_lo, 0);
      EXPECT_GT(at_hi, 0);
      OnednnBackend b;
      ASSERT_TRUE(b.Prepare(m).ok());
      std::printf("max pool over %d channels, %s: %s [%s]\n", channels, DTypeName(dtype).c_str(), s.ToString().c_str(),
                  channels < 64 ? "byte-max loop" : b.ImplementationOf(0).c_str());
    }
  }
}

TEST(OnednnBackendTest, PrimitivesAreRebuiltAcrossBatchSizes) {
  if (RefusesWithoutVnni()) return;
  QuantizedModel f = MakeFloatCnn(11);
  std::vector<float> calib = RandomImages(f, 16, 12);
  QuantizeOptions o;
  o.per_channel = true;
  auto m = QuantizeMinMax(f, calib.data(), 16, o);
  ASSERT_TRUE(m.ok());
  auto b = CreateBackend("onednn");
  ASSERT_TRUE((*b)->Prepare(*m).ok());
  const std::vector<float> x = RandomImages(*m, 7, 13);
  RunOutput r3, r7, r3b;
  ASSERT_TRUE((*b)->Run(x.data(), 3, &r3).ok());
  ASSERT_TRUE((*b)->Run(x.data(), 7, &r7).ok());
  ASSERT_TRUE((*b)->Run(x.data(), 3, &r3b).ok());
  EXPECT_EQ(r3.logits, r3b.logits);
  EXPECT_EQ(std::vector<float>(r7.logits.begin(), r7.logits.begin() + 30), r3.logits);
  std::vector<float> y = RandomImages(*m, 3, 14);
  RunOutput ry;
  ASSERT_TRUE((*b)->Run(y.data(), 3, &ry).ok());
  EXPECT_NE(ry.logits, r3.logits);
}

// Every weighted op must get oneDNN's VNNI kernels: an attribute combination without a
// JIT kernel would fall back to its reference code (ref:any), orders of magnitude slower,
// and a non-VNNI kernel would saturate (the backend refuses such a machine).
TEST(OnednnBackendTest, WeightedOpsUseVnniKernels) {
  if (RefusesWithoutVnni()) return;
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(3) : MakeFloatMlp(3);
    std::vector<float> calib = RandomImages(f, 16, 4);
    for (auto [act, per_channel] :
         std::vector<std::pair<DType, bool>>{{INT8, true}, {UINT8, true}, {INT8, false}, {UINT8, false}}) {
      QuantizeOptions o;
      o.activation_dtype = act;
      o.per_channel = per_channel;
      auto m = QuantizeMinMax(f, calib.data(), 16, o);
      ASSERT_TRUE(m.ok());
      OnednnBackend dnn;
      ASSERT_TRUE(dnn.Prepare(*m).ok());
      for (int i = 0; i < m->ops_size(); ++i) {
        const std::string impl = dnn.ImplementationOf(i);
        std::printf("%s %s %s: %s\n", cnn ? "cnn" : "mlp", DTypeName(act).c_str(), OpLabel(*m, i).c_str(),
                    impl.c_str());
        const Op& op = m->ops(i);
        if (op.has_fully_connected() || op.has_conv2d()) {
          EXPECT_THAT(impl, HasSubstr("vnni")) << OpLabel(*m, i);
          EXPECT_THAT(impl, ::testing::Not(HasSubstr("ref"))) << OpLabel(*m, i);
        }
      }
    }
  }
}

TEST(OnednnBackendTest, RejectionsNameLayerBackendAndRule) {
  QuantizeOptions asym;
  asym.symmetric_weights = false;
  QuantizeOptions u8;
  u8.activation_dtype = UINT8;
  u8.weight_dtype = UINT8;
  const std::pair<QuantizedModel, std::string> cases[] = {
      {MlpWith(asym),
       "(fully_connected): rule: weights must be symmetric (zero point 0); supported for fully_connected: int8 "
       "activations with int8 weights"},
      {MlpWith(u8),
       "backend 'onednn' cannot run op 1 'fc1' (fully_connected): rule: uint8 weights with uint8 activations are not "
       "supported"},
  };
  for (const auto& [model, expect] : cases) {
    auto b = CreateBackend("onednn");
    const absl::Status s = (*b)->Prepare(model);
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("backend 'onednn' cannot run op "));
    EXPECT_THAT(std::string(s.message()), HasSubstr(expect));
  }
}

}  // namespace
}  // namespace quant::backends
