// lsq: forward values, STE mask and the step-size gradient (with its scale)
// against values derived by hand from Esser et al.'s equations; the init; the
// signed/unsigned choice; per-channel step sizes; parameter errors.
#include "quant/quantizers/lsq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

std::unique_ptr<Quantizer> Make(const std::string& yaml) {
  auto q = BuildQuantizerFromYaml(yaml);
  EXPECT_TRUE(q.ok()) << q.status();
  return std::move(q).value();
}

LsqQuantizer& Lsq(Quantizer& q) { return dynamic_cast<LsqQuantizer&>(q); }

TEST(LsqQuantizerTest, IsRegistered) {
  EXPECT_TRUE(Registry<Quantizer>::Get().Contains("lsq"));
}

TEST(LsqQuantizerTest, ForwardAndGradientsByHand) {
  // 3-bit signed: Qn = 4, Qp = 3. Step 0.5 set explicitly.
  auto q = Make("{quantizer: lsq, bits: 3, signed: true}");
  q->parameters()[0]->value[0] = 0.5f;
  Tensor x({5}, {-3.0f, -1.0f, 0.3f, 0.9f, 5.0f});
  Tensor y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  // v = x/s = -6 (clip -4), -2, 0.6 -> 1, 1.8 -> 2, 10 (clip 3).
  const float want_y[] = {-2.0f, -1.0f, 0.5f, 1.0f, 1.5f};
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(y[i], want_y[i]) << i;
  Tensor gy({5}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f}), gx;
  ASSERT_TRUE(q->Backward(gy, &gx).ok());
  const float want_gx[] = {0.0f, 2.0f, 3.0f, 4.0f, 0.0f};
  for (int i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(gx[i], want_gx[i]) << i;
  // dy/ds: -Qn, round(v)-v = 0, 1-0.6 = 0.4, 2-1.8 = 0.2, Qp.
  // sum gy*dy/ds = -4 + 0 + 1.2 + 0.8 + 15 = 13; g = 1/sqrt(N*Qp) = 1/sqrt(5*3).
  EXPECT_NEAR(q->parameters()[0]->grad[0], 13.0 / std::sqrt(15.0), 1e-5);
  EXPECT_NEAR(Lsq(*q).grad_scale(), 1.0 / std::sqrt(15.0), 1e-12);
  // Backward accumulates (the interface's contract).
  ASSERT_TRUE(q->Backward(gy, &gx).ok());
  EXPECT_NEAR(q->parameters()[0]->grad[0], 26.0 / std::sqrt(15.0), 1e-5);
  // Exactly at Qp * s the value is clipped (the paper's open interval).
  Tensor edge({1}, {1.5f});
  ASSERT_TRUE(q->Forward(edge, &y).ok());
  Tensor g1({1}, {1.0f});
  q->parameters()[0]->grad.Fill(0.0f);
  ASSERT_TRUE(q->Backward(g1, &gx).ok());
  EXPECT_EQ(gx[0], 0.0f);
  EXPECT_NEAR(q->parameters()[0]->grad[0], 3.0 / std::sqrt(3.0), 1e-6);
}

