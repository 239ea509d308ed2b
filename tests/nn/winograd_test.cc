// Winograd F(2x2, 3x3) (quant/nn/winograd.h) and Conv2d's `winograd` switch:
// forward and input gradient against a double-precision direct convolution,
// with an error bound relative to the sum of the terms' magnitudes, on shapes
// that exercise every edge of the tiling (odd output sizes, one and two
// groups of 8 tiles per row, several chunks of images, padding 0..2); the
// weight and bias gradients, which Winograd does not touch, bit-identical to
// the default paths; and layers that are not eligible left on their own paths.
#include "quant/nn/winograd.h"

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/conv2d.h"
#include "tests/nn/gradcheck.h"

namespace quant::nn {
namespace {

using testing::RandomTensor;

struct Case {
  int64_t batch, cin, h, w, cout, pad;
  std::string Describe() const {
    return "batch=" + std::to_string(batch) + " cin=" + std::to_string(cin) + " " + std::to_string(h) + "x" +
           std::to_string(w) + " cout=" + std::to_string(cout) + " pad=" + std::to_string(pad);
  }
};

// y and sum |terms| of the 3x3 cross-correlation in double.
void Direct(const Case& c, const float* x, const float* w, const float* bias, std::vector<double>* y,
            std::vector<double>* mag) {
  const int64_t ho = c.h + 2 * c.pad - 2, wo = c.w + 2 * c.pad - 2;
  y->assign(c.batch * c.cout * ho * wo, 0.0);
  mag->assign(y->size(), 0.0);
  for (int64_t n = 0; n < c.batch; ++n) {
    for (int64_t o = 0; o < c.cout; ++o) {
      for (int64_t oy = 0; oy < ho; ++oy) {
        for (int64_t ox = 0; ox < wo; ++ox) {
          double s = bias != nullptr ? bias[o] : 0.0, m = std::fabs(s);
          for (int64_t ci = 0; ci < c.cin; ++ci) {
            for (int64_t ki = 0; ki < 3; ++ki) {
              for (int64_t kj = 0; kj < 3; ++kj) {
                const int64_t iy = oy + ki - c.pad, ix = ox + kj - c.pad;
                if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                const double t =
                    double{w[((o * c.cin + ci) * 3 + ki) * 3 + kj]} * x[((n * c.cin + ci) * c.h + iy) * c.w + ix];
                s += t;
                m += std::fabs(t);
              }
            }
          }
          const int64_t i = ((n * c.cout + o) * ho + oy) * wo + ox;
          (*y)[i] = s;
          (*mag)[i] = m;
        }
      }
    }
  }
}

// The largest |got - want| / sum |terms| (the error per unit of magnitude).
double WorstRelative(const float* got, const std::vector<double>& want, const std::vector<double>& mag) {
  double worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::fabs(got[i] - want[i]) / std::max(mag[i], 1e-30));
  }
  return worst;
}

// F(2x2, 3x3)'s float error: the transforms add up to 9 inputs and the
// output transform 9 products before the sum over channels, and near the
// zero padding products cancel that the direct sum never forms, so some
// float epsilons (6e-8) per unit of magnitude (measured: 4e-8 .. 1.0e-6 on
// these cases); a wrong transform or a misplaced tile is off by the
// magnitude itself.
constexpr double kBound = 4e-6;

const Case kCases[] = {
    {3, 16, 14, 14, 32, 1},  // the cnn's conv2: 7x7 tiles, one group
    {2, 3, 7, 7, 5, 1},      // odd output: half tiles on the bottom and right
    {2, 4, 5, 9, 3, 0},      // no padding, 3x7 output
    {1, 2, 3, 17, 6, 2},     // padding 2, 5x19 output: two groups, the last partial
    {2, 5, 32, 33, 7, 1},    // 16 and 17 tiles per row: three groups
    {40, 6, 12, 12, 8, 1},   // several chunks of images, the last one shorter
    {1, 7, 1, 1, 2, 1},      // a 1x1 input
};

TEST(Winograd3x3Test, MatchesDirectConvolutionWithinBound) {
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.Describe());
    const Tensor x = RandomTensor({c.batch, c.cin, c.h, c.w}, 1);
    const Tensor w = RandomTensor({c.cout, c.cin, 3, 3}, 2);
    const Tensor bias = RandomTensor({c.cout}, 3);
    for (const bool with_bias : {true, false}) {
      std::vector<double> want, mag;
      Direct(c, x.data(), w.data(), with_bias ? bias.data() : nullptr, &want, &mag);
      // Sentinels around the output catch a store past its end.
      std::vector<float> y(want.size() + 16, 12345.0f);
      Winograd3x3 wino;
      wino.SetWeight(w.data(), c.cout, c.cin);
      wino.Run(x.data(), c.batch, c.h, c.w, c.pad, with_bias ? bias.data() : nullptr, y.data());
      EXPECT_LE(WorstRelative(y.data(), want, mag), kBound);
      for (size_t i = want.size(); i < y.size(); ++i) ASSERT_EQ(y[i], 12345.0f) << "store past the output";
    }
  }
}

