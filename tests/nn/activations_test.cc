// Hardswish, Sigmoid, Tanh: forward and backward against PyTorch 1.13
// (values from tests/nn/torch_golden_gen.py), gradients against central
// differences and their fixed output qparams
// (registration: op_registry_test.cc).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/activations.h"
#include "tests/nn/gradient_check.h"

namespace quant::nn {
namespace {

using testing::CheckInputGradient;
using testing::GradientCheckOptions;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t Bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// Distance in units in the last place (0 for equal bits, both NaN, or +-0).
int64_t UlpDistance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b) ? 0 : INT64_MAX;
  if (a == b) return 0;
  auto ordered = [](float v) {
    const int64_t b = static_cast<int32_t>(Bits(v));
    return b < 0 ? INT32_MIN - b : b;
  };
  return std::llabs(ordered(a) - ordered(b));
}

// The inputs of torch_golden_gen.py: ACT_X (doubles rounded to float, as torch.tensor does).
Tensor GoldenInput() {
  const std::vector<double> x = {-5, -4, -3.0001, -3, -2.9999, -2, -1.5, -1, -0.5, -0.0, 0.0, 0.5,
                                 1, 1.5, 2, 2.9999, 3, 3.0001, 4, 5, 1e-8, -1e-8, 100, -100,
                                 kNaN, kInf, -kInf, 0.1, -0.1, 2.75, -2.75, 1.0 / 3};
  Tensor t({1, static_cast<int64_t>(x.size())});
  for (size_t i = 0; i < x.size(); ++i) t[i] = static_cast<float>(x[i]);
  return t;
}

// wave(32, 1, 0.25, 0.7): the upstream gradient.
Tensor GoldenGrad() {
  Tensor t({1, 32});
  for (int64_t i = 0; i < 32; ++i) t[i] = static_cast<float>(std::sin(i * 0.7) * 1.0 + 0.25);
  return t;
}

struct Golden {
  std::vector<float> y, dx;
};

// PyTorch 1.13.1, CPU (AVX2), for GoldenInput() and upstream gradient GoldenGrad().
Golden HardswishGolden() {
  return {{
    -0x0.0p+0f, -0x0.0p+0f, -0x0.0p+0f, -0x0.0p+0f,
    -0x1.a2fc6e0000000p-15f, -0x1.5555560000000p-2f, -0x1.8000000000000p-2f, -0x1.5555560000000p-2f,
    -0x1.aaaaaa0000000p-3f, -0x0.0p+0f, 0x0.0p+0f, 0x1.2aaaaa0000000p-2f,
    0x1.5555560000000p-1f, 0x1.2000000000000p+0f, 0x1.aaaaaa0000000p+0f, 0x1.7ffb160000000p+1f,
    0x1.8000000000000p+1f, 0x1.8003460000000p+1f, 0x1.0000000000000p+2f, 0x1.4000000000000p+2f,
    0x1.5798ee0000000p-28f, -0x1.5798ee0000000p-28f, 0x1.9000000000000p+6f, -0x0.0p+0f,
    kNaN, kInf, kNaN, 0x1.a740da0000000p-5f,
    -0x1.8bf25a0000000p-5f, 0x1.5155560000000p+1f, -0x1.d555560000000p-4f, 0x1.7b42600000000p-3f,
  }, {
    0x0.0p+0f, 0x0.0p+0f, 0x0.0p+0f, -0x1.1cfb4a0000000p-1f,
    -0x1.2b7e760000000p-2f, 0x1.1334980000000p-6f, -0x0.0p+0f, -0x1.f4055e0000000p-4f,
    -0x1.04472a0000000p-3f, 0x1.1137aa0000000p-3f, 0x1.d0608c0000000p-2f, 0x1.a6a0cc0000000p-1f,
    0x1.d74ba80000000p-1f, 0x1.2360dc0000000p-1f, -0x1.164eb80000000p-3f, -0x1.e398780000000p-1f,
    -0x1.7556c80000000p-1f, -0x1.78f8f00000000p-2f, 0x1.226e140000000p-2f, 0x1.d6d1da0000000p-1f,
    0x1.3d98720000000p-1f, 0x1.1882de0000000p-1f, 0x1.1b32540000000p-1f, 0x0.0p+0f,
    kNaN, -0x1.7385400000000p-1f, 0x0.0p+0f, 0x1.4824480000000p-3f,
    0x1.bd5ab60000000p-2f, 0x1.c2b5c00000000p+0f, -0x1.cfa3c60000000p-2f, 0x1.50135a0000000p-2f,
  }};
}

