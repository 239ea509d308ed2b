// `xnnpack` against `reference`: differences counted (identical / off by one
// step / larger) and explained. XNNPACK requantizes with float arithmetic
// (float(acc) * float(s_in*s_w/s_out), round to nearest even) where the reference
// uses the fixed-point multiplier (two roundings, ties away from zero); the tests
// show XNNPACK equals an emulation of that float formula exactly, so every
// single-layer difference is that rounding, and at most one step.
// Also: the float backends, profile rejections, operator reuse across batch sizes.
#include "quant/backends/xnnpack_backend.h"

#include <cmath>
#include <cstdio>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/fixed_point.h"
#include "quant/backends/model_builder.h"
#include "quant/backends/onednn_backend.h"
#include "quant/backends/reference_backend.h"
#include "quant/backends/reference_kernels.h"
#include "quant/backends/xnnpack_float_backend.h"
#include "quant/core/registry.h"
#include "tests/backends/backend_compare.h"
#include "tests/backends/test_models.h"

namespace quant::backends {
namespace {

using ::testing::HasSubstr;

// The variants XNNPACK can run: int8 with symmetric int8 weights (qs8/qc8), uint8 per-tensor (qu8).
std::vector<Variant> XnnpackVariants() {
  std::vector<Variant> out;
  for (const Variant& v : Variants()) {
    const QuantizeOptions& o = v.opt;
    const bool s8 = o.activation_dtype == INT8 && o.weight_dtype == INT8 && o.symmetric_weights;
    const bool u8 = o.activation_dtype == UINT8 && o.weight_dtype == UINT8 && !o.per_channel;
    if (s8 || u8) out.push_back(v);
  }
  return out;
}

TEST(XnnpackBackendTest, AreRegistered) {
  for (const char* name : {"xnnpack", "xnnpack_f32", "xnnpack_f16"}) {
    EXPECT_TRUE(Registry<Backend>::Get().Contains(name)) << name;
    auto b = CreateBackend(name);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ((*b)->name(), name);
  }
}

// XNNPACK's convert_nc_f32_qs8/qu8 quantizes the input exactly like the reference,
// including ties (round half to even). The model is an identity FC (weights 1 on the
// diagonal, weight scale 1, output qparams = input's): its requantization multiplier is
// exactly 1, which both requantizations apply without rounding, so the outputs are
// the quantized inputs. (XNNPACK rejects a 1x1 max pool, which would be simpler.)
// oneDNN's backend quantizes with the shared AVX2 loop (Backend::QuantizeInputBytes),
// checked the same way; 3600 values also run its scalar tail.
TEST(XnnpackBackendTest, InputQuantizationIsIdentical) {
  for (const auto& [backend, dtype] : std::vector<std::pair<std::string, DType>>{
           {"xnnpack", INT8}, {"xnnpack", UINT8}, {"onednn", INT8}, {"onednn", UINT8}}) {
    if (backend == "onednn" && !OnednnBackend::HasVnni()) {
      // Refused on a CPU without VNNI (tests/backends/onednn_backend_test.cc checks how).
      auto b = CreateBackend("onednn");
      ASSERT_TRUE(b.ok());
      EXPECT_EQ((*b)->CanRunHere().code(), absl::StatusCode::kUnimplemented);
      continue;
    }
    const DType weight_dtype = backend == "onednn" ? INT8 : dtype;  // oneDNN takes int8 weights only
    const int c = 90;
    QuantizedModel m = EmptyModel();
    const float scale = 0.0173f;
    const int32_t zp = dtype == INT8 ? -7 : 131;
    const int xt = AddActivation(&m, "x", {c}, dtype, scale, zp);
    std::vector<int32_t> w(c * c, 0);
    for (int i = 0; i < c; ++i) w[i * c + i] = 1;
    const int wt = AddWeights(&m, "w", {c, c}, weight_dtype, {1.0f}, {0}, w);
    const int yt = AddActivation(&m, "y", {c}, dtype, scale, zp);
    FullyConnectedOptions* fc = AddOp(&m, "identity", {xt, wt}, yt, DTypeMin(dtype), DTypeMax(dtype))
                                    ->mutable_fully_connected();
    m.add_inputs(xt);
    m.add_outputs(yt);
    ASSERT_TRUE(ComputeRequantization(&m).ok());
    ASSERT_EQ(fc->requant().multiplier(0), 1 << 30);
    const int64_t batch = 40;
    std::vector<float> x = RandomImages(m, batch, 3);
    for (size_t i = 0; i < x.size(); ++i) {
      if (i % 3 == 0) x[i] = (static_cast<int>(i % 301) - 150 + 0.5f) * 0.0173f;  // ties (up to float error)
      if (i % 3 == 1) x[i] = x[i] * 6 - 3;                                       // beyond the range: clamps
    }
    const RunOutput ref = RunBackend("reference", m, x, batch);
    const RunOutput other = RunBackend(backend, m, x, batch);
    const Stats s = Compare(ref.quantized, other.quantized);
    EXPECT_EQ(s.identical, s.total) << backend << ", " << DTypeName(dtype) << ": " << s.ToString();
    EXPECT_EQ(s.total, 3600);
    std::set<int32_t> distinct(ref.quantized.begin(), ref.quantized.end());
    EXPECT_GT(distinct.size(), 100u);
  }
}

// XNNPACK's fp32 requantization, as its operator creation and microkernels compute it.
std::vector<int32_t> EmulateXnnpackRequantization(const QuantizedModel& m, const std::vector<int32_t>& acc) {
  const Op& l = m.ops(0);
  const Tensor& wq = m.tensors(WeightTensor(l));
  const Tensor& y = m.tensors(l.outputs(0));
  const int out_c = wq.shape(0);
  std::vector<int32_t> out(acc.size());
  for (size_t i = 0; i < acc.size(); ++i) {
    const int o = static_cast<int>(i % out_c);
    const float scale =
        TensorScale(m.tensors(l.inputs(0))) * TensorScale(wq, IsPerChannel(wq) ? o : 0) / TensorScale(y);  // float
    const float v = std::nearbyint(static_cast<float>(acc[i]) * scale);                                   // half to even
    const float r = v + static_cast<float>(TensorZeroPoint(y));
    out[i] = static_cast<int32_t>(std::min<float>(std::max<float>(r, l.output_min()), l.output_max()));
  }
  return out;
}

// Why an output differs, judged against the exact value acc * multiplier * 2^(shift-31).
struct Causes {
  int64_t double_rounding = 0;  // reference's two roundings miss the nearest integer
  int64_t tie = 0;              // exact tie: reference rounds away from zero, XNNPACK to even
  int64_t float_precision = 0;  // XNNPACK's float product lands on the other side
  int64_t total = 0;
};

void Classify(const QuantizedModel& m, const std::vector<int32_t>& acc, const std::vector<int32_t>& ref,
              const std::vector<int32_t>& xnn, Causes* c) {
  const Op& l = m.ops(0);
  const Requantization& rq = l.has_conv2d() ? l.conv2d().requant() : l.fully_connected().requant();
  const int out_c = rq.multiplier_size();
  for (size_t i = 0; i < acc.size(); ++i) {
    if (ref[i] == xnn[i]) continue;
    ++c->total;
    const int o = static_cast<int>(i % out_c);
    const int total_shift = 31 - rq.shift(o);  // >= 1 for these models (multipliers < 1)
    const __int128 num = static_cast<__int128>(acc[i]) * rq.multiplier(o);
    const __int128 den = static_cast<__int128>(1) << total_shift;
    const __int128 fl = num >= 0 ? num / den : -((-num + den - 1) / den);  // floor
    const __int128 rem2 = 2 * (num - fl * den);                           // 2 * fractional part * den
    const bool tie = rem2 == den;
    const int64_t nearest_away = static_cast<int64_t>(rem2 > den || (tie && num > 0) ? fl + 1 : fl);
    const int64_t unclamped = MultiplyByQuantizedMultiplier(acc[i], rq.multiplier(o), rq.shift(o));
    if (unclamped != nearest_away) {
      ++c->double_rounding;
    } else if (tie) {
      ++c->tie;
    } else {
      ++c->float_precision;
    }
  }
}

TEST(XnnpackBackendTest, SingleLayerDifferencesAreTheFloatRequantization) {
  Stats all;
  Causes causes;
  for (const auto& [layer_name, f0] : LayerModels()) {
    QuantizedModel f = FirstOpOnly(f0);  // the weighted op alone
    RandomizeFloatWeights(&f, 23);
    std::vector<float> calib = RandomImages(f, 16, 24);
    for (const Variant& v : XnnpackVariants()) {
      auto m = QuantizeMinMax(f, calib.data(), 16, v.opt);
      ASSERT_TRUE(m.ok());
      const int64_t batch = 9;
      const std::vector<float> x = Inputs(*m, batch, 25);
      const RunOutput ref = RunBackend("reference", *m, x, batch);
      const RunOutput xnn = RunBackend("xnnpack", *m, x, batch);
      const std::vector<int32_t> emulated = EmulateXnnpackRequantization(*m, Accumulators(*m, x, batch));
      const Stats vs_emulation = Compare(emulated, xnn.quantized);
      EXPECT_EQ(vs_emulation.identical, vs_emulation.total)
          << layer_name << ", " << v.name << ": xnnpack vs emulated fp32 requantization: " << vs_emulation.ToString();
      const Stats s = Compare(ref.quantized, xnn.quantized);
      EXPECT_LE(s.max_steps, 1) << layer_name << ", " << v.name << ": " << s.ToString();
      Classify(*m, Accumulators(*m, x, batch), ref.quantized, xnn.quantized, &causes);
      all.total += s.total;
      all.identical += s.identical;
      all.off_by_one += s.off_by_one;
      all.larger += s.larger;
      all.max_steps = std::max(all.max_steps, s.max_steps);
    }
  }
  std::printf("xnnpack vs reference, single layers: %s\n", all.ToString().c_str());
  std::printf("causes of the %lld differences: %lld double rounding in the fixed-point path (SaturatingRoundingDoublingHighMul "
              "rounds, then RoundingDivideByPOT rounds again), %lld exact ties (away from zero vs to even), %lld float "
              "precision of XNNPACK's scale/product\n",
              static_cast<long long>(causes.total), static_cast<long long>(causes.double_rounding),
              static_cast<long long>(causes.tie), static_cast<long long>(causes.float_precision));
  EXPECT_EQ(causes.total, all.off_by_one);
  EXPECT_EQ(causes.double_rounding + causes.tie + causes.float_precision, causes.total);
  // The fixed-point double rounding (an error of the reference, relative to its own
  // multiplier) is the dominant cause; XNNPACK's single float rounding is the closer one.
  EXPECT_GT(causes.double_rounding, causes.total / 2);
  EXPECT_GT(all.identical, all.total * 95 / 100);
}

TEST(XnnpackBackendTest, WholeModelDifferencesAreCountedAndSmall) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(8) : MakeFloatMlp(8);
    std::vector<float> calib = RandomImages(f, 64, 9);
    struct Config {
      const char* name;
      DType dtype;
      bool per_channel;
    };
    for (const Config& c : {Config{"int8 per-tensor", INT8, false}, Config{"int8 per-channel", INT8, true},
                            Config{"uint8 per-tensor", UINT8, false}}) {
      QuantizeOptions o;
      o.activation_dtype = c.dtype;
      o.weight_dtype = c.dtype;
      o.per_channel = c.per_channel;
      o.symmetric_weights = c.dtype == INT8;
      auto m = QuantizeMinMax(f, calib.data(), 64, o);
      ASSERT_TRUE(m.ok());
      const int64_t batch = 256;
      const std::vector<float> x = RandomImages(*m, batch, 10);
      const RunOutput ref = RunBackend("reference", *m, x, batch);
      const RunOutput xnn = RunBackend("xnnpack", *m, x, batch);
      const Stats s = Compare(ref.quantized, xnn.quantized);
      int top1_agree = 0;
      for (int64_t b = 0; b < batch; ++b) {
        auto arg = [&](const std::vector<int32_t>& q) {
          return std::max_element(q.begin() + b * 10, q.begin() + b * 10 + 10) - (q.begin() + b * 10);
        };
        top1_agree += arg(ref.quantized) == arg(xnn.quantized);
      }
      std::printf("xnnpack vs reference, %s %s: %s; top-1 agreement %d/%lld\n", cnn ? "cnn" : "mlp", c.name,
                  s.ToString().c_str(), top1_agree, static_cast<long long>(batch));
      // One-step differences in hidden layers propagate, so the logits may differ by a few steps,
      // but most outputs must be identical and none far off.
      EXPECT_GT(s.identical, s.total * 8 / 10) << s.ToString();
      EXPECT_LE(s.max_steps, 4) << s.ToString();
    }
  }
}

