// Properties of the affine kernels: round trip error, per-channel/per-block
// equal per-tensor on each slice, SIMD body equals the scalar tail, the
// documented inf/NaN behaviour, and shape errors naming the key.
#include "quant/qmath/fake_quant.h"

#include <cmath>
#include <limits>
#include <cstring>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::vector<float> RandomValues(int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = u(rng);
  return v;
}

TEST(FakeQuant, RoundTripWithinHalfScaleInsideRange) {
  const float scale = 0.0371f;
  const int32_t zp = 37;
  const int64_t qmin = 0, qmax = 255;
  const float lo = (qmin - zp) * scale, hi = (qmax - zp) * scale;
  Tensor x({4096}, RandomValues(4096, lo, hi, 1));
  QParams qp = QParams::PerTensor(scale, zp, qmin, qmax);
  std::vector<int32_t> q;
  ASSERT_TRUE(Quantize(x, qp, &q).ok());
  Tensor back, fq;
  ASSERT_TRUE(Dequantize(q, x.shape(), qp, &back).ok());
  ASSERT_TRUE(FakeQuantize(x, qp, &fq).ok());
  float worst = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    EXPECT_GE(q[i], qmin);
    EXPECT_LE(q[i], qmax);
    worst = std::max(worst, std::fabs(back[i] - x[i]));
    EXPECT_EQ(back[i], fq[i]) << i;  // fake quant == dequant(quant)
  }
  // scale/2 plus the float rounding of x*inv_scale and of the product.
  EXPECT_LE(worst, scale / 2 * (1 + 1e-5f));
  EXPECT_GT(worst, scale / 4);  // the test would notice a no-op
}

TEST(FakeQuant, VectorBodyEqualsScalarTail) {
  // Each element through a span of length 1 (the scalar path) must equal the
  // same element inside a long span (the AVX2 path).
  std::vector<float> x = RandomValues(1003, -9.0f, 9.0f, 2);
  x[5] = 0.5f * 0.0625f;  // an exact half step
  x[17] = std::numeric_limits<float>::infinity();
  x[18] = -std::numeric_limits<float>::infinity();
  x[19] = std::numeric_limits<float>::quiet_NaN();
  x[20] = 1e30f;
  std::vector<float> y(x.size()), y1(x.size());
  std::vector<uint8_t> m(x.size()), m1(x.size());
  FakeQuantizeSpan(x.data(), y.data(), m.data(), x.size(), 0.0625f, 3, -8, 7);
  for (size_t i = 0; i < x.size(); ++i) {
    FakeQuantizeSpan(x.data() + i, y1.data() + i, m1.data() + i, 1, 0.0625f, 3, -8, 7);
    ASSERT_EQ(std::memcmp(&y[i], &y1[i], 4), 0) << i;
    ASSERT_EQ(m[i], m1[i]) << i;
  }
  // Without a mask the same values come out.
  std::vector<float> y2(x.size());
  FakeQuantizeSpan(x.data(), y2.data(), nullptr, x.size(), 0.0625f, 3, -8, 7);
  EXPECT_EQ(std::memcmp(y.data(), y2.data(), 4 * x.size()), 0);
}

TEST(FakeQuant, NonFiniteAndHugeGoToQuantMinWithZeroGradient) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {inf, -inf, std::nanf(""), 1e30f, -1e30f, 0.25f};
  std::vector<float> y(x.size());
  std::vector<uint8_t> m(x.size());
  FakeQuantizeSpan(x.data(), y.data(), m.data(), x.size(), 0.5f, 2, 0, 15);
  const float at_min = (0 - 2) * 0.5f;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(y[i], at_min) << i;
    EXPECT_EQ(m[i], 0) << i;
  }
  EXPECT_EQ(y[5], 0.0f);  // 0.25/0.5 = 0.5 rounds to even 0
  EXPECT_EQ(m[5], 1);
}

TEST(FakeQuant, PerChannelEqualsPerTensorChannelByChannel) {
  for (int axis : {0, 1, 2}) {
    const std::vector<int64_t> shape = {3, 5, 20};
    Tensor x(shape, RandomValues(300, -3, 3, 3 + axis));
    QParams qp;
    qp.granularity = Granularity::kPerChannel;
    qp.axis = axis;
    qp.quant_min = -8;
    qp.quant_max = 7;
    for (int64_t c = 0; c < shape[axis]; ++c) {
      qp.scale.push_back(0.05f + 0.03f * c);
      qp.zero_point.push_back(static_cast<int32_t>(c % 3) - 1);
    }
    Tensor y;
    std::vector<uint8_t> mask;
    ASSERT_TRUE(FakeQuantize(x, qp, &y, &mask).ok());
    int64_t checked = 0;
    for (int64_t i = 0; i < shape[0]; ++i) {
      for (int64_t j = 0; j < shape[1]; ++j) {
        for (int64_t k = 0; k < shape[2]; ++k) {
          const int64_t e = (i * shape[1] + j) * shape[2] + k;
          const int64_t c = axis == 0 ? i : axis == 1 ? j : k;
          float want;
          uint8_t want_m;
          FakeQuantizeSpan(&x[e], &want, &want_m, 1, qp.scale[c], qp.zero_point[c], -8, 7);
          ASSERT_EQ(y[e], want) << axis << " " << e;
          ASSERT_EQ(mask[e], want_m);
          ++checked;
        }
      }
    }
    EXPECT_EQ(checked, 300);
  }
}

