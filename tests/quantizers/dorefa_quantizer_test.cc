// dorefa: the tanh-normalised weight grid and its gradient, the clipped
// activation grid and its STE, against hand-derived values.
#include <cmath>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/quantizers/dorefa_quantizer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

std::unique_ptr<Quantizer> Make(const std::string& yaml, TensorRole role) {
  auto q = BuildQuantizerFromYaml(yaml);
  EXPECT_TRUE(q.ok()) << q.status();
  EXPECT_TRUE(dynamic_cast<RoleAware&>(**q).SetRole(role).ok());
  return std::move(q).value();
}

TEST(DorefaQuantizerTest, IsRegistered) { EXPECT_TRUE(Registry<Quantizer>::Get().Contains("dorefa")); }

TEST(DorefaQuantizerTest, WeightsByHand) {
  auto q = Make("{quantizer: dorefa, bits: 2}", TensorRole::kWeights);  // 3 steps over [-1, 1]
  Tensor w({3}, {-1.0f, 0.1f, 0.5f}), y, gx;
  ASSERT_TRUE(q->Forward(w, &y).ok());
  const double m = std::tanh(1.0);
  for (int i = 0; i < 3; ++i) {
    const double t = std::tanh(w[i]);
    const double r = t / (2 * m) + 0.5;
    const double want = 2 * (std::nearbyint(r * 3) / 3) - 1;
    EXPECT_NEAR(y[i], want, 1e-6) << i;
  }
  // -1 -> r 0 -> -1; 0.1 -> r 0.5857 -> round(1.757)=2 -> 1/3; 0.5 -> r 0.8058 -> 2 -> 1/3.
  EXPECT_NEAR(y[0], -1.0, 1e-6);
  EXPECT_NEAR(y[1], 1.0 / 3, 1e-6);
  Tensor gy({3}, {1.0f, 1.0f, 2.0f});
  ASSERT_TRUE(q->Backward(gy, &gx).ok());
  for (int i = 0; i < 3; ++i) {
    const double t = std::tanh(w[i]);
    EXPECT_NEAR(gx[i], gy[i] * (1 - t * t) / m, 1e-6) << i;
  }
}

TEST(DorefaQuantizerTest, ActivationsByHand) {
  auto q = Make("{quantizer: dorefa, bits: 2, clip: 1.5}", TensorRole::kActivations);  // step 0.5
  Tensor x({5}, {-0.3f, 0.2f, 0.3f, 1.2f, 4.0f}), y, gx;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  const float want[] = {0.0f, 0.0f, 0.5f, 1.0f, 1.5f};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(y[i], want[i], 1e-6) << i;
  Tensor gy = Tensor::Filled({5}, 2.0f);
  ASSERT_TRUE(q->Backward(gy, &gx).ok());
  const float want_g[] = {0.0f, 2.0f, 2.0f, 2.0f, 0.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(gx[i], want_g[i]) << i;
  EXPECT_NEAR(q->qparams().scale[0], 0.5f, 1e-7);
}

}  // namespace
}  // namespace quant