TEST(XnnpackBackendTest, OperatorsAreReusedAcrossBatchSizes) {
  QuantizedModel f = MakeFloatCnn(11);
  std::vector<float> calib = RandomImages(f, 16, 12);
  QuantizeOptions o;
  o.per_channel = true;
  auto m = QuantizeMinMax(f, calib.data(), 16, o);
  ASSERT_TRUE(m.ok());
  for (const char* name : {"xnnpack", "xnnpack_f32", "gemmlowp"}) {
    auto b = CreateBackend(name);
    ASSERT_TRUE((*b)->Prepare(*m).ok());
    const std::vector<float> x = RandomImages(*m, 7, 13);
    RunOutput r3, r7, r3b;
    ASSERT_TRUE((*b)->Run(x.data(), 3, &r3).ok());
    ASSERT_TRUE((*b)->Run(x.data(), 7, &r7).ok());
    ASSERT_TRUE((*b)->Run(x.data(), 3, &r3b).ok());
    EXPECT_EQ(r3.logits, r3b.logits) << name;
    EXPECT_EQ(std::vector<float>(r7.logits.begin(), r7.logits.begin() + 30), r3.logits) << name;
    // A different input buffer of the same batch size is read, not the old one.
    std::vector<float> y = RandomImages(*m, 3, 14);
    RunOutput ry;
    ASSERT_TRUE((*b)->Run(y.data(), 3, &ry).ok());
    EXPECT_NE(ry.logits, r3.logits) << name;
  }
}