Golden SigmoidGolden() {
  return {{
    0x1.b69f680000000p-8f, 0x1.26afa20000000p-6f, 0x1.8479ce0000000p-5f, 0x1.8483440000000p-5f,
    0x1.848cba0000000p-5f, 0x1.e841520000000p-4f, 0x1.759b840000000p-3f, 0x1.1365620000000p-2f,
    0x1.829a060000000p-2f, 0x1.0000000000000p-1f, 0x1.0000000000000p-1f, 0x1.3eb2fe0000000p-1f,
    0x1.764d500000000p-1f, 0x1.a2991e0000000p-1f, 0x1.c2f7d40000000p-1f, 0x1.e7b7340000000p-1f,
    0x1.e7b7cc0000000p-1f, 0x1.e7b8640000000p-1f, 0x1.f6ca820000000p-1f, 0x1.fc92c20000000p-1f,
    0x1.0000000000000p-1f, 0x1.0000000000000p-1f, 0x1.0000000000000p+0f, 0x0.0p+0f,
    kNaN, 0x1.0000000000000p+0f, 0x0.0p+0f, 0x1.0cca120000000p-1f,
    0x1.e66bda0000000p-2f, 0x1.e13c520000000p-1f, 0x1.ec3ad80000000p-5f, 0x1.2a46a40000000p-1f,
  }, {
    0x1.b3afe20000000p-10f, 0x1.02c61c0000000p-6f, 0x1.c92eca0000000p-5f, 0x1.9bfc0a0000000p-5f,
    0x1.b1084c0000000p-6f, -0x1.5abcd60000000p-7f, -0x1.7bb91a0000000p-4f, -0x1.26ee280000000p-3f,
    -0x1.6eff700000000p-4f, 0x1.1137aa0000000p-4f, 0x1.d0608c0000000p-3f, 0x1.29f5200000000p-2f,
    0x1.bcc7760000000p-3f, 0x1.5baa180000000p-4f, -0x1.90bd080000000p-7f, -0x1.d2207e0000000p-6f,
    -0x1.0ddbfa0000000p-5f, -0x1.1075fe0000000p-6f, 0x1.484e700000000p-8f, 0x1.90a4aa0000000p-8f,
    0x1.3d98720000000p-2f, 0x1.1882de0000000p-2f, 0x0.0p+0f, -0x0.0p+0f,
    kNaN, -0x0.0p+0f, -0x0.0p+0f, 0x1.32dd720000000p-4f,
    0x1.dbf9760000000p-3f, 0x1.1f7c300000000p-4f, 0x1.f6beb20000000p-5f, 0x1.0b78dc0000000p-3f,
  }};
}

