// `gemmlowp` is bit-identical to `reference` on every layer type (FC, conv with
// stride/padding/groups/depthwise, max pool with padding, flatten), on the v2 graph
// ops (residual add, concat, pools, lookup tables: every intermediate tensor
// compared) and on whole mlp- and cnn-shaped models, per-tensor and per-channel,
// int8 and uint8 activations and weights, symmetric and asymmetric, 8 and fewer bits.
#include "quant/backends/gemmlowp_backend.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
#include "quant/backends/reference_backend.h"
#include "quant/core/registry.h"
#include "tests/backends/test_models.h"

namespace quant::backends {
namespace {

// Runs both backends; returns the number of differing outputs (and checks sizes).
int64_t Differences(const QuantizedModel& m, int64_t batch, uint64_t seed, int64_t* total) {
  auto ref = CreateBackend("reference");
  auto gl = CreateBackend("gemmlowp");
  EXPECT_TRUE((*ref)->Prepare(m).ok());
  absl::Status s = (*gl)->Prepare(m);
  EXPECT_TRUE(s.ok()) << s;
  // Inputs a little outside the calibrated range, so clamps are exercised too.
  std::vector<float> x = RandomImages(m, batch, seed);
  for (float& v : x) v = v * 1.2f - 0.1f;
  RunOutput a, b;
  EXPECT_TRUE((*ref)->Run(x.data(), batch, &a).ok());
  EXPECT_TRUE((*gl)->Run(x.data(), batch, &b).ok());
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.quantized.size(), b.quantized.size());
  int64_t diff = 0;
  for (size_t i = 0; i < a.quantized.size() && i < b.quantized.size(); ++i) diff += a.quantized[i] != b.quantized[i];
  *total = static_cast<int64_t>(a.quantized.size());
  // The comparison means something only if the outputs are not all clamped to one value.
  std::set<int32_t> distinct(a.quantized.begin(), a.quantized.end());
  EXPECT_GE(distinct.size(), 5u);
  return diff;
}

TEST(GemmlowpBackendTest, IsRegisteredAndUsesSimdKernels) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("gemmlowp"));
  EXPECT_STREQ(GemmlowpBackend::KernelPath(), "AVX2 64-bit");
}

TEST(GemmlowpBackendTest, BitIdenticalToReferenceOnEveryLayerType) {
  int cases = 0;
  for (const auto& [layer_name, f0] : LayerModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 17);
    std::vector<float> calib = RandomImages(f, 16, 18);
    for (const Variant& v : Variants()) {
      auto m = QuantizeMinMax(f, calib.data(), 16, v.opt);
      ASSERT_TRUE(m.ok()) << m.status();
      int64_t total = 0;
      const int64_t diff = Differences(*m, 5, 19, &total);
      EXPECT_EQ(diff, 0) << layer_name << ", " << v.name << ": " << diff << " of " << total << " differ";
      EXPECT_GT(total, 0);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 11 * 32);
}

TEST(GemmlowpBackendTest, BitIdenticalToReferenceOnEveryTensorOfTheGraphModels) {
  int cases = 0;
  for (const auto& [graph_name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 41);
    std::vector<float> calib = RandomImages(f, 16, 42);
    for (const Variant& v : Variants()) {
      if (v.opt.weight_bits != 8) continue;
      auto m = QuantizeMinMax(f, calib.data(), 16, v.opt);
      ASSERT_TRUE(m.ok()) << m.status();
      int64_t total = 0;
      EXPECT_EQ(Differences(*m, 5, 43, &total), 0) << graph_name << ", " << v.name;
      ReferenceBackend ref;
      GemmlowpBackend gl;
      ref.set_keep_intermediates(true);
      gl.set_keep_intermediates(true);
      ASSERT_TRUE(ref.Prepare(*m).ok());
      ASSERT_TRUE(gl.Prepare(*m).ok());
      std::vector<float> x = RandomImages(*m, 3, 44);
      RunOutput a, b;
      ASSERT_TRUE(ref.Run(x.data(), 3, &a).ok());
      ASSERT_TRUE(gl.Run(x.data(), 3, &b).ok());
      for (int i = 0; i < m->ops_size(); ++i) {
        std::vector<int32_t> qa, qb;
        ASSERT_TRUE(ref.ReadTensor(m->ops(i).outputs(0), &qa));
        ASSERT_TRUE(gl.ReadTensor(m->ops(i).outputs(0), &qb));
        EXPECT_EQ(qa, qb) << graph_name << ", " << v.name << ": " << OpLabel(*m, i);
      }
      ++cases;
    }
  }
  EXPECT_EQ(cases, 8 * 16);
}

