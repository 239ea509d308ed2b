// Im2col (quant/backends/im2col.h, used by xnnpack and onednn for convs over few
// channels) against a direct definition of the patch matrix, byte for byte, on the
// one-channel 3x3 fast path and every other path: strides, asymmetric padding, and
// kernels whose row is 3 bytes without being 3x3 over one channel (3x1 over 3 channels).
#include "quant/backends/im2col.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace quant::backends {
namespace {

struct Geometry {
  int h, w, c, kh, kw, sh, sw, pt, pb, pl, pr;
};

// patches[(b*OH + oy)*OW + ox][(ky*kw + kx)*C + ch], the zero point outside the image.
std::vector<uint8_t> Direct(const Geometry& g, int batch, const std::vector<uint8_t>& x, uint8_t zp, int oh, int ow) {
  std::vector<uint8_t> out;
  for (int b = 0; b < batch; ++b) {
    for (int oy = 0; oy < oh; ++oy) {
      for (int ox = 0; ox < ow; ++ox) {
        for (int ky = 0; ky < g.kh; ++ky) {
          for (int kx = 0; kx < g.kw; ++kx) {
            for (int ch = 0; ch < g.c; ++ch) {
              const int y = oy * g.sh - g.pt + ky, xx = ox * g.sw - g.pl + kx;
              const bool inside = y >= 0 && y < g.h && xx >= 0 && xx < g.w;
              out.push_back(inside ? x[((b * g.h + y) * g.w + xx) * g.c + ch] : zp);
            }
          }
        }
      }
    }
  }
  return out;
}

TEST(Im2colTest, EqualsTheDirectDefinition) {
  const Geometry cases[] = {
      {28, 28, 1, 3, 3, 1, 1, 1, 1, 1, 1},  // the cnn's conv1: the 4-byte-move fast path
      {9, 7, 1, 3, 3, 2, 1, 0, 2, 1, 0},    // fast path with stride_h 2 and asymmetric padding
      {9, 7, 1, 3, 3, 1, 2, 1, 1, 1, 1},    // stride_w 2: the general path
      {6, 5, 3, 3, 1, 1, 1, 1, 1, 0, 0},    // 3x1 over 3 channels: a 3-byte row, not the fast path
      {6, 5, 3, 1, 3, 1, 1, 0, 0, 1, 1},    // 1x3 over 3 channels
      {8, 8, 2, 2, 2, 1, 1, 0, 1, 0, 1},   {11, 9, 4, 5, 3, 2, 2, 2, 2, 1, 1}, {5, 5, 7, 3, 3, 1, 1, 1, 1, 1, 1},
  };
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const Geometry& g : cases) {
    Conv2DOptions c;
    c.set_kernel_h(g.kh);
    c.set_kernel_w(g.kw);
    c.set_stride_h(g.sh);
    c.set_stride_w(g.sw);
    c.set_pad_top(g.pt);
    c.set_pad_bottom(g.pb);
    c.set_pad_left(g.pl);
    c.set_pad_right(g.pr);
    c.set_groups(1);
    const int oh = (g.h + g.pt + g.pb - g.kh) / g.sh + 1, ow = (g.w + g.pl + g.pr - g.kw) / g.sw + 1;
    const int batch = 3;
    const uint8_t zp = 7;
    std::vector<uint8_t> x(batch * g.h * g.w * g.c);
    for (uint8_t& v : x) v = static_cast<uint8_t>(byte(rng));
    Im2col im(c, {g.h, g.w, g.c}, {oh, ow, 1}, zp);
    EXPECT_EQ(im.pixels(), oh * ow);
    EXPECT_EQ(im.patch_size(), g.kh * g.kw * g.c);
    im.Reserve(batch);
    im.Run(x.data(), batch);
    const std::vector<uint8_t> want = Direct(g, batch, x, zp, oh, ow);
    const std::vector<uint8_t> got(im.patches(), im.patches() + want.size());
    int wrong = 0;
    for (size_t i = 0; i < want.size(); ++i) wrong += got[i] != want[i];
    EXPECT_EQ(wrong, 0) << g.kh << "x" << g.kw << " over " << g.c << " channels, stride " << g.sh << "x" << g.sw << ": "
                        << wrong << " of " << want.size() << " bytes wrong";
  }
}

}  // namespace
}  // namespace quant::backends
