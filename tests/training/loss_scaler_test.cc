// The loss-scale state machine (GradScaler semantics) on synthetic overflow
// sequences, the divergence stop, and the YAML keys.
#include "quant/training/loss_scaler.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

LossScaler::Options Opts(double init, int64_t interval) {
  LossScaler::Options o;
  o.init_scale = init;
  o.growth_interval = interval;
  return o;
}

TEST(LossScaler, DynamicStateMachineOnAnOverflowSequence) {
  LossScaler s(Opts(8, 3));
  // Hand trace (growth x2 after 3 clean steps, backoff x0.5 on overflow, the
  // tracker restarting on both):
  const bool inf[] = {false, false, false, true, false, true, true, false, false, false, false};
  const bool apply[] = {true, true, true, false, true, false, false, true, true, true, true};
  const float scale[] = {8, 8, 16, 8, 8, 4, 2, 2, 2, 4, 4};
  const int64_t tracker[] = {1, 2, 0, 0, 1, 0, 0, 1, 2, 0, 1};
  EXPECT_EQ(s.scale(), 8.0f);
  for (int step = 0; step < 11; ++step) {
    auto a = s.Update(step, inf[step]);
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ(*a, apply[step]) << step;
    EXPECT_EQ(s.scale(), scale[step]) << step;
    EXPECT_EQ(s.growth_tracker(), tracker[step]) << step;
  }
  EXPECT_EQ(s.skipped_steps(), 3);
  EXPECT_EQ(s.min_seen(), 2.0);
  EXPECT_EQ(s.max_seen(), 16.0);
  EXPECT_EQ(s.inv_scale(), 0.25f);
  EXPECT_EQ(s.History(),
            "step 0: 8 (start); step 2: 16 (grown); step 3: 8 (overflow: step skipped); "
            "step 5: 4 (overflow: step skipped); step 6: 2 (overflow: step skipped); step 9: 4 (grown)");
}

TEST(LossScaler, GrowthStopsWhereFloat32Overflows) {
  LossScaler s(Opts(0x1p126, 1));
  ASSERT_TRUE(s.Update(0, false).ok());
  EXPECT_EQ(s.scale(), 0x1p127f);
  ASSERT_TRUE(s.Update(1, false).ok());
  EXPECT_EQ(s.scale(), 0x1p127f);  // 2^128 is inf in float32: kept
}

TEST(LossScaler, StaticAndNone) {
  LossScaler::Options o = Opts(1024, 1);
  o.mode = LossScaler::Mode::kStatic;
  LossScaler st(o);
  EXPECT_FALSE(*st.Update(0, true));
  EXPECT_TRUE(*st.Update(1, false));
  EXPECT_EQ(st.scale(), 1024.0f);
  o.mode = LossScaler::Mode::kNone;
  LossScaler none(o);
  EXPECT_EQ(none.scale(), 1.0f);
  EXPECT_TRUE(*none.Update(0, true));
  EXPECT_EQ(none.skipped_steps(), 0);
}

TEST(LossScaler, TooManyConsecutiveOverflowsStopWithTheHistory) {
  LossScaler::Options o = Opts(65536, 2000);
  o.max_consecutive_skips = 2;
  LossScaler s(o);
  EXPECT_FALSE(*s.Update(0, true));
  EXPECT_TRUE(*s.Update(1, false));  // a clean step resets the run of overflows
  EXPECT_FALSE(*s.Update(2, true));
  EXPECT_FALSE(*s.Update(3, true));
  auto r = s.Update(4, true);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("training diverged: 3 consecutive steps had inf/NaN"));
  EXPECT_THAT(r.status().message(), HasSubstr("at step 4 (loss scale now 4096"));
  EXPECT_THAT(r.status().message(),
              HasSubstr("loss-scale history: step 0: 65536 (start); step 0: 32768 (overflow: step "
                        "skipped); step 2: 16384"));
}

TEST(LossScaler, ScaleBelowMinimumStops) {
  LossScaler::Options o = Opts(1, 2000);
  o.min_scale = 0.3;
  LossScaler s(o);
  EXPECT_FALSE(*s.Update(0, true));
  auto r = s.Update(1, true);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("fell below min_scale 0.3"));
}

TEST(LossScaler, LongHistoryIsShortened) {
  LossScaler s(Opts(1e6, 1));
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(s.Update(i, i % 2 == 0).ok());
  const std::string h = s.History(10);
  EXPECT_THAT(h, HasSubstr("step 0: 1e+06 (start)"));
  EXPECT_THAT(h, HasSubstr("... 91 more ..."));
  EXPECT_THAT(h, HasSubstr("step 99:"));
}

TEST(LossScaler, ReadsItsKeys) {
  ParamReader p(YAML::Load("{mode: static, init_scale: 128, growth_interval: 5}"), "t.yaml", "loss_scale");
  LossScaler::Options o = LossScaler::Read(p, LossScaler::Mode::kDynamic);
  ASSERT_TRUE(p.Finish().ok());
  EXPECT_EQ(o.mode, LossScaler::Mode::kStatic);
  EXPECT_EQ(o.init_scale, 128);
  EXPECT_EQ(o.growth_interval, 5);
  ParamReader bad(YAML::Load("{mode: dynamc, backoff_factor: 2}"), "t.yaml", "train.loss_scale");
  LossScaler::Read(bad, LossScaler::Mode::kDynamic);
  ASSERT_FALSE(bad.Finish().ok());
  EXPECT_THAT(bad.Finish().message(), HasSubstr("train.loss_scale.mode"));
  ParamReader bad2(YAML::Load("{backoff_factor: 2}"), "t.yaml", "train.loss_scale");
  LossScaler::Read(bad2, LossScaler::Mode::kDynamic);
  EXPECT_THAT(bad2.Finish().message(), HasSubstr("train.loss_scale.backoff_factor"));
}

}  // namespace
}  // namespace quant
