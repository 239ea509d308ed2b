// Optimizers and schedules against values computed by hand (PyTorch 1.13's
// update rules, written out in double precision; see the comments), and their
// registration and parameter checks.
#include <cmath>
#include <memory>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/adam.h"
#include "quant/nn/schedules.h"
#include "quant/nn/sgd.h"
#include "yaml-cpp/yaml.h"

namespace quant::nn {
namespace {

template <typename T>
absl::StatusOr<std::unique_ptr<T>> Make(const std::string& name, const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "test.yaml", "train.x");
  auto made = Registry<T>::Get().Create(name, p);
  if (!made.ok()) return made.status();
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return made;
}

// Runs `opt` on one scalar parameter starting at 1 with gradients 0.5 then -0.2
// and returns the two values after each step.
std::vector<float> TwoSteps(Optimizer& opt, double lr) {
  Parameter p{"w"};
  p.Allocate({1});
  p.value[0] = 1.0f;
  opt.Attach({&p});
  std::vector<float> out;
  for (float g : {0.5f, -0.2f}) {
    p.grad[0] = g;
    opt.Step(lr);
    out.push_back(p.value[0]);
  }
  return out;
}

TEST(SgdTest, MomentumAndWeightDecayByHand) {
  auto opt = Make<Optimizer>("sgd", "{lr: 0.1, momentum: 0.9, weight_decay: 0.01}");
  ASSERT_TRUE(opt.ok()) << opt.status();
  EXPECT_DOUBLE_EQ((*opt)->lr(), 0.1);
  std::vector<float> w = TwoSteps(**opt, 0.1);
  // d1 = 0.5 + 0.01 * 1 = 0.51; buf = 0.51; w = 1 - 0.051 = 0.949
  EXPECT_NEAR(w[0], 0.949, 1e-6);
  // d2 = -0.2 + 0.01 * 0.949 = -0.19051; buf = 0.9 * 0.51 - 0.19051 = 0.26849;
  // w = 0.949 - 0.026849 = 0.922151
  EXPECT_NEAR(w[1], 0.922151, 1e-6);
}

TEST(SgdTest, NesterovAndPlainByHand) {
  auto nesterov = Make<Optimizer>("sgd", "{lr: 0.1, momentum: 0.9, nesterov: true}");
  ASSERT_TRUE(nesterov.ok()) << nesterov.status();
  std::vector<float> w = TwoSteps(**nesterov, 0.1);
  // buf = 0.5, step = 0.5 + 0.9 * 0.5 = 0.95 -> 0.905; buf = 0.45 - 0.2 = 0.25,
  // step = -0.2 + 0.225 = 0.025 -> 0.9025
  EXPECT_NEAR(w[0], 0.905, 1e-6);
  EXPECT_NEAR(w[1], 0.9025, 1e-6);
  auto plain = Make<Optimizer>("sgd", "{lr: 0.1, weight_decay: 0.1}");
  ASSERT_TRUE(plain.ok());
  w = TwoSteps(**plain, 0.1);
  EXPECT_NEAR(w[0], 1 - 0.1 * 0.6, 1e-6);                 // 0.94
  EXPECT_NEAR(w[1], 0.94 - 0.1 * (-0.2 + 0.094), 1e-6);  // 0.9506
  // The lr passed to Step (the schedule's) is the one used.
  w = TwoSteps(**plain, 0.0);
  EXPECT_EQ(w[1], 1.0f);
}

TEST(SgdTest, BadSettingsAreErrorsNamingTheKey) {
  auto bad = Make<Optimizer>("sgd", "{lr: 0.1, nesterov: true}");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("nesterov"), std::string::npos) << bad.status();
  auto typo = Make<Optimizer>("sgd", "{lr: 0.1, momentun: 0.9}");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("momentum"), std::string::npos) << typo.status();
  EXPECT_FALSE(Make<Optimizer>("sgd", "{lr: -1}").ok());
}

