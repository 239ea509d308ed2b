// GlobalAvgPool: forward and backward against PyTorch 1.13's
// AdaptiveAvgPool2d(1) + flatten (values from tests/nn/torch_golden_gen.py),
// gradients against central differences and shapes (registration:
// op_registry_test.cc).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/global_avg_pool.h"
#include "tests/nn/gradient_check.h"

namespace quant::nn {
namespace {

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// wave() of torch_golden_gen.py: float(sin(i * freq) * scale + offset).
Tensor Wave(const Shape& shape, double scale, double offset, double freq) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) {
    t[i] = static_cast<float>(std::sin(i * freq) * scale + offset);
  }
  return t;
}

struct Case {
  Shape shape;                 // [B, C, H, W]
  std::vector<float> y;        // [B, C]
  std::vector<float> dx_corner;  // dx[b, c, 0, 0]
};

// PyTorch 1.13.1, CPU (AVX2), one thread. Plane sizes 49 (vectors and a scalar
// tail), 6 (scalar path), 4096 (the sum's cascade levels) and 1.
std::vector<Case> TorchCases() {
  return {
      {{2, 3, 7, 7}, {
    0x1.1f17900000000p-1f, 0x1.39338c0000000p-1f, 0x1.36f3360000000p-1f, 0x1.1974520000000p-1f,
    0x1.dead3a0000000p-2f, 0x1.9af7640000000p-2f,
       }, {
    0x0.0p+0f, 0x1.422eb20000000p-6f, 0x1.58bbd00000000p-7f, -0x1.cbeede0000000p-7f,
    -0x1.2765fe0000000p-6f, 0x1.1fb7660000000p-8f,
       }},
      {{1, 2, 2, 3}, {
    0x1.38e1680000000p+1f, 0x1.f781520000000p-2f,
       }, {
    0x0.0p+0f, 0x1.48e5000000000p-3f,
       }},
      {{1, 2, 64, 64}, {
    0x1.0087320000000p-1f, 0x1.0132740000000p-1f,
       }, {
    0x0.0p+0f, 0x1.ed57800000000p-13f,
       }},
      {{1, 1, 1, 1}, {
    0x1.0000000000000p-1f,
       }, {
    0x0.0p+0f,
       }},
  };
}

TEST(GlobalAvgPoolTest, MatchesTorchBitForBit) {
  for (const Case& c : TorchCases()) {
    GlobalAvgPool gap("gap");
    absl::StatusOr<Shape> out = gap.Build({c.shape[1], c.shape[2], c.shape[3]});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, (Shape{c.shape[1]}));
    const Tensor x = Wave(c.shape, 3.0, 0.5, 0.37);
    Tensor y, dx;
    gap.Forward(x, &y);
    ASSERT_EQ(y.shape(), (Shape{c.shape[0], c.shape[1]}));
    const Tensor g = Wave(y.shape(), 1.0, 0.0, 1.3);
    gap.Backward(x, y, g, &dx);
    ASSERT_EQ(dx.shape(), c.shape);
    const int64_t plane = c.shape[2] * c.shape[3];
    for (int64_t i = 0; i < y.numel(); ++i) {
      EXPECT_EQ(Bits(y[i]), Bits(c.y[i])) << ShapeToString(c.shape) << " y[" << i << "] " << y[i]
                                          << " vs torch " << c.y[i];
      EXPECT_EQ(Bits(dx[i * plane]), Bits(c.dx_corner[i])) << ShapeToString(c.shape);
      for (int64_t k = 0; k < plane; ++k) ASSERT_EQ(dx[i * plane + k], dx[i * plane]);
    }
  }
}

// Long planes of constant data: the mean is exact, whatever the sum's order.
TEST(GlobalAvgPoolTest, ConstantPlanesAverageExactly) {
  for (int64_t side : {1, 2, 3, 5, 8, 17, 33}) {
    GlobalAvgPool gap("gap");
    ASSERT_TRUE(gap.Build({2, side, side}).ok());
    Tensor x({3, 2, side, side}), y;
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = (i / (side * side)) * 0.25f - 0.5f;
    gap.Forward(x, &y);
    for (int64_t pl = 0; pl < 6; ++pl) EXPECT_EQ(y[pl], pl * 0.25f - 0.5f) << side;
  }
}

TEST(GlobalAvgPoolTest, GradientsMatchFiniteDifferences) {
  GlobalAvgPool gap("gap");
  ASSERT_TRUE(gap.Build({3, 5, 6}).ok());
  EXPECT_TRUE(testing::CheckInputGradient(gap, {2, 3, 5, 6}, 4));
}

TEST(GlobalAvgPoolTest, WrongRankIsAnErrorWithTheShape) {
  GlobalAvgPool gap("gap");
  absl::StatusOr<Shape> out = gap.Build({16});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("[16]"), std::string::npos) << out.status();
  EXPECT_FALSE(gap.Build({4, 0, 3}).ok());
}

TEST(GlobalAvgPoolTest, ReusesItsOutputBuffer) {
  GlobalAvgPool gap("gap");
  ASSERT_TRUE(gap.Build({4, 3, 3}).ok());
  Tensor x = testing::UniformTensor({2, 4, 3, 3}, 5), y, dx;
  gap.Forward(x, &y);
  const float* y_data = y.data();
  gap.Backward(x, y, y, &dx);
  const float* dx_data = dx.data();
  gap.Forward(x, &y);
  gap.Backward(x, y, y, &dx);
  EXPECT_EQ(y.data(), y_data);
  EXPECT_EQ(dx.data(), dx_data);
}

}  // namespace
}  // namespace quant::nn
