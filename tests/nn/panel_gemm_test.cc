// The panel kernel (quant/nn/panel_gemm.h): every element must be init +
// A[i][0]*panel[0][j] + A[i][1]*panel[1][j] + ..., one fused multiply-add per
// term in r order, so each implementation is compared bit for bit with a
// scalar std::fma chain (row counts 1..19 cover every row block and tail of
// both, with and without init, spilled and exact stores, padded strides, and
// with the fused clamp of the store, min(hi, max(lo, v))), and the AVX2 and
// AVX-512 kernels with each other through whole Conv2d layers (packed,
// pointwise and Winograd paths, forward and backward).
// Where the CPU has no AVX-512F the AVX-512 cases are skipped and the refusal
// of SetPanelIsa(kAvx512) is checked instead.
#include "quant/nn/panel_gemm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/conv2d.h"
#include "tests/nn/gradcheck.h"

namespace quant::nn {
namespace {

using testing::RandomTensor;
using testing::SameBits;

// Restores the best kernel when a test ends.
class PanelGemmTest : public ::testing::Test {
 protected:
  void TearDown() override { SetPanelIsa(BestPanelIsa()); }
  static bool HaveAvx512() { return BestPanelIsa() == PanelIsa::kAvx512; }
};

std::vector<float> Values(int64_t n, uint64_t seed) {
  const Tensor t = RandomTensor({n}, seed);
  return std::vector<float>(t.data(), t.data() + n);
}

struct Shape {
  int64_t m, kdim, lda, ldb, p, out_w;
  bool spill, init;
  bool clamp = false;  // store min(0.4, max(-0.3, v)), a fused Hardtanh
};

constexpr float kClamp[2] = {-0.3f, 0.4f};

// C from PanelRows with the given kernel, in a buffer whose every unwritten
// float is a sentinel (C's rows have 16 floats of slack at the end).
std::vector<float> RunPanel(const Shape& s, const std::vector<float>& a, const std::vector<float>& init,
                            const std::vector<float>& panel) {
  std::vector<float> c(s.m * s.p + 16, -7.5f);
  PanelRows(s.m, s.kdim, a.data(), s.lda, s.init ? init.data() : nullptr, panel.data(), s.ldb, c.data(), s.p, s.out_w,
            s.spill, s.clamp ? kClamp : nullptr);
  return c;
}

std::vector<float> Reference(const Shape& s, const std::vector<float>& a, const std::vector<float>& init,
                             const std::vector<float>& panel) {
  std::vector<float> c(s.m * s.p + 16, -7.5f);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < (s.spill ? 16 : s.out_w); ++j) {
      float acc = s.init ? init[i] : 0.0f;
      for (int64_t r = 0; r < s.kdim; ++r) acc = std::fma(a[i * s.lda + r], panel[r * s.ldb + j], acc);
      c[i * s.p + j] = s.clamp ? std::min(std::max(acc, kClamp[0]), kClamp[1]) : acc;
    }
  }
  return c;
}

std::vector<Shape> Shapes() {
  std::vector<Shape> shapes;
  for (int64_t m = 1; m <= 19; ++m) {
    shapes.push_back({m, 37, 41, 16, 16, 16, true, m % 2 == 0});
    shapes.push_back({m, 144, 144, 20, 14, 14, false, m % 3 != 0});
    shapes.push_back({m, 1, 3, 16, 29, 9, false, true});
    shapes.push_back({m, 0, 1, 16, 16, 16, true, m % 2 == 1});
    shapes.push_back({m, 37, 41, 16, 16, 16, true, true, /*clamp=*/true});
    shapes.push_back({m, 144, 144, 20, 14, 14, false, m % 2 == 0, /*clamp=*/true});
  }
  return shapes;
}