TEST(GemmlowpBackendTest, BitIdenticalToReferenceOnWholeModels) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(5) : MakeFloatMlp(5);
    std::vector<float> calib = RandomImages(f, 32, 6);
    for (bool pc : {false, true}) {
      for (DType act : {INT8, UINT8}) {
        QuantizeOptions o;
        o.per_channel = pc;
        o.activation_dtype = act;
        o.weight_dtype = act;
        o.symmetric_weights = act == INT8;
        auto m = QuantizeMinMax(f, calib.data(), 32, o);
        ASSERT_TRUE(m.ok());
        int64_t total = 0;
        EXPECT_EQ(Differences(*m, 64, 7, &total), 0)
            << (cnn ? "cnn" : "mlp") << (pc ? " per-channel " : " per-tensor ") << DTypeName(act);
        EXPECT_EQ(total, 640);
      }
    }
  }
}

}  // namespace
}  // namespace quant::backends

namespace quant::backends {
namespace {

// Requantization multipliers above 1 (positive shifts: gemmlowp's left-shift branch),
// per-tensor and per-channel: a small FC with unit input/weight scales and output
// scale 0.4 (multipliers 1.25 .. 3.75), small integer inputs, so outputs stay in range.
TEST(GemmlowpBackendTest, BitIdenticalWithMultipliersAboveOne) {
  for (bool pc : {false, true}) {
    QuantizedModel m = EmptyModel();
    const int xt = AddActivation(&m, "x", {4}, INT8, 1.0f, 0);
    std::vector<float> scales;
    for (int o = 0; o < (pc ? 6 : 1); ++o) scales.push_back(pc ? 0.5f + 0.2f * o : 1.0f);
    const int w = AddWeights(&m, "w", {6, 4}, INT8, scales, std::vector<int32_t>(scales.size(), 0),
                             {1, -2, 3, 0, -3, 2, 1, 1, 0, 0, -1, 3, 2, 2, -2, -1, 3, -3, 1, 0, -1, 1, 2, -2});
    const int bias = AddBias(&m, "b", {-3, -2, -1, 0, 1, 2});
    const int y = AddActivation(&m, "y", {6}, INT8, 0.4f, 3);
    FullyConnectedOptions* fc = AddOp(&m, "fc", {xt, w, bias}, y)->mutable_fully_connected();
    m.add_inputs(xt);
    m.add_outputs(y);
    ASSERT_TRUE(ComputeRequantization(&m).ok());
    for (int s : fc->requant().shift()) EXPECT_GT(s, 0);
    // Integer inputs in [-4, 4].
    auto ref = CreateBackend("reference");
    auto gl = CreateBackend("gemmlowp");
    ASSERT_TRUE((*ref)->Prepare(m).ok());
    ASSERT_TRUE((*gl)->Prepare(m).ok());
    std::vector<float> x = RandomImages(m, 50, 34);
    for (float& v : x) v = std::round(v * 8 - 4);
    RunOutput a, b;
    ASSERT_TRUE((*ref)->Run(x.data(), 50, &a).ok());
    ASSERT_TRUE((*gl)->Run(x.data(), 50, &b).ok());
    EXPECT_EQ(a.quantized, b.quantized) << (pc ? "per-channel" : "per-tensor");
    std::set<int32_t> distinct(a.quantized.begin(), a.quantized.end());
    EXPECT_GT(distinct.size(), 30u);
    EXPECT_LT(*std::max_element(a.quantized.begin(), a.quantized.end()), 127);  // not saturated
  }
}

}  // namespace
}  // namespace quant::backends
