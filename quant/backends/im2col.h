// im2col for int8/uint8 NHWC convolutions with few input channels, shared by the
// xnnpack and onednn backends: their int8 conv kernels reduce over input channels in
// blocks (XNNPACK 8 bytes per tap, oneDNN 4 per VNNI lane over 16-64 channels), so a
// conv over 1..7 channels (a first layer on images) wastes most of each block. As
// im2col + a fully connected layer, the reduction is all kh*kw*C values of a patch.
// Padding uses the input zero point (a real zero), exactly like both libraries' own
// convolutions, and OHWI weights are already the [out][kh*kw*in] matrix: same results.
#ifndef QUANT_BACKENDS_IM2COL_H_
#define QUANT_BACKENDS_IM2COL_H_

#include <cstdint>
#include <vector>

#include "quant/backends/quantized_model.h"

namespace quant::backends {

// Convs with fewer input channels than this (and groups == 1) run as im2col + GEMM.
inline constexpr int kIm2colBelowChannels = 8;

class Im2col {
 public:
  // Bytes of slack after the padded image and the patch matrix: the one-channel 3x3 fast
  // path moves 4 bytes where a row holds 3, and XNNPACK reads up to XNN_EXTRA_BYTES past
  // its input (xnnpack_backend.cc asserts this covers it).
  static constexpr int64_t kSlack = 16;

  // For a conv with options `c` from per-sample input shape `in` [H, W, C] to `out`.
  Im2col(const Conv2DOptions& c, const Shape& in, const Shape& out, int32_t zero_point);
  int64_t pixels() const { return pixels_; }     // OH*OW per image
  int64_t patch_size() const { return patch_; }  // kh*kw*C
  // Sizes the patch matrix for `batch` images ([batch*OH*OW][kh*kw*C], plus slack).
  void Reserve(int64_t batch);
  uint8_t* patches() { return patches_.data(); }
  // Fills patches() from `batch` images at `src`.
  void Run(const uint8_t* src, int64_t batch);

 private:
  Conv2DOptions c_;
  int64_t h_, w_, ch_, oh_, ow_, pixels_, patch_;
  std::vector<uint8_t> padded_;  // one padded image, borders = the input zero point
  std::vector<uint8_t> patches_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_IM2COL_H_