TEST(LsqQuantizerTest, ActivationGradScaleCountsFeaturesOfOneSample) {
  auto q = Make("{quantizer: lsq, bits: 2, signed: false}");  // Qn = 0, Qp = 3
  ASSERT_TRUE(Lsq(*q).SetRole(TensorRole::kActivations).ok());
  q->parameters()[0]->value[0] = 1.0f;
  Tensor x({2, 3}, {0.2f, 0.7f, 1.2f, 2.6f, 4.0f, -1.0f}), y;
  ASSERT_TRUE(q->Forward(x, &y).ok());
  const float want_y[] = {0.0f, 1.0f, 1.0f, 3.0f, 3.0f, 0.0f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(y[i], want_y[i]) << i;
  Tensor gy = Tensor::Filled({2, 3}, 1.0f), gx;
  ASSERT_TRUE(q->Backward(gy, &gx).ok());
  // dy/ds: -0.2, 0.3, -0.2, 0.4, 3 (clipped), 0 (-Qn = 0); sum 3.3; N = 3 features.
  EXPECT_NEAR(q->parameters()[0]->grad[0], 3.3 / std::sqrt(3.0 * 3.0), 1e-5);
  const float want_gx[] = {1, 1, 1, 1, 0, 0};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(gx[i], want_gx[i]) << i;
}

TEST(LsqQuantizerTest, PaperInitAndAutoSign) {
  auto w = Make("{quantizer: lsq, bits: 4}");
  Tensor x({4}, {1.0f, -2.0f, 3.0f, -4.0f}), y;
  ASSERT_FALSE(w->calibrated());
  ASSERT_TRUE(w->Forward(x, &y).ok());
  EXPECT_TRUE(w->spec().is_signed);
  EXPECT_EQ(Lsq(*w).qn(), 8);
  EXPECT_EQ(Lsq(*w).qp(), 7);
  EXPECT_NEAR(w->parameters()[0]->value[0], 2.0 * 2.5 / std::sqrt(7.0), 1e-6);
  EXPECT_NEAR(w->qparams().scale[0], 2.0 * 2.5 / std::sqrt(7.0), 1e-6);
  // A later tensor does not re-initialise.
  Tensor big({4}, {100.0f, -100.0f, 1.0f, 1.0f});
  ASSERT_TRUE(w->Forward(big, &y).ok());
  EXPECT_NEAR(w->parameters()[0]->value[0], 2.0 * 2.5 / std::sqrt(7.0), 1e-6);

  auto a = Make("{quantizer: lsq, bits: 4}");
  Tensor relu({3}, {0.0f, 1.0f, 2.0f});
  ASSERT_TRUE(a->Forward(relu, &y).ok());
  EXPECT_FALSE(a->spec().is_signed);
  EXPECT_EQ(Lsq(*a).qp(), 15);
  EXPECT_NEAR(a->parameters()[0]->value[0], 2.0 * 1.0 / std::sqrt(15.0), 1e-6);
}

TEST(LsqQuantizerTest, PerChannelStepSizes) {
  auto q = Make("{quantizer: lsq, bits: 3, signed: true, granularity: per_channel}");
  Tensor w({2, 2}, {1.0f, -1.0f, 4.0f, 0.0f}), y;
  ASSERT_TRUE(q->Forward(w, &y).ok());
  ASSERT_EQ(q->parameters()[0]->value.numel(), 2);
  EXPECT_NEAR(q->parameters()[0]->value[0], 2.0 * 1.0 / std::sqrt(3.0), 1e-6);
  EXPECT_NEAR(q->parameters()[0]->value[1], 2.0 * 2.0 / std::sqrt(3.0), 1e-6);
  std::vector<int32_t> codes;
  ASSERT_TRUE(q->QuantizeToInt(w, &codes).ok());
  EXPECT_EQ(codes, (std::vector<int32_t>{1, -1, 2, 0}));
  EXPECT_FALSE(Lsq(*q).SetRole(TensorRole::kActivations).ok());
}

// The step-size gradient is defined as the sum of gy * dy/ds over the
// tensor, each product added in element order in double (then scaled and
// rounded to float). Backward skips zero products and forms the products in
// lanes; this checks it still gives exactly those bits, on tensors shaped like
// the ones it sees: ReLU outputs (many zeros, unsigned grid) whose gradient
// comes from a max pool (three of four zero), signed zeros, values on the
// clip edges, a ragged tail, per-channel groups, lsq_plus's clipped sum, and
// the STE in place (gx aliasing gy).
TEST(LsqQuantizerTest, GradientsEqualTheSequentialDoubleSumBitForBit) {
  struct Case {
    const char* yaml;
    int64_t rows, cols;
    bool relu_like;
  };
  const Case cases[] = {
      {"{quantizer: lsq, bits: 4, signed: false}", 4, 1003, true},
      {"{quantizer: lsq, bits: 4, signed: true}", 3, 517, false},
      {"{quantizer: lsq, bits: 3, signed: true, granularity: per_channel}", 5, 77, false},
      {"{quantizer: lsq_plus, bits: 4}", 2, 333, true},
  };
  uint32_t state = 12345;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return static_cast<float>(state >> 8) / 16777216.0f;  // [0, 1)
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    auto q = Make(c.yaml);
    Tensor x({c.rows, c.cols}), gy({c.rows, c.cols});
    for (int64_t i = 0; i < x.numel(); ++i) {
      const float v = 4.0f * next() - 2.0f;
      x[i] = c.relu_like ? std::max(v, 0.0f) : v;
      if (i % 29 == 0) x[i] = -0.0f;
      const bool pooled_away = c.relu_like && (i % 4 != 0);
      gy[i] = pooled_away ? 0.0f : next() - 0.5f;
      if (i % 31 == 0) gy[i] = -0.0f;
    }
    Tensor y;
    ASSERT_TRUE(q->Forward(x, &y).ok());
    std::vector<LearnedParameter*> params = q->parameters();
    Tensor& step = params[0]->value;
    const int64_t groups = step.numel(), n = x.numel() / groups;
    const bool plus = params.size() == 2;
    // Put a few values exactly on the clip edges of the grid.
    auto& lsq = Lsq(*q);
    const float qn = static_cast<float>(-lsq.qparams().quant_min), qp = static_cast<float>(lsq.qparams().quant_max);
    // And pairs of huge opposite products (clipped values, d = Qp) with small ones
    // between them: in double the small ones are absorbed or not depending on the
    // order of the adds, so any other order gives other bits even after rounding to float.
    for (int64_t g = 0; g < groups; ++g) {
      x[g * n + 3] = qp * step[g];
      x[g * n + 5] = -qn * step[g];
      for (int64_t i = g * n + 10; i + 40 < (g + 1) * n; i += 64) {
        x[i] = x[i + 40] = 100.0f * qp * step[g] + (plus ? params[1]->value[g] : 0.0f);
        gy[i] = 1e20f;
        gy[i + 40] = -1e20f;
      }
    }
    ASSERT_TRUE(q->Forward(x, &y).ok());
    std::vector<float> want_gx(x.numel());
    std::vector<double> acc(groups, 0.0), clipped(groups, 0.0);
    std::vector<float> grad0(groups), offset_grad0(groups);
    for (int64_t g = 0; g < groups; ++g) {
      const float s = step[g];
      const float beta = plus ? params[1]->value[g] : 0.0f;
      grad0[g] = params[0]->grad[g];
      if (plus) offset_grad0[g] = params[1]->grad[g];
      for (int64_t i = g * n; i < (g + 1) * n; ++i) {
        const float v = (x[i] - beta) / s;
        float d;
        bool pass = false;
        if (v <= -qn) {
          d = -qn;
        } else if (v >= qp) {
          d = qp;
        } else {
          d = std::nearbyint(v) - v, pass = true;
        }
        acc[g] += static_cast<double>(gy[i]) * d;
        want_gx[i] = pass ? gy[i] : 0.0f;
        if (!pass) clipped[g] += gy[i];
      }
    }
    Tensor in_place = gy;
    ASSERT_TRUE(q->Backward(in_place, &in_place).ok());
    for (int64_t i = 0; i < x.numel(); ++i) {
      ASSERT_EQ(std::signbit(in_place[i]), std::signbit(want_gx[i])) << i;
      ASSERT_EQ(in_place[i], want_gx[i]) << i;
    }
    // The scale 1/sqrt(N * Qp) is checked by the tests above.
    const double scale = lsq.grad_scale();
    for (int64_t g = 0; g < groups; ++g) {
      EXPECT_EQ(params[0]->grad[g], grad0[g] + static_cast<float>(scale * acc[g])) << "group " << g;
      if (plus) {
        EXPECT_EQ(params[1]->grad[g], offset_grad0[g] + static_cast<float>(scale * clipped[g])) << "group " << g;
      }
    }
  }
}