TEST(XnnpackFloatBackendTest, RunTheFloatModel) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(15) : MakeFloatMlp(15);
    std::vector<float> calib = RandomImages(f, 8, 16);
    auto m = QuantizeMinMax(f, calib.data(), 8, QuantizeOptions());
    ASSERT_TRUE(m.ok());
    const int64_t batch = 16;
    const std::vector<float> x = RandomImages(*m, batch, 17);
    const std::vector<float> want = *FloatForward(f, x.data(), batch);
    const RunOutput f32 = RunBackend("xnnpack_f32", *m, x, batch);
    const RunOutput f16 = RunBackend("xnnpack_f16", *m, x, batch);
    ASSERT_EQ(f32.logits.size(), want.size());
    ASSERT_EQ(f16.logits.size(), want.size());
    EXPECT_TRUE(f32.quantized.empty());
    double mag = 0, e32 = 0, e16 = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      mag = std::max(mag, std::fabs(static_cast<double>(want[i])));
      e32 = std::max(e32, std::fabs(static_cast<double>(f32.logits[i]) - want[i]));
      e16 = std::max(e16, std::fabs(static_cast<double>(f16.logits[i]) - want[i]));
    }
    EXPECT_LT(e32, 1e-5 * std::max(1.0, mag)) << "f32, summation order only";
    EXPECT_LT(e16, 2e-2 * std::max(1.0, mag)) << "f16";
    EXPECT_GT(e16, 0.0) << "f16 should round somewhere";
  }
}

