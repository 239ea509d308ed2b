// `binary`, `xnor`, `ternary`: forward values and STE gradients against
// values derived by hand (the derivations are in the comments).
#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/quantizers/binary_quantizer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Quantizer> Build(const std::string& yaml) {
  auto q = BuildQuantizerFromYaml(yaml);
  EXPECT_TRUE(q.ok()) << yaml << ": " << q.status();
  return q.ok() ? std::move(q).value() : nullptr;
}

void ExpectNear(const Tensor& t, const std::vector<float>& want, float tol = 1e-6f) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(t[i], want[i], tol) << "element " << i;
}

TEST(BinaryQuantizers, AreRegistered) {
  for (const char* n : {"binary", "xnor", "ternary"}) {
    EXPECT_TRUE(Registry<Quantizer>::Get().Contains(n)) << n;
  }
}

TEST(Binary, SignAndHardtanhSte) {
  auto q = Build("{quantizer: binary}");
  Tensor x({6}, {-2.0f, -0.5f, 0.0f, 0.3f, 1.0f, 1.5f}), y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  ExpectNear(y, {-1, -1, 1, 1, 1, 1});  // sign(0) = +1
  // grad passes where |x| <= 1 (x = 1.0 included), zero at -2 and 1.5.
  Tensor g({6}, {1, 2, 3, 4, 5, 6}), gx;
  ASSERT_TRUE(q->Backward(g, &gx).ok());
  ExpectNear(gx, {0, 2, 3, 4, 5, 0});
  std::vector<int32_t> codes;
  ASSERT_TRUE(q->QuantizeToInt(x, &codes).ok());
  EXPECT_EQ(codes, (std::vector<int32_t>{0, 0, 1, 1, 1, 1}));
  EXPECT_EQ(q->spec().bits, 1);
}

TEST(Binary, ClipSetsTheSteRange) {
  auto q = Build("{quantizer: binary, clip: 2}");
  Tensor x({3}, {-2.0f, 1.5f, 2.5f}), y, gx;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  ASSERT_TRUE(q->Backward(Tensor::Filled({3}, 1.0f), &gx).ok());
  ExpectNear(gx, {1, 1, 0});
  auto bad = BuildQuantizerFromYaml("{quantizer: binary, clip: 0}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("clip"));
}

TEST(Xnor, PerChannelScaleAndExactGradient) {
  auto q = Build("{quantizer: xnor}");
  // Row 0: alpha = (0.5 + 1.5 + 1.0) / 3 = 1; row 1: alpha = (0.2 + 0.4 + 0) / 3 = 0.2.
  Tensor x({2, 3}, {0.5f, -1.5f, 1.0f, -0.2f, 0.4f, 0.0f}), y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  ExpectNear(y, {1, -1, 1, -0.2f, 0.2f, 0.2f});
  EXPECT_NEAR(q->qparams().scale[0], 1.0f, 1e-7);
  EXPECT_NEAR(q->qparams().scale[1], 0.2f, 1e-7);
  // grad_j = g_j * alpha * 1{|x_j| <= 1} + sign(x_j)/n * sum_i g_i sign(x_i)
  // Row 0: g = (1, 2, 3), sum g*s = 1 - 2 + 3 = 2, shared 2/3:
  //   (1 + 2/3, 0 - 2/3, 3 + 2/3).
  // Row 1: g = (1, -1, 2), signs (-1, +1, +1): sum = -1 - 1 + 2 = 0:
  //   0.2 * g = (0.2, -0.2, 0.4).
  Tensor g({2, 3}, {1, 2, 3, 1, -1, 2}), gx;
  ASSERT_TRUE(q->Backward(g, &gx).ok());
  ExpectNear(gx, {5.0f / 3, -2.0f / 3, 11.0f / 3, 0.2f, -0.2f, 0.4f});
}

TEST(Xnor, AlphaPathMatchesFiniteDifferences) {
  // Away from sign changes y = alpha * sign(x) is smooth in x through alpha:
  // dL/dx_j (exact) = sign(x_j)/n * sum_i g_i sign(x_i). With clip tiny the
  // STE term vanishes, leaving exactly that, which finite differences check.
  auto q = Build("{quantizer: xnor, clip: 1e-6, granularity: per_tensor}");
  Tensor x({5}, {0.3f, -0.7f, 1.1f, -0.2f, 0.9f}), y;
  const std::vector<float> g = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f};
  ASSERT_TRUE(q->Forward(x, &y).ok());
  Tensor gx;
  ASSERT_TRUE(q->Backward(Tensor({5}, g), &gx).ok());
  for (int j = 0; j < 5; ++j) {
    const double h = 1e-3;
    auto loss = [&](double dx) {
      double sum = 0, alpha = 0;
      for (int i = 0; i < 5; ++i) alpha += std::fabs(x[i] + (i == j ? dx : 0.0));
      alpha /= 5;
      for (int i = 0; i < 5; ++i) sum += g[i] * alpha * (x[i] >= 0 ? 1 : -1);
      return sum;
    };
    EXPECT_NEAR(gx[j], (loss(h) - loss(-h)) / (2 * h), 1e-4) << j;
  }
}