TEST(FakeQuant, PerBlockEqualsPerTensorBlockByBlock) {
  for (int axis : {1, -1, 0}) {
    const std::vector<int64_t> shape = {4, 6, 8};
    Tensor x(shape, RandomValues(192, -2, 2, 9));
    QParams qp;
    qp.granularity = Granularity::kPerBlock;
    qp.axis = axis;
    qp.block_size = 2;
    qp.quant_min = 0;
    qp.quant_max = 15;
    auto groups = NumGroups(qp.granularity, axis, 2, shape);
    ASSERT_TRUE(groups.ok());
    EXPECT_EQ(*groups, 96);
    for (int64_t g = 0; g < *groups; ++g) {
      qp.scale.push_back(0.01f * (g + 1));
      qp.zero_point.push_back(static_cast<int32_t>(g % 16));
    }
    Tensor y;
    ASSERT_TRUE(FakeQuantize(x, qp, &y).ok());
    const int a = axis < 0 ? axis + 3 : axis;
    for (int64_t i = 0; i < 4; ++i) {
      for (int64_t j = 0; j < 6; ++j) {
        for (int64_t k = 0; k < 8; ++k) {
          const int64_t idx[3] = {i, j, k};
          int64_t pshape[3] = {4, 6, 8};
          pshape[a] /= 2;
          int64_t pidx[3] = {i, j, k};
          pidx[a] /= 2;
          const int64_t g = (pidx[0] * pshape[1] + pidx[1]) * pshape[2] + pidx[2];
          const int64_t e = (idx[0] * 6 + idx[1]) * 8 + idx[2];
          float want;
          FakeQuantizeSpan(&x[e], &want, nullptr, 1, qp.scale[g], qp.zero_point[g], 0, 15);
          ASSERT_EQ(y[e], want) << axis << " " << e;
        }
      }
    }
    // Quantize/Dequantize use the same grouping.
    std::vector<int32_t> q;
    Tensor back;
    ASSERT_TRUE(Quantize(x, qp, &q).ok());
    ASSERT_TRUE(Dequantize(q, shape, qp, &back).ok());
    for (int64_t e = 0; e < 192; ++e) ASSERT_EQ(back[e], y[e]);
  }
}

TEST(FakeQuant, ShapeErrorsNameTheKey) {
  QParams qp;
  qp.granularity = Granularity::kPerChannel;
  qp.axis = 2;
  qp.scale = {1, 1};
  qp.zero_point = {0, 0};
  Tensor x({2, 3});
  Tensor y;
  absl::Status s = FakeQuantize(x, qp, &y);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("axis: axis 2 is out of range for a tensor of shape [2, 3]"));
  auto g = NumGroups(Granularity::kPerBlock, 1, 2, {2, 3}, "w.axis", "w.block_size");
  EXPECT_THAT(g.status().message(), HasSubstr("w.block_size: block_size 2 does not divide"));
  qp.axis = 0;
  qp.scale = {1, 1, 1};
  qp.zero_point = {0, 0, 0};
  EXPECT_EQ(FakeQuantize(x, qp, &y).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(FakeQuant, BackwardIsMaskedGradient) {
  Tensor x({4}, {-10.0f, 0.1f, 0.2f, 10.0f});
  QParams qp = QParams::PerTensor(0.1f, 0, -8, 7);
  Tensor y, gx;
  std::vector<uint8_t> mask;
  ASSERT_TRUE(FakeQuantize(x, qp, &y, &mask).ok());
  Tensor gy({4}, {2.0f, 3.0f, -4.0f, 5.0f});
  ASSERT_TRUE(FakeQuantizeBackward(gy, mask, &gx).ok());
  EXPECT_EQ(gx[0], 0.0f);
  EXPECT_EQ(gx[1], 3.0f);
  EXPECT_EQ(gx[2], -4.0f);
  EXPECT_EQ(gx[3], 0.0f);
  Tensor wrong({3});
  EXPECT_EQ(FakeQuantizeBackward(wrong, mask, &gx).code(), absl::StatusCode::kFailedPrecondition);
}

// The 8-lane backward equals the elementwise select on every length (vector part and tail),
// for any nonzero mask byte, in place too; a masked-out gradient is +0.0f, never -0.0f.
TEST(FakeQuantTest, BackwardLanesEqualTheSelect) {
  for (int64_t n : {1, 7, 8, 9, 64, 203}) {
    Tensor gy({n});
    std::vector<uint8_t> mask(n);
    for (int64_t i = 0; i < n; ++i) {
      gy[i] = (i % 3 == 0) ? -0.0f : static_cast<float>(i) * (i % 2 ? -0.75f : 1.25f);
      mask[i] = static_cast<uint8_t>((i * 5) % 7 < 3 ? 0 : (i % 2 ? 1 : 255));
    }
    Tensor gx;
    ASSERT_TRUE(FakeQuantizeBackward(gy, mask, &gx).ok());
    Tensor in_place = gy;
    ASSERT_TRUE(FakeQuantizeBackward(in_place, mask, &in_place).ok());
    for (int64_t i = 0; i < n; ++i) {
      const float want = mask[i] ? gy[i] : 0.0f;
      uint32_t a, b, c;
      std::memcpy(&a, &want, 4);
      std::memcpy(&b, &gx[i], 4);
      std::memcpy(&c, &in_place[i], 4);
      EXPECT_EQ(b, a) << n << " " << i;
      EXPECT_EQ(c, a) << n << " " << i;
    }
  }
}

}  // namespace
}  // namespace quant
