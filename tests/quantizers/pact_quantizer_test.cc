// pact: forward on the learned clip, the STE for x and the alpha gradient
// (with its L2 term) against hand-derived values; weights refused.
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/quantizers/pact_quantizer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

TEST(PactQuantizerTest, IsRegistered) { EXPECT_TRUE(Registry<Quantizer>::Get().Contains("pact")); }

TEST(PactQuantizerTest, ForwardAndGradientsByHand) {
  // 2 bits: 3 levels above 0, alpha 3 -> step 1.
  auto q = BuildQuantizerFromYaml("{quantizer: pact, bits: 2, alpha_init: 3.0, alpha_decay: 0.1}");
  ASSERT_TRUE(q.ok()) << q.status();
  Tensor x({6}, {-1.0f, 0.0f, 0.4f, 1.6f, 3.0f, 7.0f}), y, gx;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  const float want_y[] = {0.0f, 0.0f, 0.0f, 2.0f, 3.0f, 3.0f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want_y[i]) << i;
  EXPECT_FLOAT_EQ((*q)->qparams().scale[0], 1.0f);
  Tensor gy({6}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f});
  ASSERT_TRUE((*q)->Backward(gy, &gx).ok());
  const float want_gx[] = {0.0f, 2.0f, 3.0f, 4.0f, 0.0f, 0.0f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(gx[i], want_gx[i]) << i;
  // d/dalpha: the clipped elements (x >= alpha: 5 + 6) plus 0.1 * alpha.
  EXPECT_NEAR((*q)->parameters()[0]->grad[0], 11.0 + 0.3, 1e-6);
  // A new alpha (as the optimizer sets it) changes the grid.
  (*q)->parameters()[0]->value[0] = 1.5f;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_FLOAT_EQ(y[3], 1.5f);  // clipped
  EXPECT_FLOAT_EQ(y[2], 0.5f);  // 0.4 -> round(0.8) * 0.5
  std::vector<int32_t> codes;
  ASSERT_TRUE((*q)->QuantizeToInt(x, &codes).ok());
  EXPECT_EQ(codes, (std::vector<int32_t>{0, 0, 1, 3, 3, 3}));
}

TEST(PactQuantizerTest, RefusesWeights) {
  auto q = BuildQuantizerFromYaml("{quantizer: pact}");
  ASSERT_TRUE(q.ok());
  auto* aware = dynamic_cast<RoleAware*>(q->get());
  ASSERT_NE(aware, nullptr);
  absl::Status s = aware->SetRole(TensorRole::kWeights);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("activations"), std::string::npos);
  EXPECT_TRUE(aware->SetRole(TensorRole::kActivations).ok());
  EXPECT_FALSE(BuildQuantizerFromYaml("{quantizer: pact, alpha_init: 0}").ok());
}

}  // namespace
}  // namespace quant