// The float backends on the v2 graph ops they have operators for; the others refused by name.
TEST(XnnpackFloatBackendTest, GraphOpsMatchTheFloatExecutor) {
  for (const auto& [graph_name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 61);
    const std::vector<float> calib = RandomImages(f, 8, 62);
    auto m = QuantizeMinMax(f, calib.data(), 8, QuantizeOptions());
    ASSERT_TRUE(m.ok());
    const int64_t batch = 4;
    const std::vector<float> x = RandomImages(*m, batch, 63);
    const std::vector<float> want = *FloatForward(f, x.data(), batch);
    for (const char* name : {"xnnpack_f32", "xnnpack_f16"}) {
      auto b = CreateBackend(name);
      const absl::Status s = (*b)->Prepare(*m);
      if (!s.ok()) {
        EXPECT_THAT(std::string(s.message()), HasSubstr(absl::StrCat("backend '", name, "' cannot run op ")));
        continue;
      }
      RunOutput out;
      ASSERT_TRUE((*b)->Run(x.data(), batch, &out).ok());
      double err = 0, mag = 0;
      for (size_t i = 0; i < want.size(); ++i) {
        mag = std::max(mag, std::fabs(static_cast<double>(want[i])));
        err = std::max(err, std::fabs(static_cast<double>(out.logits[i]) - want[i]));
      }
      EXPECT_LT(err, (std::string(name) == "xnnpack_f32" ? 1e-4 : 3e-2) * std::max(1.0, mag)) << graph_name << " " << name;
    }
  }
}

