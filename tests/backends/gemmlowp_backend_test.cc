// `gemmlowp` is bit-identical to `reference` on every layer type (FC, conv with
// stride/padding/groups/depthwise, max pool with padding, flatten) and on whole
// mlp- and cnn-shaped models, per-tensor and per-channel, int8 and uint8
// activations and weights, symmetric and asymmetric, 8 and fewer bits.
#include "quant/backends/gemmlowp_backend.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
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
  EXPECT_STREQ(GemmlowpBackend::KernelPath(), "SSE4 64-bit");
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
    QuantizedModel m = Base({4});
    m.mutable_input()->set_scale(1.0f);
    m.mutable_input()->set_dtype(INT8);
    AddFc(&m, "fc", 4, 6, ACTIVATION_NONE);
    Layer* l = m.mutable_layers(0);
    FullyConnected* fc = l->mutable_fully_connected();
    const int8_t w[24] = {1, -2, 3, 0, -3, 2, 1, 1, 0, 0, -1, 3, 2, 2, -2, -1, 3, -3, 1, 0, -1, 1, 2, -2};
    fc->set_weights(std::string(reinterpret_cast<const char*>(w), 24));
    fc->mutable_weight_quant()->set_dtype(INT8);
    fc->mutable_weight_quant()->set_bits(8);
    for (int o = 0; o < (pc ? 6 : 1); ++o) {
      fc->mutable_weight_quant()->add_scale(pc ? 0.5f + 0.2f * o : 1.0f);
      fc->mutable_weight_quant()->add_zero_point(0);
    }
    for (int o = 0; o < 6; ++o) fc->add_bias(o - 3);
    l->mutable_output()->set_scale(0.4f);
    l->mutable_output()->set_zero_point(3);
    l->mutable_output()->set_dtype(INT8);
    l->set_output_min(-128);
    l->set_output_max(127);
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
