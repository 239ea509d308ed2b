// Conv2d over NCHW mini-batches, via im2col and GEMM (OpenBLAS) for groups = 1:
// col [C*k*k, n*P] for n images of P output pixels, Y [Cout, n*P] = W col.
//  - An image with >= 128 output pixels is its own chunk: its [Cout, P] result
//    is already its NCHW output, and its columns stay in cache.
//  - Smaller images are grouped into chunks of about 512 KB per buffer, and
//    the results are moved between [Cout, n, P] and [n, Cout, P].
// Backward in chunks of about 512 KB of columns (several images, so the dW
// GEMM has K = n*P): dW += dY col^T, col rebuilt (fast for stride 1: one
// zero-padded plane, then plain row copies) unless the whole batch was one
// forward chunk. dx: for stride 1 the convolution of dy with the flipped,
// transposed weight (an im2col of dy and one GEMM per image, straight into
// NCHW; for maps under 128 pixels one GEMM per backward chunk, then [C, n, P]
// -> [n, C, P]); otherwise dcol = W^T dY and col2im. Chunking depends only on
// the shapes, so results are reproducible; a chunk's scratch buffers only grow
// (a batch's smaller last chunk reuses them).
//
// Stride > 1: im2col and col2im go through the stride^2 phase planes of each
// zero-padded input plane (phase (p, q) holds padded[s*r + p][s*j + q]), in
// which every tap's output row is a contiguous run: row copies and adds
// instead of strided gathers and scatters, and no zero fill of dx.
//
// 1x1 kernels without padding (pointwise), stride 1: forward and dx run the
// 6x16 panel kernel below straight on the NCHW planes (B rows H*W apart, the
// last partial 16-column panel through a small zero-padded copy): no im2col,
// no per-image OpenBLAS call; this takes precedence over the direct path.
// dW is the chunked GEMM, its columns plain plane copies (subsampled rows for
// stride > 1, which otherwise takes the generic path).
//
// Stride 1 with an output row of 9..16 pixels (14x14 maps, CIFAR's 16x16):
// the forward product and the flipped-weight dx product skip OpenBLAS. Each
// output row is one panel of 16 columns (the row's pixels, then junk that is
// dropped), packed straight from a zero-padded copy of the input, and a small
// AVX2 kernel (6 or 4 weight rows x 16 columns, explicit FMA, accumulators
// starting at the bias) writes NCHW rows directly: no packing by the library,
// no bias pass. It ran 5-10 % faster than OpenBLAS on the cnn's conv2.
//
// A layer with very few columns per pixel (C*k*k <= 16, e.g. the first conv of
// a grey-scale net), stride 1 and k > 1 is computed directly instead (AVX2 over
// zero-padded planes): a GEMM with K = 9 runs far below the library's peak,
// and im2col would move 9x the data.
//
// With set_winograd (`model: {winograd: true}`), layers that pass
// WinogradLayer compute the forward product and the stride-1 input gradient
// by Winograd F(2x2, 3x3) (winograd.h) instead of the paths above; the weight
// gradient stays the im2col GEMM.
//
// Grouped convolution (PyTorch's `groups`): weight [Cout, Cin/groups, k, k],
// output channels [g*Cout/groups, (g+1)*Cout/groups) see input channels
// [g*Cin/groups, (g+1)*Cin/groups).
//  - 1 < groups < Cin: one groups = 1 Conv2d per group (every path above),
//    fed with the group's channels and weight rows, results copied back.
//  - Depthwise (groups == Cin > 1, Cout = multiplier * Cin): a dedicated
//    kernel, one input plane at a time. The plane is zero-padded and split
//    into stride x stride phase planes W' wide (phase (p, q) holds
//    padded[s*r + p][s*j + q]), so that tap (ki, kj) of output pixel (oh, ow)
//    is phase (ki % s, kj % s) at (oh + ki/s) * W' + ow + kj/s: an output row
//    is a few 8-wide blocks of one explicit FMA per tap (bias first, taps in
//    order), stored straight into y. dW: the same blocks with dy as the other
//    factor (eight float partial sums per tap and plane, then double). dx: the
//    correlation of dy (copied W' wide after a zero margin) with each phase's
//    taps, gathered rather than scattered: for stride 1 straight into dx, else
//    per phase and interleaved back.
//    On mobilenet_mini's shapes (batch 128, one core) it ran 2.7-3x (stride
//    1) and 4.7-5.8x (stride 2) faster than the per-group loop, forward and
//    backward (benchmarks/nn:conv_bench).
#ifndef QUANT_NN_CONV2D_H_
#define QUANT_NN_CONV2D_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/layer.h"
#include "quant/nn/winograd.h"