TEST(BackendProfileTest, RejectionsNameLayerBackendAndRule) {
  QuantizeOptions u8pc;
  u8pc.activation_dtype = UINT8;
  u8pc.weight_dtype = UINT8;
  u8pc.per_channel = true;
  QuantizeOptions asym;
  asym.symmetric_weights = false;
  QuantizeOptions mixed;
  mixed.weight_dtype = UINT8;
  struct Case {
    QuantizedModel model;
    std::string expect;
  };
  std::vector<Case> cases = {
      {MlpWith(u8pc),
       "backend 'xnnpack' cannot run op 1 'fc1' (fully_connected): rule: per-channel weights are not supported "
       "with uint8 activations and uint8 weights"},
      {MlpWith(asym),
       "backend 'xnnpack' cannot run op 1 'fc1' (fully_connected): rule: weights must be symmetric (zero point 0)"},
      {MlpWith(mixed),
       "backend 'xnnpack' cannot run op 1 'fc1' (fully_connected): rule: uint8 weights with int8 activations are "
       "not supported"},
  };
  // A requantization scale XNNPACK refuses (>= 256): a tiny output scale on fc2.
  QuantizedModel big = MlpWith(QuantizeOptions());
  big.mutable_tensors(7)->set_scale(0, 1e-9f);  // fc2's output
  ASSERT_TRUE(ComputeRequantization(&big).ok());
  cases.push_back({big, "backend 'xnnpack' cannot run op 2 'fc2' (fully_connected): rule: requantization scale"});
  for (const Case& c : cases) {
    auto b = CreateBackend("xnnpack");
    absl::Status s = CheckProfile(c.model, (*b)->profile());
    EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expect));
    if (c.expect.find("requantization") == std::string::npos) {  // dtype rules also list what would work
      EXPECT_THAT(std::string(s.message()), HasSubstr("supported for fully_connected: int8 activations with int8"));
    }
    EXPECT_THAT(std::string((*b)->Prepare(c.model).message()), HasSubstr(c.expect));  // before any work
    // The reference and gemmlowp run all of them.
    for (const char* ok : {"reference", "gemmlowp"}) {
      auto other = CreateBackend(ok);
      EXPECT_TRUE((*other)->Prepare(c.model).ok()) << ok;
    }
  }
  // XNNPACK refuses a 1-element max pool window.
  QuantizedModel pool1 = EmptyModel();
  const int px = AddActivation(&pool1, "x", {4, 4, 2}, INT8, 0.1f, 0);
  const int py = AddActivation(&pool1, "y", {4, 4, 2}, INT8, 0.1f, 0);
  Pool2DOptions* p = AddOp(&pool1, "pool", {px}, py)->mutable_max_pool2d();
  p->set_kernel_h(1);
  p->set_kernel_w(1);
  p->set_stride_h(1);
  p->set_stride_w(1);
  pool1.add_inputs(px);
  pool1.add_outputs(py);
  ASSERT_TRUE(ValidateQuantizedModel(pool1).ok());
  auto xb = CreateBackend("xnnpack");
  EXPECT_THAT(std::string((*xb)->Prepare(pool1).message()),
              HasSubstr("backend 'xnnpack' cannot run op 0 'pool' (max_pool2d): rule: a max_pool2d window of one "
                        "element"));
  EXPECT_TRUE((*CreateBackend("reference"))->Prepare(pool1).ok());
  // The float backends need the float model.
  QuantizeOptions no_float;
  no_float.keep_float = false;
  for (const char* name : {"xnnpack_f32", "xnnpack_f16"}) {
    auto b = CreateBackend(name);
    EXPECT_THAT(std::string((*b)->Prepare(MlpWith(no_float)).message()),
                HasSubstr(absl::StrCat("backend '", name, "' cannot run op 1 'fc1' (fully_connected): rule: the "
                                       "float backends run the float model")));
  }
}