TEST(Ternary, TwnThresholdAndScale) {
  auto q = Build("{quantizer: ternary}");
  // mean|x| = 2.75 / 6, delta = 0.7 * 2.75 / 6 = 0.3208; above it 0.9, 0.5, 1.2:
  // alpha = 2.6 / 3.
  Tensor x({6}, {0.1f, -0.9f, 0.5f, -0.05f, 1.2f, 0.0f}), y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  const float a = 2.6f / 3;
  ExpectNear(y, {0, -a, a, 0, a, 0});
  auto* t = dynamic_cast<TernaryQuantizer*>(q.get());
  ASSERT_NE(t, nullptr);
  EXPECT_NEAR(t->deltas()[0], 0.7 * 2.75 / 6, 1e-6);
  std::vector<int32_t> codes;
  ASSERT_TRUE(q->QuantizeToInt(x, &codes).ok());
  EXPECT_EQ(codes, (std::vector<int32_t>{0, -1, 1, 0, 1, 0}));
  // The plain STE: the gradient of the ternary weights, unchanged.
  Tensor g({6}, {1, -2, 3, -4, 5, -6}), gx;
  ASSERT_TRUE(q->Backward(g, &gx).ok());
  ExpectNear(gx, {1, -2, 3, -4, 5, -6});
}

TEST(Ternary, PerChannelAndThresholdKey) {
  auto q = Build("{quantizer: ternary, granularity: per_channel, threshold: 0.5}");
  // Row 0: mean 1, delta 0.5: keeps 2 (alpha 2). Row 1: mean 0.1, delta 0.05: keeps 0.2, -0.1 -> 0.15.
  Tensor x({2, 3}, {2.0f, 0.5f, 0.5f, 0.2f, -0.1f, 0.0f}), y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  ExpectNear(y, {2, 0, 0, 0.15f, -0.15f, 0});
  auto bad = BuildQuantizerFromYaml("{quantizer: ternary, granularity: per_row}");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("granularity"));
}

TEST(BinaryQuantizers, DisabledFakeQuantPassesThrough) {
  auto q = Build("{quantizer: xnor}");
  q->set_fake_quant_enabled(false);
  Tensor x({2}, {0.3f, -3.0f}), y, gx;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  ExpectNear(y, {0.3f, -3.0f});
  ASSERT_TRUE(q->Backward(Tensor({2}, {1, 1}), &gx).ok());
  ExpectNear(gx, {1, 1});
}

TEST(BinaryQuantizers, BackwardShapeMismatchIsAnError) {
  auto q = Build("{quantizer: binary}");
  Tensor x({3}), y, gx;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  EXPECT_EQ(q->Backward(Tensor({4}), &gx).code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace quant