namespace quant::nn {

struct Conv2dOptions {
  int64_t in_channels = -1;  // < 0: from the input shape at Build
  int64_t out_channels = 0;
  int64_t kernel = 3;
  int64_t stride = 1;
  int64_t padding = 0;
  bool bias = true;
  // Channel groups (PyTorch's): in_channels and out_channels divisible by it.
  int64_t groups = 1;
};

class Conv2d : public Layer {
 public:
  Conv2d(std::string name, Conv2dOptions options);

  std::string Describe() const override;
  std::string type() const override { return "conv2d"; }
  std::string name_prefix() const override { return "conv"; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void ResetParameters(Rng& rng) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter*> parameters() override;
  int64_t ForwardFlopsPerSample() const override { return 2 * out_pixels() * group_cols(); }
  int64_t BackwardFlopsPerSample(bool input_grad) const override {
    return (input_grad ? 4 : 2) * out_pixels() * group_cols();
  }
  bool has_weight() const override { return true; }
  // Every path clamps: the row-panel, pointwise and Winograd kernels and the
  // direct loop as they store, the others in one pass over y at the end.
  // While on, Backward takes y as the clamped output and dy as its gradient
  // and masks dy first (Clamp's backward: where lo < y < hi); the direct
  // path does so as it copies dy, the others in one pass.
  bool SetOutputClamp(bool on, float lo, float hi) override;

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  const Conv2dOptions& options() const { return o_; }
  // groups == in_channels > 1 (PyTorch's depthwise convolution).
  bool depthwise() const { return o_.groups > 1 && o_.groups == o_.in_channels; }
  // For benchmarks and tests: run a depthwise layer through the per-group
  // loop of groups = 1 convolutions instead of its own kernel. Before Build.
  void set_force_group_loop(bool force) { force_group_loop_ = force; }
  // Winograd F(2x2, 3x3) (quant/nn/winograd.h) for the forward product and
  // the stride-1 input gradient, where the layer is eligible (WinogradLayer).
  // Faster on the cnn's conv2, but not bit-identical to the default paths.
  void set_winograd(bool on) { winograd_ = on; }
  // groups = 1, a 3x3 kernel, stride 1 and more than one input channel (a
  // grey-scale first layer keeps its direct kernel).
  bool WinogradLayer() const { return o_.groups == 1 && o_.kernel == 3 && o_.stride == 1 && o_.in_channels > 1; }

 private:
  // Columns per output pixel of the groups = 1 paths (only used with groups = 1).
  int64_t cols() const { return o_.in_channels * o_.kernel * o_.kernel; }
  // Multiply-adds per output pixel: Cin/groups * k * k.
  int64_t group_cols() const { return o_.in_channels / o_.groups * o_.kernel * o_.kernel; }
  bool UseGroupLoop() const { return o_.groups > 1 && (!depthwise() || force_group_loop_); }
  // The forward paths; true if the path applied the output clamp itself.
  bool ForwardPaths(const Tensor& x, Tensor* y);
  // The backward paths for the gradient dy of the layer's output (already
  // masked by the fused clamp), except that with `mask_y` (the direct path)
  // dy is the clamped output's gradient, masked by mask_y's values as it is
  // copied.
  void BackwardPaths(const Tensor& x, const Tensor& dy, Tensor* dx, const Tensor* mask_y);
  const float* clamp() const { return clamp_on_ ? clamp_ : nullptr; }
  void GroupForward(const Tensor& x, const Tensor& w, Tensor* y);
  void GroupBackward(const Tensor& x, const Tensor& dy, Tensor* dw, Tensor* dx);
  // Depthwise kernel (see the header comment); planes_ sized by DepthwiseGeometry.
  void DepthwiseGeometry();
  // Zero-padded phase planes of one input plane into planes_.
  void DepthwisePhases(const float* plane);
  void DepthwiseForward(const Tensor& x, const Tensor& w, Tensor* y);
  void DepthwiseBackward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dw, Tensor* dx);
  int64_t out_pixels() const { return o_.out_channels * out_h_ * out_w_; }
  void Im2Col(const float* image, Tensor* columns, int64_t column_offset, int64_t row_stride);
  void Col2Im(int64_t column_offset, int64_t row_stride, float* image);
  // Stride > 1: one input plane, zero-padded, into the stride^2 phase planes at ph.
  void SplitPhases(const float* plane, float* ph, int64_t phases);
  // Images per chunk for a batch of `batch` (even split, about kChunkFloats per buffer).
  int64_t ChunkImages(int64_t batch) const;
  // im2col of images [b0, b0 + n) into *columns ([cols, n*P]).
  void FillColumns(const Tensor& x, int64_t b0, int64_t n, Tensor* columns);
  // Images per Backward chunk: its columns fill about kChunkFloats.
  int64_t BackwardChunkImages(int64_t batch) const;
  // Adds the bias to `images` consecutive [Cout, p] outputs.
  void AddBias(float* out, int64_t images, int64_t p) const;
  void UnpackOutput(int64_t b0, int64_t n_img, int64_t n, Tensor* y) const;
  bool UseDirect() const { return o_.stride == 1 && cols() <= 16 && !Pointwise(); }
  // The direct loop is the path taken (grouped and depthwise layers take theirs first).
  bool DirectPath() const { return !UseGroupLoop() && !depthwise() && UseDirect(); }
  // The im2col paths' weight gradient as dW^T = col dY^T ([C*k*k, Cout]) and
  // a transpose: OpenBLAS (Haswell kernels) ran 7-25 % faster with the larger
  // dimension as M (16x144x784: 78 -> 97 GFLOP/s, 32x288x441: 96 -> 110,
  // 24x96x1274: 92 -> 102; one core). Not for row-panel layers with Cout >=
  // 32 (the cnn's conv2: its results stay bit-identical).
  bool TransposedWeightGrad() const {
    return cols() > o_.out_channels &&
           !(o_.stride == 1 && RowPanelLayer() && o_.out_channels >= 32);
  }
  // Stride-1 layers of this width take the row-panel kernel (conv2d.cc).
  bool RowPanelLayer() const { return out_w_ > 8 && out_w_ <= 16; }
  // 1x1 kernel without padding (a pointwise convolution).
  bool Pointwise() const { return o_.kernel == 1 && o_.padding == 0; }
  // Copies one image into in_pad_ with `padding` zeros around each plane.
  void PadImage(const float* image);
  void DirectForward(const Tensor& x, const Tensor& w, Tensor* y);
  void DirectBackward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dw, Tensor* dx,
                      const Tensor* mask_y = nullptr);