Golden TanhGolden() {
  return {{
    -0x1.fff41a0000000p-1f, -0x1.ffa8180000000p-1f, -0x1.fd77f20000000p-1f, -0x1.fd77d20000000p-1f,
    -0x1.fd77b00000000p-1f, -0x1.ed95060000000p-1f, -0x1.cf6f980000000p-1f, -0x1.85efac0000000p-1f,
    -0x1.d9353e0000000p-2f, -0x0.0p+0f, 0x0.0p+0f, 0x1.d9353e0000000p-2f,
    0x1.85efac0000000p-1f, 0x1.cf6f980000000p-1f, 0x1.ed95060000000p-1f, 0x1.fd77b00000000p-1f,
    0x1.fd77d20000000p-1f, 0x1.fd77f20000000p-1f, 0x1.ffa8180000000p-1f, 0x1.fff41a0000000p-1f,
    0x1.5798ee0000000p-27f, -0x1.5798ee0000000p-27f, 0x1.0000000000000p+0f, -0x1.0000000000000p+0f,
    kNaN, 0x1.0000000000000p+0f, -0x1.0000000000000p+0f, 0x1.983d780000000p-4f,
    -0x1.983d780000000p-4f, 0x1.fbd50a0000000p-1f, -0x1.fbd50a0000000p-1f, 0x1.493aa40000000p-2f,
  }, {
    0x1.7cbb940000000p-15f, 0x1.3a52e80000000p-10f, 0x1.8f54700000000p-7f, 0x1.67e3440000000p-7f,
    0x1.7a51360000000p-8f, -0x1.d2a4c80000000p-8f, -0x1.cc130e0000000p-4f, -0x1.3afe740000000p-2f,
    -0x1.330ae60000000p-2f, 0x1.1137aa0000000p-2f, 0x1.d0608c0000000p-1f, 0x1.f28ff60000000p-1f,
    0x1.db096c0000000p-2f, 0x1.a53b640000000p-4f, -0x1.0da8c00000000p-7f, -0x1.973ae40000000p-8f,
    -0x1.d778320000000p-8f, -0x1.dbf7680000000p-9f, 0x1.8ec8320000000p-12f, 0x1.5e1c3e0000000p-13f,
    0x1.3d98720000000p+0f, 0x1.1882de0000000p+0f, 0x0.0p+0f, -0x0.0p+0f,
    kNaN, -0x0.0p+0f, -0x0.0p+0f, 0x1.3093b00000000p-2f,
    0x1.d86ce40000000p-1f, 0x1.4a25860000000p-6f, 0x1.20acce0000000p-6f, 0x1.ed181c0000000p-2f,
  }};
}

// Forward within max_ulp of PyTorch; backward bit for bit when fed PyTorch's output.
void ExpectMatchesTorch(Layer& op, const Golden& golden, int64_t max_ulp) {
  const Tensor x = GoldenInput(), g = GoldenGrad();
  ASSERT_TRUE(op.Build({x.dim(1)}).ok());
  Tensor y, dx;
  op.Forward(x, &y);
  int identical = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_LE(UlpDistance(y[i], golden.y[i]), max_ulp)
        << op.Describe() << " x=" << x[i] << ": " << y[i] << " vs torch " << golden.y[i];
    identical += std::isnan(y[i]) ? std::isnan(golden.y[i]) : Bits(y[i]) == Bits(golden.y[i]);
  }
  std::printf("%s forward: %d of %d identical to PyTorch\n", op.Describe().c_str(), identical,
              static_cast<int>(x.numel()));
  Tensor torch_y({1, x.dim(1)});
  for (int64_t i = 0; i < x.numel(); ++i) torch_y[i] = golden.y[i];
  op.Backward(x, torch_y, g, &dx);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(golden.dx[i])) {
      EXPECT_TRUE(std::isnan(dx[i])) << op.Describe() << " x=" << x[i];
    } else {
      EXPECT_EQ(Bits(dx[i]), Bits(golden.dx[i]))
          << op.Describe() << " x=" << x[i] << ": dx " << dx[i] << " vs torch " << golden.dx[i];
    }
  }
}

TEST(HardswishTest, MatchesTorchBitForBit) {
  Hardswish op("hs");
  ExpectMatchesTorch(op, HardswishGolden(), /*max_ulp=*/0);
}

TEST(SigmoidTest, MatchesTorch) {
  Sigmoid op("sig");
  ExpectMatchesTorch(op, SigmoidGolden(), /*max_ulp=*/4);
}

TEST(TanhTest, MatchesTorch) {
  Tanh op("tanh");
  ExpectMatchesTorch(op, TanhGolden(), /*max_ulp=*/2);
}

// The AVX body and the scalar tail agree: every length from 1 to 40, with the
// special values at every position.
TEST(HardswishTest, SameValuesAtEveryPosition) {
  const Tensor x = GoldenInput(), g = GoldenGrad();
  const Golden golden = HardswishGolden();
  Hardswish op("hs");
  for (int64_t n = 1; n <= 40; ++n) {
    for (int64_t shift = 0; shift < 32; shift += 7) {
      Tensor xs({1, n}), gs({1, n}), y, dx;
      std::vector<int64_t> src(n);
      for (int64_t i = 0; i < n; ++i) {
        src[i] = (i + shift) % 32;
        xs[i] = x[src[i]];
        gs[i] = g[src[i]];
      }
      op.Forward(xs, &y);
      op.Backward(xs, y, gs, &dx);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(UlpDistance(y[i], golden.y[src[i]]), 0) << "n=" << n << " x=" << xs[i];
        ASSERT_EQ(UlpDistance(dx[i], golden.dx[src[i]]), 0) << "n=" << n << " x=" << xs[i];
      }
    }
  }
}

