// Winograd F(2x2, 3x3) for 3x3 stride-1 convolutions (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016): each 2x2 block of
// output pixels (a tile) comes from a 4x4 patch of the padded input as
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A,
// 16 multiplies per tile and input channel instead of 36 (2.25x fewer).
// Per element xi of the 4x4 transformed tile the products are one GEMM,
//   M_xi [Cout, tiles] = U_xi [Cout, Cin] x V_xi [Cin, tiles],
// run on the panel kernel (quant/nn/panel_gemm.h).
//
// The result is the convolution up to rounding, but not bit-identical to the
// direct (im2col) paths: the transforms add and halve before multiplying. So
// Conv2d takes it only when asked (`model: {winograd: true}`, see
// SetWinograd in conv2d.h). tests/nn/winograd_test.cc bounds its error
// against a double-precision direct convolution.
//
// Layout. The input transform works on 8 horizontally adjacent tiles at once:
// rows of a zero-padded copy of one input plane (16 * groups + 2 floats wide,
// so that every 16-wide load stays inside it) are split into even and odd
// columns, which are the tiles' columns 0 and 1 (columns 2 and 3: the same
// two floats on). Transformed tiles of a chunk of images go to
// V[xi][c][slot], slot = image * tiles + tile row * tiles_w + tile column; a
// group's 8 lanes may run into the next tile row's slots, which are written
// after it. The output transform reads 8 slots of every M_xi, interleaves the
// two columns of each tile row and stores 16-wide output rows; a row's last
// group may run into the rows after it (written later), except at the end
// of y, which goes through a buffer.
#ifndef QUANT_NN_WINOGRAD_H_
#define QUANT_NN_WINOGRAD_H_

#include <cstdint>
#include <vector>

namespace quant::nn {

class Winograd3x3 {
 public:
  // U_xi from a weight [out_channels][in_channels][3][3] (PyTorch's layout):
  // G g G^T in double, rounded to float once.
  void SetWeight(const float* weight, int64_t out_channels, int64_t in_channels);

  // y [batch][Cout][Ho][Wo] = bias[o] (none if null) + the cross-correlation
  // of x [batch][Cin][h][w], zero-padded by `pad` on every side, with the
  // weight of the last SetWeight; Ho = h + 2 pad - 2, Wo = w + 2 pad - 2
  // (both >= 1). With `clamp` ({lo, hi}) every output is stored as
  // min(hi, max(lo, v)) (a fused ReLU; see PanelRows).
  void Run(const float* x, int64_t batch, int64_t h, int64_t w, int64_t pad, const float* bias, float* y,
           const float* clamp = nullptr);

 private:
  int64_t cout_ = 0, cin_ = 0;
  std::vector<float> u_;      // [16][Cout][Cin]
  std::vector<float> v_;      // [16][Cin][ld] for a chunk of images
  std::vector<float> prod_;   // [16][Cout][ld]
  std::vector<float> plane_;  // one zero-padded input plane
};

}  // namespace quant::nn

#endif  // QUANT_NN_WINOGRAD_H_
