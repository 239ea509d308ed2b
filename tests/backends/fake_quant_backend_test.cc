// `fake_quant`: registered with a profile as wide as the reference's; its
// outputs are the float simulation of the integer model, so they differ from
// `reference` by at most a step here and the top-1 classes agree; a direct
// float computation of a one-layer model equals it exactly.
#include "quant/backends/fake_quant_backend.h"

#include <cmath>

#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
#include "quant/core/registry.h"
#include "tests/backends/test_models.h"

namespace quant::backends {
namespace {

TEST(FakeQuantBackendTest, Registered) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("fake_quant"));
  auto b = CreateBackend("fake_quant");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "fake_quant");
  EXPECT_FALSE((*b)->profile().float_model);
}

void CompareWithReference(const QuantizedModel& fm, const QuantizeOptions& o, double min_identical = 0.8) {
  const std::vector<float> calib = RandomImages(fm, 64, 1);
  auto qm = QuantizeMinMax(fm, calib.data(), 64, o);
  ASSERT_TRUE(qm.ok()) << qm.status();
  auto ref = CreateBackend("reference");
  auto fq = CreateBackend("fake_quant");
  ASSERT_TRUE((*ref)->Prepare(*qm).ok());
  ASSERT_TRUE((*fq)->Prepare(*qm).ok());
  const std::vector<float> x = RandomImages(fm, 128, 2);
  RunOutput a, b;
  ASSERT_TRUE((*ref)->Run(x.data(), 128, &a).ok());
  ASSERT_TRUE((*fq)->Run(x.data(), 128, &b).ok());
  ASSERT_EQ(a.quantized.size(), b.quantized.size());
  int64_t identical = 0, max_diff = 0;
  for (size_t i = 0; i < a.quantized.size(); ++i) {
    const int64_t d = std::abs(a.quantized[i] - b.quantized[i]);
    identical += d == 0;
    max_diff = std::max(max_diff, d);
  }
  EXPECT_LE(max_diff, 2);
  EXPECT_GT(identical, static_cast<int64_t>(static_cast<double>(a.quantized.size()) * min_identical));
  std::printf("fake_quant vs reference: %lld of %zu identical, max %lld steps\n", static_cast<long long>(identical),
              a.quantized.size(), static_cast<long long>(max_diff));
}

TEST(FakeQuantBackendTest, CloseToReferenceOnMlpAndCnn) {
  QuantizeOptions per_channel;
  per_channel.per_channel = true;
  CompareWithReference(MakeFloatMlp(3), per_channel);
  CompareWithReference(MakeFloatCnn(4), per_channel);
  QuantizeOptions u8;
  u8.activation_dtype = UINT8;
  u8.weight_dtype = UINT8;
  u8.symmetric_weights = false;
  CompareWithReference(MakeFloatCnn(5), u8);
  // The v2 graph ops: add, concat, pools, lookup tables.
  for (auto& [name, f0] : GraphModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 6);
    SCOPED_TRACE(name);
    // The average of a 2x2 window lands on exact halves of a step a quarter of the
    // time: the float simulation rounds those to even, the fixed point away from zero.
    CompareWithReference(f, per_channel, name == "average pool 2x2" ? 0.65 : 0.8);
  }
}

TEST(FakeQuantBackendTest, EqualsDirectFloatComputation) {
  // One FC op: out = clamp(zp + nearbyint((sum x_deq * w_deq + b) * (1 / s_out))).
  QuantizedModel m = EmptyModel();
  const int xt = AddActivation(&m, "x", {3}, INT8, 0.05f, -3);
  const int8_t w[6] = {10, -20, 30, -40, 50, 127};
  const int wt = AddWeights(&m, "w", {2, 3}, INT8, {0.01f, 0.02f}, {0, 0}, {10, -20, 30, -40, 50, 127});
  const int bt = AddBias(&m, "b", {100, -50});
  const int yt = AddActivation(&m, "y", {2}, INT8, 0.1f, 5);
  AddOp(&m, "fc", {xt, wt, bt}, yt)->mutable_fully_connected();
  m.add_inputs(xt);
  m.add_outputs(yt);
  ASSERT_TRUE(ComputeRequantization(&m).ok());
  auto fq = CreateBackend("fake_quant");
  const absl::Status prepared = (*fq)->Prepare(m);
  ASSERT_TRUE(prepared.ok()) << prepared;
  const float x[3] = {0.31f, -0.77f, 1.26f};
  RunOutput out;
  ASSERT_TRUE((*fq)->Run(x, 1, &out).ok());
  float xd[3];
  for (int i = 0; i < 3; ++i) {
    const float q = std::min(127.0f, std::max(-128.0f, std::nearbyint(x[i] * (1.0f / 0.05f)) - 3.0f));
    xd[i] = 0.05f * (q + 3.0f);
  }
  for (int o = 0; o < 2; ++o) {
    const float s = o == 0 ? 0.01f : 0.02f;
    float acc = 0.0f;
    for (int i = 0; i < 3; ++i) acc += xd[i] * (s * static_cast<float>(w[o * 3 + i]));
    // Without float_bias, the int32 bias dequantized at s_in * s_w.
    acc += static_cast<float>(static_cast<double>(o == 0 ? 100 : -50) * 0.05f * s);
    const float q = std::nearbyint(acc * (1.0f / 0.1f)) + 5.0f;
    EXPECT_EQ(out.quantized[o], static_cast<int32_t>(std::min(127.0f, std::max(-128.0f, q)))) << o;
  }
}

}  // namespace
}  // namespace quant::backends