  Conv2dOptions o_;
  int64_t in_h_ = 0, in_w_ = 0, out_h_ = 0, out_w_ = 0;
  Parameter weight_{"weight"};
  Parameter bias_{"bias"};
  Tensor col_;      // [C*k*k, n*P] for a chunk of n images
  Tensor ybuf_;     // [Cout, n*P]
  Tensor dybuf_;    // [Cout, n*P]
  Tensor dcol_;     // [C*k*k, n*P]
  Tensor dxbuf_;    // stride 1, small maps: dx of a chunk as [C, n*H*W]
  Tensor dwt_;      // TransposedWeightGrad: dW^T [C*k*k, Cout]
  // Backward's columns (its chunks differ from Forward's: separate buffers,
  // so neither changes shape from step to step).
  Tensor bcol_;
  Tensor pad_plane_, dy_plane_;  // one zero-padded plane of x / dy for stride-1 im2col
  Tensor wflip_;  // stride 1: the flipped, transposed weight [C, Cout*k*k] for dx
  // Stride 1 and 8 < width <= 16: one image's columns (of x, of dy for dx) as
  // row panels for the packed kernel (see conv2d.cc).
  Tensor packed_, dpacked_;
  Tensor pw_tail_;  // pointwise kernel: the last partial 16-column panel
  // Stride > 1 im2col / col2im: the phase planes of one input plane (phase_hq_
  // x phase_wq_ each) and each input row's / column's offset in them.
  int64_t phase_hq_ = 0, phase_wq_ = 0;
  Tensor phase_plane_;
  std::vector<int64_t> phase_row_, phase_col_;
  Tensor panel_plane_;  // forward's padded planes (Backward rebuilds columns with pad_plane_)
  // col_ still holds the columns of the whole last forward batch (one chunk).
  bool col_holds_batch_ = false;
  std::vector<double> bias_sum_;
  // Direct path: padded input, output, dy and dx planes of one image, and per
  // (Cout, C, k, k) tap eight partial sums of the weight gradient.
  Tensor in_pad_, out_pad_, g_pad_, dx_pad_, tap_acc_;