bool SameBits(const std::vector<float>& x, const std::vector<float>& y) {
  return x.size() == y.size() && std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

void ExpectEveryShapeMatchesTheFmaChain(const char* isa) {
  for (const Shape& s : Shapes()) {
    const std::vector<float> a = Values(s.m * s.lda, 1), init = Values(s.m, 2),
                             panel = Values(std::max<int64_t>(s.kdim, 1) * s.ldb, 3);
    const std::vector<float> got = RunPanel(s, a, init, panel), want = Reference(s, a, init, panel);
    EXPECT_TRUE(SameBits(got, want)) << isa << ": m=" << s.m << " kdim=" << s.kdim << " out_w=" << s.out_w
                                     << " spill=" << s.spill << " init=" << s.init << " clamp=" << s.clamp;
  }
}

TEST_F(PanelGemmTest, Avx2KernelIsTheFmaChainBitForBit) {
  ASSERT_TRUE(SetPanelIsa(PanelIsa::kAvx2));
  EXPECT_EQ(CurrentPanelIsa(), PanelIsa::kAvx2);
  ExpectEveryShapeMatchesTheFmaChain("avx2");
}

TEST_F(PanelGemmTest, Avx512KernelIsTheFmaChainBitForBit) {
  if (!HaveAvx512()) {
    EXPECT_FALSE(SetPanelIsa(PanelIsa::kAvx512));
    EXPECT_EQ(CurrentPanelIsa(), PanelIsa::kAvx2);
    GTEST_SKIP() << "this CPU has no AVX-512F: SetPanelIsa(kAvx512) refused, as it must";
  }
  ASSERT_TRUE(SetPanelIsa(PanelIsa::kAvx512));
  EXPECT_EQ(CurrentPanelIsa(), PanelIsa::kAvx512);
  ExpectEveryShapeMatchesTheFmaChain("avx512");
}

TEST_F(PanelGemmTest, TheReferenceCatchesAWrongTermOrder) {
  // The same sums added in reverse r order differ in the last bits for
  // some element: the bit-for-bit comparisons above can fail.
  const Shape s{8, 144, 144, 16, 16, 16, true, true};
  const std::vector<float> a = Values(s.m * s.lda, 1), init = Values(s.m, 2), panel = Values(s.kdim * s.ldb, 3);
  std::vector<float> reversed(s.m * s.p + 16, -7.5f);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < 16; ++j) {
      float acc = init[i];
      for (int64_t r = s.kdim - 1; r >= 0; --r) acc = std::fma(a[i * s.lda + r], panel[r * s.ldb + j], acc);
      reversed[i * s.p + j] = acc;
    }
  }
  EXPECT_FALSE(SameBits(RunPanel(s, a, init, panel), reversed));
}

struct Pass {
  Tensor y, dx, dw, db;
};

Pass RunConv(const Conv2dOptions& o, int64_t hw, bool winograd, PanelIsa isa) {
  EXPECT_TRUE(SetPanelIsa(isa));
  Conv2d conv("conv", o);
  conv.set_winograd(winograd);
  EXPECT_TRUE(conv.Build({o.in_channels, hw, hw}).ok());
  conv.weight().value = RandomTensor(conv.weight().value.shape(), 2);
  conv.bias().value = RandomTensor(conv.bias().value.shape(), 3);
  const Tensor x = RandomTensor({5, o.in_channels, hw, hw}, 4);
  Pass p;
  conv.Forward(x, &p.y);
  const Tensor dy = RandomTensor(p.y.shape(), 5);
  conv.Backward(x, p.y, dy, &p.dx);
  p.dw = conv.weight().grad;
  p.db = conv.bias().grad;
  return p;
}

TEST_F(PanelGemmTest, Conv2dGivesTheSameBitsOnBothKernels) {
  if (!HaveAvx512()) GTEST_SKIP() << "this CPU has no AVX-512F: only the AVX2 kernel can run";
  using Layer = testing::ConvLayerCase;
  for (const Layer& l : {
           Layer{
               "packed 3x3 (cnn conv2)", {.in_channels = 16, .out_channels = 32, .kernel = 3, .padding = 1}, 14, false},
           Layer{"packed 3x3, 13 out channels",
                 {.in_channels = 5, .out_channels = 13, .kernel = 3, .padding = 1},
                 12,
                 false},
           Layer{"pointwise 1x1", {.in_channels = 24, .out_channels = 40, .kernel = 1}, 14, false},
           Layer{"winograd 3x3", {.in_channels = 16, .out_channels = 32, .kernel = 3, .padding = 1}, 14, true},
       }) {
    const Pass wide = RunConv(l.o, l.hw, l.winograd, PanelIsa::kAvx512);
    const Pass narrow = RunConv(l.o, l.hw, l.winograd, PanelIsa::kAvx2);
    EXPECT_TRUE(SameBits(wide.y, narrow.y)) << l.what << ": y";
    EXPECT_TRUE(SameBits(wide.dx, narrow.dx)) << l.what << ": dx";
    EXPECT_TRUE(SameBits(wide.dw, narrow.dw)) << l.what << ": dw";
    EXPECT_TRUE(SameBits(wide.db, narrow.db)) << l.what << ": db";
  }
}

}  // namespace
}  // namespace quant::nn
