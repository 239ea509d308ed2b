// block_fp and the MX formats beyond the golden file: registration,
// properties, block_fp's grid, tails, rounding modes.
#include "quant/formats/block_format.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"

namespace quant {
namespace {

using testing_util::MakeFormat;

TEST(BlockFormatTest, Registered) {
  for (const char* name : {"block_fp", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3",
                           "mxfp4_e2m1", "mxint8"}) {
    EXPECT_TRUE(Registry<NumberFormat>::Get().Contains(name)) << name;
  }
}

TEST(BlockFormatTest, Properties) {
  auto mx = MakeFormat("mxfp8_e4m3");
  EXPECT_EQ(mx->properties().block_size, 32);
  EXPECT_EQ(mx->properties().bits_per_value, 8.25);
  EXPECT_EQ(mx->properties().largest, 448.0 * std::ldexp(1.0, 127));
  EXPECT_EQ(mx->properties().smallest_subnormal, std::ldexp(1.0, -9 - 127));
  auto fp4 = MakeFormat("mxfp4_e2m1", "{block_size: 16}");
  EXPECT_EQ(fp4->properties().bits_per_value, 4.5);
}

TEST(BlockFormatTest, BlockFpGrid) {
  // 4-bit mantissas (q in [-7, 7], element = q / 4), blocks of 4.
  auto f = MakeFormat("block_fp", "{block_size: 4, mantissa_bits: 4}");
  std::vector<float> in = {1.0f, 0.3f, -0.6f, 0.05f, /*tail*/ 100.0f, 30.0f}, out(6);
  f->RoundSpan(in, absl::MakeSpan(out));
  // Block 1: s = 0, grid 0.25: 1, 0.25, -0.5, 0.
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 0.25f);
  EXPECT_EQ(out[2], -0.5f);
  EXPECT_EQ(out[3], 0.0f);
  // Tail: s = 6, grid 16: 100 -> 6.25*16 -> q=6.25 -> 6 -> 96; 30 -> 1.875*16 -> 2*16 = 32.
  EXPECT_EQ(out[4], 96.0f);
  EXPECT_EQ(out[5], 32.0f);
}

TEST(BlockFormatTest, StochasticElementsAreUnbiased) {
  auto f = MakeFormat("mxfp4_e2m1", "{rounding: stochastic, seed: 5}");
  std::vector<float> in(32, 2.5f), out(32);
  in[0] = 6.0f;  // s = 0
  double sum = 0;
  int n = 0;
  for (int rep = 0; rep < 2000; ++rep) {
    f->RoundSpan(in, absl::MakeSpan(out));
    for (int i = 1; i < 32; ++i, ++n) {
      ASSERT_TRUE(out[i] == 2.0f || out[i] == 3.0f) << out[i];
      sum += out[i];
    }
  }
  EXPECT_NEAR(sum / n, 2.5, 0.01);
}

TEST(BlockFormatTest, ZeroBlockAndSignedZeros) {
  auto base = MakeFormat("mxfp8_e5m2");
  auto* f = dynamic_cast<BlockFormat*>(base.get());
  std::vector<float> in(32, 0.0f);
  in[1] = -0.0f;
  std::vector<uint32_t> e(32);
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0u);  // smallest scale
  EXPECT_EQ(e[0], 0x00u);
  EXPECT_EQ(e[1], 0x80u);
  std::vector<float> out(32);
  f->DecodeBlock(0xff, e, absl::MakeSpan(out));
  EXPECT_TRUE(std::isnan(out[0]));
}

// RoundSpan has fast paths (vectorised float elements, integer elements with
// nearest-even); they must equal EncodeBlock + DecodeBlock, which use the
// scalar element code, on wide-ranging blocks, tails and tiny/huge scales.
TEST(BlockFormatTest, RoundSpanEqualsEncodeDecodeBlock) {
  uint64_t state = 99;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<uint32_t>(state >> 32);
  };
  for (const char* name : {"mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4_e2m1",
                           "mxint8", "block_fp"}) {
    for (const char* yaml : {"{}", "{block_size: 7}"}) {
      auto base = MakeFormat(name, yaml);
      auto* f = dynamic_cast<BlockFormat*>(base.get());
      ASSERT_NE(f, nullptr);
      const size_t k = f->properties().block_size;
      for (int rep = 0; rep < 400; ++rep) {
        // Finite values with exponents spread over the whole float32 range
        // (block maxima from 2^-149 to 2^127) and a spread inside the block.
        const int top = static_cast<int>(next() % 277) - 149;
        const size_t n = k * 2 + next() % k;  // with a tail
        std::vector<float> in(n);
        for (float& x : in) {
          const int e = std::max(top - static_cast<int>(next() % 30), -149);
          x = std::ldexp(1.0f + (next() % 1024) / 1024.0f, e) * ((next() & 1) ? -1.0f : 1.0f);
          if (!std::isfinite(x)) x = 1.0f;
        }
        std::vector<float> fast(n), slow(n);
        f->RoundSpan(in, absl::MakeSpan(fast));
        for (size_t start = 0; start < n; start += k) {
          const size_t len = std::min(k, n - start);
          std::vector<uint32_t> e(len);
          const uint32_t scale =
              f->EncodeBlock(absl::MakeConstSpan(in).subspan(start, len), absl::MakeSpan(e));
          f->DecodeBlock(scale, e, absl::MakeSpan(slow).subspan(start, len));
        }
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(FloatBits(fast[i]), FloatBits(slow[i]))
              << name << " " << yaml << " x=" << in[i] << " fast " << fast[i] << " slow " << slow[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace quant