TEST(HardswishTest, BoundaryGradients) {
  // PyTorch 1.13's vectorised hardswish_backward: 0 below -3, (x/3 + 0.5) dy on
  // [-3, 3), dy from 3 on; so -0.5 dy at -3 and dy at 3.
  Hardswish op("hs");
  Tensor x({1, 6}, {-3.5f, -3.0f, 0.0f, 2.5f, 3.0f, 3.5f}), y, dx;
  Tensor g({1, 6}, {1, 1, 1, 1, 1, 1});
  op.Forward(x, &y);
  op.Backward(x, y, g, &dx);
  EXPECT_EQ(dx[0], 0.0f);
  EXPECT_EQ(dx[1], -0.5f);
  EXPECT_EQ(dx[2], 0.5f);
  EXPECT_EQ(dx[3], 2.5f / 3.0f + 0.5f);
  EXPECT_EQ(dx[4], 1.0f);
  EXPECT_EQ(dx[5], 1.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_TRUE(std::signbit(y[0]));  // -3.5 * 0 / 6 = -0, as PyTorch
  EXPECT_EQ(y[4], 3.0f);
}

TEST(ActivationsTest, GradientsMatchFiniteDifferences) {
  GradientCheckOptions wide;
  wide.input_lo = -5.0f;
  wide.input_hi = 5.0f;
  Hardswish hs("hs");
  GradientCheckOptions hs_options = wide;
  hs_options.kinks = {-3.0f, 3.0f};
  ASSERT_TRUE(hs.Build({4, 25}).ok());
  EXPECT_TRUE(CheckInputGradient(hs, {2, 4, 25}, 1, hs_options));
  Sigmoid sig("sig");
  ASSERT_TRUE(sig.Build({4, 25}).ok());
  EXPECT_TRUE(CheckInputGradient(sig, {2, 4, 25}, 2, wide));
  Tanh tanh_op("tanh");
  ASSERT_TRUE(tanh_op.Build({3, 5, 5}).ok());
  EXPECT_TRUE(CheckInputGradient(tanh_op, {2, 3, 5, 5}, 3, wide));
}

TEST(ActivationsTest, ShapeIsKeptAndBuffersReused) {
  Sigmoid op("sig");
  ASSERT_TRUE(op.Build({3, 4, 4}).ok());
  EXPECT_EQ(*op.Build({3, 4, 4}), (Shape{3, 4, 4}));
  Tensor x = testing::UniformTensor({2, 3, 4, 4}, 1), y, dx;
  op.Forward(x, &y);
  const float* y_data = y.data();
  op.Forward(x, &y);
  EXPECT_EQ(y.data(), y_data);
  EXPECT_EQ(y.shape(), x.shape());
  op.Backward(x, y, y, &dx);
  EXPECT_EQ(dx.shape(), x.shape());
  op.Backward(x, y, y, nullptr);  // first layer: no input gradient
}

TEST(ActivationsTest, FixedOutputQParamsAreTorchs) {
  float scale = 0;
  int32_t zero_point = -1;
  bool is_signed = true;
  // torch.ao.quantization's default_fixed_qparams_range_0to1_observer.
  EXPECT_TRUE(Sigmoid("s").fixed_output_qparams(&scale, &zero_point, &is_signed));
  EXPECT_EQ(scale, 1.0f / 256.0f);
  EXPECT_EQ(zero_point, 0);
  EXPECT_FALSE(is_signed);
  // default_fixed_qparams_range_neg1to1_observer.
  is_signed = true;
  EXPECT_TRUE(Tanh("t").fixed_output_qparams(&scale, &zero_point, &is_signed));
  EXPECT_EQ(scale, 2.0f / 256.0f);
  EXPECT_EQ(zero_point, 128);
  EXPECT_FALSE(is_signed);
  // Hardswish is not in PyTorch 1.13's _FIXED_QPARAMS_OP_TO_OBSERVER.
  EXPECT_FALSE(Hardswish("h").fixed_output_qparams(&scale, &zero_point, &is_signed));
}

}  // namespace
}  // namespace quant::nn