TEST(AdamTest, AdamAdamWAndL2ByHand) {
  // Tolerance 3e-6: the update runs in float32 (as PyTorch's), the reference in double.
  // m = 0.9 m + 0.1 g, v = 0.999 v + 0.001 g^2,
  // w -= (lr / (1 - 0.9^t)) m / (sqrt(v) / sqrt(1 - 0.999^t) + 1e-8), in double:
  auto adam = Make<Optimizer>("adam", "{lr: 0.1}");
  ASSERT_TRUE(adam.ok()) << adam.status();
  std::vector<float> w = TwoSteps(**adam, 0.1);
  EXPECT_NEAR(w[0], 0.9000000020, 3e-6);
  EXPECT_NEAR(w[1], 0.8654394181, 3e-6);
  // AdamW first multiplies w by (1 - lr * wd) = 0.99.
  auto adamw = Make<Optimizer>("adamw", "{lr: 0.1, weight_decay: 0.1}");
  ASSERT_TRUE(adamw.ok());
  w = TwoSteps(**adamw, 0.1);
  EXPECT_NEAR(w[0], 0.8900000020, 3e-6);
  EXPECT_NEAR(w[1], 0.8465394181, 3e-6);
  // Adam's weight decay is added to the gradient instead.
  auto l2 = Make<Optimizer>("adam", "{lr: 0.1, weight_decay: 0.1, betas: [0.9, 0.999]}");
  ASSERT_TRUE(l2.ok());
  w = TwoSteps(**l2, 0.1);
  EXPECT_NEAR(w[0], 0.9000000017, 3e-6);
  EXPECT_NEAR(w[1], 0.8475190630, 3e-6);
  EXPECT_FALSE(Make<Optimizer>("adam", "{betas: [0.9]}").ok());
}

TEST(ScheduleTest, ClosedFormsByHand) {
  auto constant = Make<Schedule>("constant", "{}");
  ASSERT_TRUE(constant.ok());
  EXPECT_EQ((*constant)->LearningRate(0.05, 17, 100, 10), 0.05);

  auto cosine = Make<Schedule>("cosine", "{}");
  ASSERT_TRUE(cosine.ok());
  EXPECT_DOUBLE_EQ((*cosine)->LearningRate(0.05, 0, 100, 10), 0.05);
  EXPECT_NEAR((*cosine)->LearningRate(0.05, 25, 100, 10), 0.05 * (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR((*cosine)->LearningRate(0.05, 50, 100, 10), 0.025, 1e-15);
  EXPECT_NEAR((*cosine)->LearningRate(0.05, 100, 100, 10), 0.0, 1e-15);
  auto floor = Make<Schedule>("cosine", "{eta_min: 0.001}");
  ASSERT_TRUE(floor.ok());
  EXPECT_NEAR((*floor)->LearningRate(0.05, 50, 100, 10), 0.001 + 0.049 / 2, 1e-15);

  auto step = Make<Schedule>("step", "{step_size: 2, gamma: 0.5}");
  ASSERT_TRUE(step.ok());
  EXPECT_EQ((*step)->LearningRate(0.05, 19, 100, 10), 0.05);    // epoch 1
  EXPECT_EQ((*step)->LearningRate(0.05, 20, 100, 10), 0.025);   // epoch 2
  EXPECT_EQ((*step)->LearningRate(0.05, 45, 100, 10), 0.0125);  // epoch 4
  EXPECT_FALSE(Make<Schedule>("step", "{step_size: 0}").ok());
}

TEST(RegistrationTest, OptimizersAndSchedulesAreRegistered) {
  for (const char* name : {"sgd", "adam", "adamw"}) {
    EXPECT_TRUE(Registry<Optimizer>::Get().Contains(name)) << name;
  }
  for (const char* name : {"constant", "step", "cosine"}) {
    EXPECT_TRUE(Registry<Schedule>::Get().Contains(name)) << name;
  }
  // Describing (run --list) works without values.
  for (const PluginDescription& d : Registry<Optimizer>::Get().Describe()) {
    EXPECT_FALSE(d.params.empty()) << d.name;
  }
}

}  // namespace
}  // namespace quant::nn
