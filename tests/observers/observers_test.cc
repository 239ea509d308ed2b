// Observer behaviour beyond the golden vectors: registration, refusals,
// grouping, the Distiller batch average, fixed qparams, histogram growth.
#include <cmath>
#include <limits>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/observers/batch_average_minmax_observer.h"
#include "quant/observers/histogram_observer.h"
#include "quant/observers/observer.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Observer> Make(const std::string& yaml, const QuantSpec& spec,
                               absl::Status* bind = nullptr) {
  YAML::Node n = YAML::Load(yaml);
  ParamReader p(n, "o.yaml", "obs");
  auto obs = Registry<Observer>::Get().CreateFrom(p, "observer", "", "observer");
  EXPECT_TRUE(obs.ok()) << obs.status();
  EXPECT_TRUE(p.Finish().ok()) << p.Finish();
  if (!obs.ok()) return nullptr;
  absl::Status s = (*obs)->Bind(spec);
  if (bind != nullptr) {
    *bind = s;
  } else {
    EXPECT_TRUE(s.ok()) << s;
  }
  return std::move(*obs);
}

QuantSpec Spec(Granularity g = Granularity::kPerTensor, int axis = 0, int64_t block = 0) {
  QuantSpec s;
  s.granularity = g;
  s.axis = axis;
  s.block_size = block;
  return s;
}

TEST(Observers, AllRegistered) {
  for (const char* name : {"minmax", "moving_average_minmax", "per_channel_minmax",
                           "moving_average_per_channel_minmax", "histogram", "fixed",
                           "batch_average_minmax", "fused_moving_average_minmax"}) {
    EXPECT_TRUE(Registry<Observer>::Get().Contains(name)) << name;
  }
}

TEST(Observers, RefuseNonFiniteInput) {
  for (const char* name : {"minmax", "moving_average_minmax", "histogram", "batch_average_minmax",
                           "fused_moving_average_minmax"}) {
    auto obs = Make(std::string("{observer: ") + name + "}", Spec());
    for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
      Tensor x({3}, {1.0f, bad, 2.0f});
      absl::Status s = obs->Observe(x);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
      EXPECT_THAT(std::string(s.message()), HasSubstr("contains inf or NaN")) << name;
    }
    EXPECT_FALSE(obs->has_data()) << name;
    EXPECT_EQ(obs->ComputeQParams().status().code(), absl::StatusCode::kFailedPrecondition) << name;
  }
}

TEST(Observers, GranularityRequirements) {
  absl::Status s;
  Make("{observer: per_channel_minmax}", Spec(), &s);
  EXPECT_THAT(std::string(s.message()), HasSubstr("needs granularity: per_channel"));
  Make("{observer: histogram}", Spec(Granularity::kPerChannel), &s);
  EXPECT_THAT(std::string(s.message()), HasSubstr("per_tensor only"));
  Make("{observer: fused_moving_average_minmax}", Spec(Granularity::kPerBlock, 0, 2), &s);
  EXPECT_FALSE(s.ok());
}

TEST(Observers, MinMaxPerBlockGroups) {
  auto obs = Make("{observer: minmax}", Spec(Granularity::kPerBlock, 1, 2));
  Tensor x({2, 4}, {1, -2, 3, 4, -5, 6, 7, -8});
  ASSERT_TRUE(obs->Observe(x).ok());
  auto r = obs->Ranges();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 4u);
  EXPECT_EQ((*r)[0].lo, -2);
  EXPECT_EQ((*r)[0].hi, 1);
  EXPECT_EQ((*r)[3].lo, -8);
  EXPECT_EQ((*r)[3].hi, 7);
  // A tensor with another grouping is refused.
  EXPECT_FALSE(obs->Observe(Tensor({2, 6})).ok());
}

TEST(Observers, BatchAverageIgnoresASingleOutlierSample) {
  auto obs = Make("{observer: batch_average_minmax}", Spec());
  Tensor x({4, 2}, {0, 1, 0, 1, 0, 1, -100, 100});
  ASSERT_TRUE(obs->Observe(x).ok());
  auto r = obs->Ranges();
  EXPECT_FLOAT_EQ((*r)[0].lo, -25.0f);
  EXPECT_FLOAT_EQ((*r)[0].hi, 25.75f);
  // A second batch: the mean is over all 8 samples.
  ASSERT_TRUE(obs->Observe(Tensor({4, 2}, {0, 1, 0, 1, 0, 1, 0, 1})).ok());
  r = obs->Ranges();
  EXPECT_FLOAT_EQ((*r)[0].lo, -12.5f);
  EXPECT_FLOAT_EQ((*r)[0].hi, 13.375f);
}

TEST(Observers, FixedQParamsAndTheirChecks) {
  QuantSpec s = Spec();
  auto obs = Make("{observer: fixed, scale: 0.0078125, zero_point: 128}", s);
  auto qp = obs->ComputeQParams();
  ASSERT_TRUE(qp.ok());
  EXPECT_EQ(qp->scale[0], 0.0078125f);
  EXPECT_EQ(qp->zero_point[0], 128);
  absl::Status b;
  Make("{observer: fixed, scale: 1, zero_point: 300}", s, &b);
  EXPECT_THAT(std::string(b.message()), HasSubstr("obs.zero_point: zero_point 300 is outside [0, 255]"));
  YAML::Node n = YAML::Load("{observer: fixed, scale: -1}");
  ParamReader p(n, "o.yaml", "obs");
  auto bad = Registry<Observer>::Get().CreateFrom(p, "observer", "", "observer");
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("obs.scale: scale must be a positive"));
}