TEST(LsqQuantizerTest, BadParameters) {
  EXPECT_FALSE(BuildQuantizerFromYaml("{quantizer: lsq, bits: 1}").ok());
  auto s = BuildQuantizerFromYaml("{quantizer: lsq, signed: maybe}");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("signed"), std::string::npos) << s.status();
  EXPECT_FALSE(BuildQuantizerFromYaml("{quantizer: lsq, observer: minmax}").ok());
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

TEST(LsqPlusQuantizerTest, OffsetForwardGradientAndInit) {
  EXPECT_TRUE(Registry<Quantizer>::Get().Contains("lsq_plus"));
  // 2-bit unsigned (default for lsq_plus): Qn = 0, Qp = 3.
  auto q = BuildQuantizerFromYaml("{quantizer: lsq_plus, bits: 2}");
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ((*q)->parameters().size(), 2u);
  // Init from the range [-1, 2]: s = 3 / 3 = 1, beta = -1.
  Tensor x({4}, {-1.0f, 0.2f, 1.0f, 2.0f}), y, gx;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  EXPECT_FLOAT_EQ((*q)->parameters()[0]->value[0], 1.0f);
  EXPECT_FLOAT_EQ((*q)->parameters()[1]->value[0], -1.0f);
  // Now s = 0.5, beta = -0.25: v = (x + 0.25) / 0.5 = -1.5 (clip 0), 0.9, 2.5, 4.5 (clip 3).
  (*q)->parameters()[0]->value[0] = 0.5f;
  (*q)->parameters()[1]->value[0] = -0.25f;
  ASSERT_TRUE((*q)->Forward(x, &y).ok());
  const float want_y[] = {-0.25f, 0.25f, 0.75f, 1.25f};  // r = 0, 1, 2 (2.5 to even), 3
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[i], want_y[i]) << i;
  Tensor gy({4}, {1.0f, 2.0f, 3.0f, 4.0f});
  (*q)->parameters()[0]->grad.Fill(0.0f);
  (*q)->parameters()[1]->grad.Fill(0.0f);
  ASSERT_TRUE((*q)->Backward(gy, &gx).ok());
  const float want_gx[] = {0.0f, 2.0f, 3.0f, 0.0f};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(gx[i], want_gx[i]) << i;
  // ds: -Qn = 0, 1 - 0.9 = 0.1, 2 - 2.5 = -0.5, Qp = 3 -> 0 + 0.2 - 1.5 + 12 = 10.7; g = 1/sqrt(4*3).
  EXPECT_NEAR((*q)->parameters()[0]->grad[0], 10.7 / std::sqrt(12.0), 1e-5);
  // dbeta: the clipped elements: 1 + 4 = 5, times g.
  EXPECT_NEAR((*q)->parameters()[1]->grad[0], 5.0 / std::sqrt(12.0), 1e-6);
}

