// `reference`: registered, hand-computed arithmetic, close to the float model.
#include "quant/backends/reference_backend.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
#include "quant/core/registry.h"

namespace quant::backends {
namespace {

using ::testing::HasSubstr;

TEST(ReferenceBackendTest, IsRegistered) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("reference"));
  auto b = CreateBackend("reference");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name(), "reference");
}

// One FC layer small enough to compute by hand.
QuantizedModel TinyFc() {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.add_input_shape(3);
  m.mutable_input()->set_scale(0.5f);
  m.mutable_input()->set_zero_point(-10);
  m.mutable_input()->set_dtype(INT8);
  Layer* l = m.add_layers();
  l->set_name("fc");
  FullyConnected* fc = l->mutable_fully_connected();
  fc->set_input_channels(3);
  fc->set_output_channels(2);
  const int8_t w[6] = {1, 2, 3, -4, 5, -6};
  fc->set_weights(std::string(reinterpret_cast<const char*>(w), 6));
  fc->mutable_weight_quant()->set_dtype(INT8);
  fc->mutable_weight_quant()->set_bits(8);
  fc->mutable_weight_quant()->add_scale(0.25f);
  fc->mutable_weight_quant()->add_zero_point(0);
  fc->add_bias(8);    // 8 * 0.125 = 1.0
  fc->add_bias(-3);
  l->mutable_output()->set_scale(0.3f);
  l->mutable_output()->set_zero_point(5);
  l->mutable_output()->set_dtype(INT8);
  l->set_output_min(-128);
  l->set_output_max(20);
  EXPECT_TRUE(ComputeRequantization(&m).ok());
  return m;
}

TEST(ReferenceBackendTest, HandComputedFullyConnected) {
  ReferenceBackend::Profile();
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
  m.mutable_layers(0)->set_output_max(127);
  m.mutable_input()->set_zero_point(0);
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
    const float s_out = m->layers(m->layers_size() - 1).output().scale();
    EXPECT_LT(err, 6 * s_out) << (cnn ? "cnn" : "mlp") << " max |logit| " << mag;
  }
}

TEST(ReferenceBackendTest, RunChecksItsInputs) {
  auto b = CreateBackend("reference");
  RunOutput out;
  float x[3] = {0, 0, 0};
  EXPECT_EQ((*b)->Run(x, 1, &out).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE((*b)->Prepare(TinyFc()).ok());
  EXPECT_EQ((*b)->Run(x, 0, &out).code(), absl::StatusCode::kInvalidArgument);
  Tensor wrong({2, 4});
  EXPECT_THAT(std::string((*b)->Run(wrong, &out).message()), HasSubstr("is not a batch of [3]"));
  Tensor right({2, 3});
  EXPECT_TRUE((*b)->Run(right, &out).ok());
  EXPECT_EQ(out.shape, (Shape{2, 2}));
  QuantizedModel bad = TinyFc();
  bad.mutable_layers(0)->mutable_fully_connected()->add_bias(1);
  EXPECT_THAT(std::string((*b)->Prepare(bad).message()), HasSubstr("layer 0 'fc' (fully_connected): bias"));
}

}  // namespace
}  // namespace quant::backends