TEST(Observers, HistogramGrowsAndKeepsMass) {
  auto obs = Make("{observer: histogram}", Spec());
  Tensor a({4}, {0.0f, 0.25f, 0.5f, 1.0f});
  Tensor b({4}, {-3.0f, 2.0f, 0.1f, 0.2f});
  ASSERT_TRUE(obs->Observe(a).ok());
  ASSERT_TRUE(obs->Observe(b).ok());
  const HistogramStats* h = obs->histogram();
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->min_val, -3.0f);
  EXPECT_GE(h->max_val, 2.0f);
  EXPECT_NEAR(h->total(), 8.0, 1e-3);  // interpolation keeps the old mass
  EXPECT_EQ(h->n, 8);
  auto qp = obs->ComputeQParams();
  ASSERT_TRUE(qp.ok());
}

TEST(Observers, TorchSumIsTheCascadeOrder) {
  // Values whose float sum depends on the order: sequential summation of
  // 1 followed by many 2^-24 loses them all; ATen's cascade keeps them.
  std::vector<float> v(4096, 1.0f / (1 << 24));
  v[0] = 1.0f;
  float seq = 0;
  for (float f : v) seq += f;
  EXPECT_EQ(seq, 1.0f);
  EXPECT_GT(TorchSum(v.data(), v.size()), 1.0f);
  EXPECT_EQ(TorchSum(v.data(), 3), 1.0f);
}

// The min/max reduction runs 8 lanes at a time; it must equal the sequential std::min /
// std::max loop bit for bit, including which zero (+0 or -0) it keeps when the minimum or
// maximum is zero (the sequential loop keeps the first one; the lanes may meet another
// first). Per tensor and per channel, on lengths with and without a tail, and on a NaN or
// an inf, which the observer refuses before reducing anything.
TEST(Observers, MinMaxEqualsTheSequentialLoopIncludingSignedZeros) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  int zero_cases = 0;
  for (int64_t inner : {5, 8, 17, 64, 301}) {
    for (int pattern = 0; pattern < 6; ++pattern) {
      const int64_t channels = 3;
      Tensor x({channels, inner});
      for (int64_t i = 0; i < x.numel(); ++i) {
        float v = u(rng);
        if (pattern == 1) v = std::fabs(v);   // min 0 once zeros appear
        if (pattern == 2) v = -std::fabs(v);  // max 0
        if (pattern >= 1 && (i * 7 + pattern) % 5 == 0) v = ((i / 5 + pattern) % 2 == 0) ? 0.0f : -0.0f;
        if (pattern == 3) v = (i % 3 == 0) ? -0.0f : 0.0f;  // only zeros
        if (pattern == 4) v = (i % 2 == 0) ? 0.0f : -0.0f;
        if (pattern == 5) v = (i % 4 == 1) ? -0.0f : std::fabs(v) + 1.0f;  // min -0 late
        x.data()[i] = v;
      }
      for (bool per_channel : {false, true}) {
        auto obs = Make(per_channel ? "{observer: per_channel_minmax}" : "{observer: minmax}",
                        Spec(per_channel ? Granularity::kPerChannel : Granularity::kPerTensor));
        ASSERT_TRUE(obs->Observe(x).ok());
        auto ranges = obs->Ranges();
        ASSERT_TRUE(ranges.ok()) << ranges.status();
        const int64_t groups = per_channel ? channels : 1, per = x.numel() / groups;
        ASSERT_EQ(static_cast<int64_t>(ranges->size()), groups);
        for (int64_t g = 0; g < groups; ++g) {
          float mn = std::numeric_limits<float>::infinity(), mx = -mn;
          for (int64_t i = g * per; i < (g + 1) * per; ++i) {
            mn = std::min(mn, x.data()[i]);
            mx = std::max(mx, x.data()[i]);
          }
          const float want_lo = mn, want_hi = mx;
          const Range& r = (*ranges)[g];
          EXPECT_EQ(r.lo, want_lo) << inner << " " << pattern << " " << g;
          EXPECT_EQ(r.hi, want_hi) << inner << " " << pattern << " " << g;
          EXPECT_EQ(std::signbit(r.lo), std::signbit(want_lo)) << inner << " " << pattern << " " << g;
          EXPECT_EQ(std::signbit(r.hi), std::signbit(want_hi)) << inner << " " << pattern << " " << g;
          zero_cases += mn == 0.0f || mx == 0.0f;
        }
      }
    }
  }
  EXPECT_GT(zero_cases, 20);
  // A bad value in the 8-lane part, in the tail, or first: the error, and the
  // range of an earlier good tensor kept unchanged.
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {std::nanf(""), inf, -inf}) {
    for (auto [n, at] : {std::pair<int64_t, int64_t>{40, 33}, {43, 42}, {20, 0}, {5, 4}}) {
      for (const char* name : {"minmax", "moving_average_minmax"}) {
        auto obs = Make(std::string("{observer: ") + name + "}", Spec());
        Tensor good({n});
        for (int64_t i = 0; i < n; ++i) good.data()[i] = 0.5f - 0.01f * i;
        ASSERT_TRUE(obs->Observe(good).ok());
        const Range before = (*obs->Ranges())[0];
        Tensor x = good;
        x.data()[at] = bad;
        const absl::Status s = obs->Observe(x);
        EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name << " n=" << n << " at " << at;
        EXPECT_THAT(std::string(s.message()), HasSubstr("contains inf or NaN")) << name;
        const Range after = (*obs->Ranges())[0];
        EXPECT_EQ(after.lo, before.lo) << name;
        EXPECT_EQ(after.hi, before.hi) << name;
      }
    }
  }
}

}  // namespace
}  // namespace quant