TEST(LsqPlusQuantizerTest, IntegerOffsetMakesTheGridDeployable) {
  Tensor x({4}, {-1.0f, 0.2f, 1.0f, 2.0f}), y;
  // A learned offset of -0.3 at step 0.5 is -0.6 steps: no integer zero point.
  auto plain = Make("{quantizer: lsq_plus, bits: 2}");
  ASSERT_TRUE(plain->Forward(x, &y).ok());
  plain->parameters()[0]->value[0] = 0.5f;
  plain->parameters()[1]->value[0] = -0.3f;
  ASSERT_TRUE(plain->Forward(x, &y).ok());
  absl::StatusOr<QParams> g = plain->IntegerGrid();
  EXPECT_EQ(g.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(g.status().message().find("not a whole number of steps"), std::string::npos) << g.status();
  // integer_offset: Forward uses -round(0.6) * 0.5 = -0.5, the grid has zero point 1.
  auto whole = Make("{quantizer: lsq_plus, bits: 2, integer_offset: true}");
  ASSERT_TRUE(whole->Forward(x, &y).ok());
  whole->parameters()[0]->value[0] = 0.5f;
  whole->parameters()[1]->value[0] = -0.3f;
  ASSERT_TRUE(whole->Forward(x, &y).ok());
  g = whole->IntegerGrid();
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ(g->zero_point[0], 1);
  EXPECT_FLOAT_EQ(g->scale[0], 0.5f);
  // v = (x + 0.5) / 0.5 = -1 (clip 0), 1.4, 3, 5 (clip 3): every output is 0.5 * (q - 1).
  const float want[] = {-0.5f, 0.0f, 1.0f, 1.0f};
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[i], want[i]) << i;
  EXPECT_NE(whole->Describe().find("whole-step offset"), std::string::npos);
  // The key is lsq_plus's only.
  EXPECT_FALSE(BuildQuantizerFromYaml("{quantizer: lsq, integer_offset: true}").ok());
}

}  // namespace
}  // namespace quant