  // 1 < groups, not the depthwise kernel: one groups = 1 layer per group, and
  // the group's slices of x, y, dy and dx.
  bool force_group_loop_ = false;
  bool winograd_ = false;
  // SetOutputClamp: {lo, hi} when on; the masked gradient (or one row of it).
  bool clamp_on_ = false;
  float clamp_[2] = {0.0f, 0.0f};
  Tensor masked_dy_, masked_row_;
  Winograd3x3 wino_, wino_dx_;  // forward; input gradient (flipped weight)
  std::vector<std::unique_ptr<Conv2d>> group_convs_;
  Tensor gx_, gy_, gdy_, gdx_;
  // Depthwise: phase planes are hq_ x wq_ (wq_ is also the row stride of an
  // output plane in the kernel's layout), phases_ = stride^2 of them per
  // input plane; dy of the `multiplier` outputs of one channel with a zero
  // margin of dmargin_ floats in front (dy_planes_), per-tap double sums of dW.
  int64_t hq_ = 0, wq_ = 0, phases_ = 0, plane_stride_ = 0, dmargin_ = 0;
  Tensor planes_, dy_planes_, dx_phase_;
  std::vector<int32_t> row_masks_;  // load masks of a padded row's blocks
  std::vector<double> dw_sum_;  // [Cout, k*k, 4]: four double lanes per tap
  std::vector<const float*> tap_src_, tap_x_;  // a kernel call's tap rows (of dy, of x) and weights
  std::vector<float> tap_w_;
  // dx's gathers (DepthwiseGeometry): taps [first_tap, first_tap + taps) of
  // dx_taps_ into rows x len (stride apart) at out_offset of dx (stride 1) or
  // dx_phase_; a tap reads dy_planes_ at dy_offset with weight w_index of its
  // channel's [multiplier, k, k] weights.
  struct DxGather {
    int64_t first_tap = 0, taps = 0, out_offset = 0, rows = 0, len = 0, stride = 0;
  };
  struct DxTap {
    int64_t dy_offset, w_index;
  };
  // Stride 2: dx pixels [out, out + 8) from the phase row at `first` and `second`.
  struct Interleave {
    int64_t out, first, second;
  };
  std::vector<DxGather> dx_gathers_;
  std::vector<DxTap> dx_taps_;
  std::vector<Interleave> dx_interleave_;
  std::vector<int64_t> dx_col_offset_;  // per dx column: its offset in the phase rows
};

// The `op:` plugin "conv2d": reads in_channels, out_channels (required),
// kernel, stride, padding, bias and groups; the graph names the layer.
absl::StatusOr<std::unique_ptr<Layer>> CreateConv2d(ParamReader& p);

}  // namespace quant::nn

#endif  // QUANT_NN_CONV2D_H_