TEST(Winograd3x3Test, BoundIsTightEnoughToCatchAWrongWeight) {
  // The same run with one weight changed by 1e-2 must break the bound.
  const Case c = kCases[0];
  const Tensor x = RandomTensor({c.batch, c.cin, c.h, c.w}, 1);
  Tensor w = RandomTensor({c.cout, c.cin, 3, 3}, 2);
  std::vector<double> want, mag;
  Direct(c, x.data(), w.data(), nullptr, &want, &mag);
  w[5] += 1e-2f;
  std::vector<float> y(want.size());
  Winograd3x3 wino;
  wino.SetWeight(w.data(), c.cout, c.cin);
  wino.Run(x.data(), c.batch, c.h, c.w, c.pad, nullptr, y.data());
  EXPECT_GT(WorstRelative(y.data(), want, mag), 10 * kBound);
}

// Conv2d with and without the switch, forward and backward.
struct Pass {
  Tensor y, dx, dw, db;
};

Pass RunConv(const Case& c, bool winograd, const Tensor& x, const Tensor& dy) {
  Conv2d conv("conv", Conv2dOptions{.out_channels = c.cout, .kernel = 3, .stride = 1, .padding = c.pad});
  conv.set_winograd(winograd);
  EXPECT_TRUE(conv.Build({c.cin, c.h, c.w}).ok());
  conv.weight().value = RandomTensor(conv.weight().value.shape(), 2);
  conv.bias().value = RandomTensor(conv.bias().value.shape(), 3);
  Pass p;
  conv.Forward(x, &p.y);
  conv.Backward(x, p.y, dy, &p.dx);
  p.dw = conv.weight().grad;
  p.db = conv.bias().grad;
  return p;
}

TEST(Conv2dWinogradTest, ForwardAndInputGradientWithinBoundWeightGradientsUnchanged) {
  for (const Case& c : kCases) {
    if (c.pad > 2) continue;
    SCOPED_TRACE(c.Describe());
    const int64_t ho = c.h + 2 * c.pad - 2, wo = c.w + 2 * c.pad - 2;
    const Tensor x = RandomTensor({c.batch, c.cin, c.h, c.w}, 1);
    const Tensor dy = RandomTensor({c.batch, c.cout, ho, wo}, 4);
    const Pass fast = RunConv(c, true, x, dy), exact = RunConv(c, false, x, dy);
    const Tensor w = RandomTensor({c.cout, c.cin, 3, 3}, 2), bias = RandomTensor({c.cout}, 3);
    std::vector<double> want, mag;
    Direct(c, x.data(), w.data(), bias.data(), &want, &mag);
    EXPECT_LE(WorstRelative(fast.y.data(), want, mag), kBound);
    // dx = the correlation of dy (padded by 2 - pad) with the flipped,
    // transposed weight: the same reference on those.
    Tensor wflip({c.cin, c.cout, 3, 3});
    for (int64_t o = 0; o < c.cout; ++o) {
      for (int64_t ci = 0; ci < c.cin; ++ci) {
        for (int64_t t = 0; t < 9; ++t) wflip[(ci * c.cout + o) * 9 + t] = w[(o * c.cin + ci) * 9 + 8 - t];
      }
    }
    const Case back{c.batch, c.cout, ho, wo, c.cin, 2 - c.pad};
    Direct(back, dy.data(), wflip.data(), nullptr, &want, &mag);
    EXPECT_LE(WorstRelative(fast.dx.data(), want, mag), kBound);
    ASSERT_EQ(fast.dw.numel(), exact.dw.numel());
    for (int64_t i = 0; i < fast.dw.numel(); ++i) ASSERT_EQ(fast.dw[i], exact.dw[i]) << "dW[" << i << "]";
    for (int64_t i = 0; i < fast.db.numel(); ++i) ASSERT_EQ(fast.db[i], exact.db[i]) << "db[" << i << "]";
  }
}

TEST(Conv2dWinogradTest, IneligibleLayersKeepTheirOwnPaths) {
  // A grey-scale first layer (direct kernel), a 1x1 and a stride-2 conv give
  // the same bits with the switch on as off.
  const struct {
    Conv2dOptions o;
    int64_t cin;
  } layers[] = {
      {{.out_channels = 4, .kernel = 3, .stride = 1, .padding = 1}, 1},
      {{.out_channels = 4, .kernel = 1, .stride = 1, .padding = 0}, 3},
      {{.out_channels = 4, .kernel = 3, .stride = 2, .padding = 1}, 3},
  };
  for (const auto& l : layers) {
    Tensor out[2];
    for (int on = 0; on < 2; ++on) {
      Conv2d conv("conv", l.o);
      conv.set_winograd(on == 1);
      ASSERT_TRUE(conv.Build({l.cin, 9, 9}).ok());
      EXPECT_EQ(conv.WinogradLayer(), false);
      conv.weight().value = RandomTensor(conv.weight().value.shape(), 2);
      conv.Forward(RandomTensor({2, l.cin, 9, 9}, 1), &out[on]);
    }
    ASSERT_EQ(out[0].numel(), out[1].numel());
    for (int64_t i = 0; i < out[0].numel(); ++i) ASSERT_EQ(out[0][i], out[1][i]);
  }
}

}  // namespace
}  // namespace quant::nn