// The v2 graph ops XNNPACK has operators for (add, pools, sigmoid/tanh, depthwise conv):
// every tensor compared with the reference, the differences counted per op.
TEST(XnnpackBackendTest, GraphOpsWithinOneStepPerOp) {
  int graphs = 0;
  for (const auto& [graph_name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 51);
    const std::vector<float> calib = RandomImages(f, 16, 52);
    for (DType dtype : {INT8, UINT8}) {
      QuantizeOptions o;
      o.activation_dtype = o.weight_dtype = dtype;
      o.symmetric_weights = dtype == INT8;
      o.per_channel = dtype == INT8;
      auto m = QuantizeMinMax(f, calib.data(), 16, o);
      ASSERT_TRUE(m.ok());
      XnnpackBackend xnn;
      xnn.set_keep_intermediates(true);
      const absl::Status prepared = xnn.Prepare(*m);
      if (!prepared.ok()) {  // concat, hardswish, int8 average pooling: refused by name
        EXPECT_EQ(prepared.code(), absl::StatusCode::kUnimplemented) << prepared;
        EXPECT_THAT(std::string(prepared.message()), HasSubstr("backend 'xnnpack' cannot run op "));
        std::printf("xnnpack, %s %s: refused: %s\n", graph_name.c_str(), DTypeName(dtype).c_str(),
                    std::string(prepared.message()).c_str());
        continue;
      }
      ReferenceBackend ref;
      ref.set_keep_intermediates(true);
      ASSERT_TRUE(ref.Prepare(*m).ok());
      const int64_t batch = 8;
      const std::vector<float> x = Inputs(*m, batch, 53);
      RunOutput a, b;
      ASSERT_TRUE(ref.Run(x.data(), batch, &a).ok());
      ASSERT_TRUE(xnn.Run(x.data(), batch, &b).ok());
      std::string per_op;
      for (int i = 0; i < m->ops_size(); ++i) {
        std::vector<int32_t> qa, qb;
        ASSERT_TRUE(ref.ReadTensor(m->ops(i).outputs(0), &qa));
        ASSERT_TRUE(xnn.ReadTensor(m->ops(i).outputs(0), &qb));
        const Stats s = Compare(qa, qb);
        absl::StrAppend(&per_op, "\n    ", OpLabel(*m, i), ": ", s.total - s.identical, " of ", s.total,
                        " differ, max ", s.max_steps);
        // A difference in an op's input can move its output by more than its own rounding:
        // the first op of each graph is held to one step, the rest to two.
        EXPECT_LE(s.max_steps, i == 0 ? 1 : 2) << graph_name << " " << DTypeName(dtype) << ": " << OpLabel(*m, i);
      }
      std::printf("xnnpack vs reference, %s %s:%s\n", graph_name.c_str(), DTypeName(dtype).c_str(), per_op.c_str());
      ++graphs;
    }
  }
  EXPECT_GT(graphs, 8);
}

// Config validation can ask before any model exists, with the same rules.
TEST(BackendProfileTest, LayerSpecsAreCheckedWithoutAModel) {
  LayerQuantSpec spec;
  spec.layer = "conv1";
  spec.kind = "conv2d";
  spec.activation = UINT8;
  spec.weight = UINT8;
  spec.per_channel = true;
  spec.symmetric = false;
  const absl::Status s = CheckLayerSpec(spec, XnnpackBackend::Profile());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("backend 'xnnpack' cannot run layer 'conv1' (conv2d): rule: per-channel weights are not "
                        "supported with uint8 activations and uint8 weights; supported for conv2d:"));
  spec.per_channel = false;
  EXPECT_TRUE(CheckLayerSpec(spec, XnnpackBackend::Profile()).ok());
  spec.activation = spec.weight = INT8;
  EXPECT_THAT(std::string(CheckLayerSpec(spec, XnnpackBackend::Profile()).message()),
              HasSubstr("rule: weights must be symmetric"));
  spec.symmetric = true;
  spec.bits = 9;
  EXPECT_THAT(std::string(CheckLayerSpec(spec, XnnpackBackend::Profile()).message()),
              HasSubstr("rule: weight bit width 9 is outside [2, 8]"));
  spec.bits = 3;
  EXPECT_TRUE(CheckLayerSpec(spec, XnnpackBackend::Profile()).ok());
  spec.weight = UINT8;
  spec.per_channel = true;
  spec.symmetric = false;
  for (const char* name : {"reference", "gemmlowp", "xnnpack_f32"}) {
    EXPECT_TRUE(CheckLayerSpec(spec, (*CreateBackend(name))->profile()).ok()) << name;
  }
}

// The profile's requantization-scale rule is what XNNPACK itself enforces.
TEST(BackendProfileTest, XnnpackRequantizationScaleLimitIsReal) {
  ASSERT_TRUE(xnn::Initialize().ok());
  std::vector<int8_t> w(16, 1);
  std::vector<int32_t> bias(4, 0);
  for (float scale : {255.9f, 256.0f}) {
    xnn_operator_t op = nullptr;
    const xnn_status s = xnn_create_fully_connected_nc_qs8(4, 4, 4, 4, 0, 1.0f, scale, w.data(), bias.data(), 0, 1.0f,
                                                           -128, 127, 0, &op);
    xnn::Operator owned(op);
    EXPECT_EQ(s == xnn_status_success, scale < XnnpackBackend::Profile().max_requantization_scale) << scale;
  }
}

}  // namespace
}  // namespace quant::backends
