#include "quant/nn/conv2d.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/gemm.h"
#include "quant/nn/init.h"
#include "quant/nn/panel_gemm.h"

namespace quant::nn {

namespace {
// Sum of n floats in double, with sixteen independent partial sums in a fixed
// order (so the result is reproducible): a single running double sum is a
// chain of dependent adds, which cost more than the convolution's GEMMs.
double SumAsDouble(const float* p, int64_t n) {
  __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int l = 0; l < 4; ++l) {
      acc[l] = _mm256_add_pd(acc[l], _mm256_cvtps_pd(_mm_loadu_ps(p + i + 4 * l)));
    }
  }
  double lanes[4][4];
  for (int l = 0; l < 4; ++l) _mm256_storeu_pd(lanes[l], acc[l]);
  double sum = 0.0;
  for (int l = 0; l < 4; ++l) {
    for (int j = 0; j < 4; ++j) sum += lanes[l][j];
  }
  for (; i < n; ++i) sum += p[i];
  return sum;
}
// A [rows, n] scratch matrix (rows n floats apart) in *t, grown only: a
// batch's last, smaller chunk reuses the buffer instead of reallocating it
// (twice per step).
inline void EnsureRows(Tensor* t, int64_t rows, int64_t n) {
  if (t->numel() < rows * n) EnsureShape(t, {rows, n});
}
// Copies n floats (rows here are a few tens long): 8-wide, the last block
// overlapping the one before instead of a scalar tail.
// 4..7 floats: two 4-wide copies, the second overlapping (7x7 and 4x4 maps).
inline void CopyRow(const float* src, float* dst, int64_t n) {
  if (n < 8) {
    if (n >= 4) {
      const __m128 a = _mm_loadu_ps(src), b = _mm_loadu_ps(src + n - 4);
      _mm_storeu_ps(dst, a);
      _mm_storeu_ps(dst + n - 4, b);
      return;
    }
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, _mm256_loadu_ps(src + i));
  if (i < n) _mm256_storeu_ps(dst + n - 8, _mm256_loadu_ps(src + n - 8));
}
// Row-panel packing for stride 1 and 8 < output width <= 16 (e.g. 14x14 maps):
// panel oh (one output row) holds, for every column row r = (c, ki, kj), the
// 16 floats padded[c][(oh + ki) * wp + kj + 0..15] (the first out_w are the
// patch values, the rest junk from the next padded row, dropped on output):
// [out_h][C*k*k][16]. A packing copy per (r, oh) like im2col's, but laid out
// for PackedGemm, which then needs no packing of its own.
bool PackableWidth(int64_t out_w) { return out_w > 8 && out_w <= 16; }

void PackRowPanels(const float* image, int64_t channels, int64_t h, int64_t w, int64_t k,
                   int64_t pad, float* packed, Tensor* pad_plane) {
  const int64_t hp = h + 2 * pad, wp = w + 2 * pad, plane = hp * wp;
  const int64_t out_h = hp - k + 1, rows = channels * k * k;
  // All planes padded at once; the tail covers the junk lanes of the last one.
  EnsureShape(pad_plane, {channels * plane + 16});
  float* pp = pad_plane->data();
  std::fill(pp, pp + channels * plane + 16, 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t i = 0; i < h; ++i) CopyRow(image + (c * h + i) * w, pp + c * plane + (i + pad) * wp + pad, w);
  }
  for (int64_t oh = 0; oh < out_h; ++oh) {
    float* dst = packed + oh * rows * 16;
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t ki = 0; ki < k; ++ki) {
        const float* src = pp + c * plane + (oh + ki) * wp;
        for (int64_t kj = 0; kj < k; ++kj, dst += 16) {
          _mm256_storeu_ps(dst, _mm256_loadu_ps(src + kj));
          _mm256_storeu_ps(dst + 8, _mm256_loadu_ps(src + kj + 8));
        }
      }
    }
  }
}

// C[m][out_h * out_w] = init[i] (or 0) + A[m x kdim] (row-major, lda) times
// the row panels of PackRowPanels: C is the NCHW output of one image. Panels
// go in order, so a row's 16-wide store may run into the next output row,
// which is written later; the last panel goes through a small buffer.
void PackedGemm(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* packed,
                int64_t out_h, int64_t out_w, float* c, const float* clamp = nullptr) {
  const int64_t p = out_h * out_w;
  for (int64_t oh = 0; oh < out_h; ++oh) {
    const float* panel = packed + oh * kdim * 16;
    const bool spill = oh + 1 < out_h;
    PanelRows(m, kdim, a, lda, init, panel, 16, c + oh * out_w, p, out_w, spill, clamp);
  }
}

// 1x1 stride-1 convolution of one image straight from NCHW, no packing:
// C[m][ncols] = init[i] (or 0) + A[m x kdim] (row-major, lda) times B[kdim x
// ncols] (rows ldb apart, e.g. an image's planes), in panels of 16 columns
// read in place; the last partial panel is copied into `tail` ([kdim][16],
// zero-padded) so that no load runs past B.
void PointwiseGemm(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* b, int64_t ldb,
                   int64_t ncols, float* c, int64_t ldc, Tensor* tail, const float* clamp = nullptr) {
  for (int64_t j0 = 0; j0 < ncols; j0 += 16) {
    const int64_t width = std::min<int64_t>(16, ncols - j0);
    if (width == 16) {
      PanelRows(m, kdim, a, lda, init, b + j0, ldb, c + j0, ldc, 16, /*spill=*/true, clamp);
      continue;
    }
    // Grown only (forward and dx differ in kdim): no reallocation from step to step.
    if (tail->numel() < kdim * 16) EnsureShape(tail, {kdim * 16});
    float* t = tail->data();
    for (int64_t r = 0; r < kdim; ++r) {
      for (int64_t j = 0; j < 16; ++j) t[r * 16 + j] = j < width ? b[r * ldb + j0 + j] : 0.0f;
    }
    PanelRows(m, kdim, a, lda, init, t, 16, c + j0, ldc, width, /*spill=*/false, clamp);
  }
}
}  // namespace

// Stride 1: each plane is copied once into a zero-padded plane, after which
// every row of a patch row is one contiguous copy (no bounds checks).
static void Im2ColStride1(const float* image, int64_t channels, int64_t h, int64_t w, int64_t k,
                   int64_t pad, float* col, int64_t row_stride, Tensor* pad_plane) {
  const int64_t hp = h + 2 * pad, wp = w + 2 * pad;
  const int64_t out_h = hp - k + 1, out_w = wp - k + 1;
  EnsureShape(pad_plane, {hp * wp});
  float* pp = pad_plane->data();
  std::fill(pp, pp + hp * wp, 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    const float* plane = image + c * h * w;
    for (int64_t i = 0; i < h; ++i) CopyRow(plane + i * w, pp + (i + pad) * wp + pad, w);
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* dst = col + ((c * k + ki) * k + kj) * row_stride;
        const float* src = pp + ki * wp + kj;
        for (int64_t oh = 0; oh < out_h; ++oh) CopyRow(src + oh * wp, dst + oh * out_w, out_w);
      }
    }
  }
}

Conv2d::Conv2d(std::string name, Conv2dOptions options) : Layer(std::move(name)), o_(options) {}

std::string Conv2d::Describe() const {
  return absl::StrCat("Conv2d(", o_.in_channels, ", ", o_.out_channels, ", kernel=", o_.kernel,
                      ", stride=", o_.stride, ", padding=", o_.padding,
                      o_.groups != 1 ? absl::StrCat(", groups=", o_.groups) : "",
                      o_.bias ? "" : ", bias=false", ")");
}

absl::StatusOr<Shape> Conv2d::Build(const Shape& input) {
  if (o_.out_channels <= 0 || o_.kernel <= 0 || o_.stride <= 0 || o_.padding < 0 ||
      o_.groups <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "needs out_channels, kernel, stride, groups > 0 and padding >= 0; has ", Describe()));
  }
  if (input.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects an input [C, H, W] but gets ", ShapeToString(input)));
  }
  if (o_.in_channels < 0) o_.in_channels = input[0];
  if (input[0] != o_.in_channels) {
    return absl::InvalidArgumentError(absl::StrCat("expects input [", o_.in_channels,
                                                   ", H, W] but gets ", ShapeToString(input)));
  }
  if (o_.in_channels % o_.groups != 0 || o_.out_channels % o_.groups != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "in_channels (", o_.in_channels, ") and out_channels (", o_.out_channels,
        ") must both be divisible by groups (", o_.groups, "); has input ", ShapeToString(input),
        " for ", Describe()));
  }
  in_h_ = input[1];
  in_w_ = input[2];
  out_h_ = (in_h_ + 2 * o_.padding - o_.kernel) / o_.stride + 1;
  out_w_ = (in_w_ + 2 * o_.padding - o_.kernel) / o_.stride + 1;
  if (in_h_ + 2 * o_.padding < o_.kernel || in_w_ + 2 * o_.padding < o_.kernel) {
    return absl::InvalidArgumentError(absl::StrCat("kernel ", o_.kernel, " does not fit input ",
                                                   ShapeToString(input), " with padding ",
                                                   o_.padding));
  }
  phase_row_.clear();
  phase_col_.clear();
  if (o_.stride > 1) {
    // Phase planes of the zero-padded input (Im2Col, Col2Im): pixel (ih, iw)
    // is padded (r, q) = (ih + pad, iw + pad), stored in phase (r % s, q % s)
    // at (r / s, q / s).
    const int64_t st = o_.stride, pad = o_.padding;
    phase_hq_ = (in_h_ + 2 * pad + st - 1) / st;
    phase_wq_ = (in_w_ + 2 * pad + st - 1) / st;
    const int64_t plane = phase_hq_ * phase_wq_;
    for (int64_t ih = 0; ih < in_h_; ++ih) {
      const int64_t r = ih + pad;
      phase_row_.push_back((r % st) * st * plane + (r / st) * phase_wq_);
    }
    for (int64_t iw = 0; iw < in_w_; ++iw) {
      const int64_t q = iw + pad;
      phase_col_.push_back((q % st) * plane + q / st);
    }
  }
  if (absl::Status s = CheckParameterFits(Describe(), {o_.out_channels, o_.in_channels / o_.groups, o_.kernel, o_.kernel});
      !s.ok()) {
    return s;
  }
  weight_.Allocate({o_.out_channels, o_.in_channels / o_.groups, o_.kernel, o_.kernel});
  if (o_.bias) bias_.Allocate({o_.out_channels});
  group_convs_.clear();
  if (UseGroupLoop()) {
    Conv2dOptions g = o_;
    g.in_channels = o_.in_channels / o_.groups;
    g.out_channels = o_.out_channels / o_.groups;
    g.groups = 1;
    for (int64_t i = 0; i < o_.groups; ++i) {
      group_convs_.push_back(std::make_unique<Conv2d>(absl::StrCat(name(), ".group", i), g));
      absl::StatusOr<Shape> out = group_convs_.back()->Build({g.in_channels, in_h_, in_w_});
      if (!out.ok()) return out.status();
    }
  } else if (depthwise()) {
    DepthwiseGeometry();
  }
  return Shape{o_.out_channels, out_h_, out_w_};
}

void Conv2d::ResetParameters(Rng& rng) {
  // PyTorch: fan_in = in_channels / groups * k * k, for the weight and the bias.
  const float bound = KaimingUniformBound(group_cols());
  FillUniform(&weight_.value, bound, rng);
  if (o_.bias) FillUniform(&bias_.value, bound, rng);
}

std::vector<Parameter*> Conv2d::parameters() {
  if (o_.bias) return {&weight_, &bias_};
  return {&weight_};
}

// Writes the patches of one image into columns [column_offset, column_offset + P)
// of *columns, whose rows are `row_stride` floats apart.
void Conv2d::Im2Col(const float* image, Tensor* columns, int64_t column_offset, int64_t row_stride) {
  if (Pointwise()) {
    // 1x1 without padding: each column row is a plane (stride 1) or its every s-th pixel.
    const int64_t s = o_.stride, p = out_h_ * out_w_;
    for (int64_t c = 0; c < o_.in_channels; ++c) {
      const float* plane = image + c * in_h_ * in_w_;
      float* dst = columns->data() + c * row_stride + column_offset;
      if (s == 1) {
        std::memcpy(dst, plane, p * sizeof(float));
        continue;
      }
      for (int64_t oh = 0; oh < out_h_; ++oh) {
        const float* row = plane + oh * s * in_w_;
        for (int64_t ow = 0; ow < out_w_; ++ow) dst[oh * out_w_ + ow] = row[ow * s];
      }
    }
    return;
  }
  if (o_.stride == 1) {
    Im2ColStride1(image, o_.in_channels, in_h_, in_w_, o_.kernel, o_.padding,
                  columns->data() + column_offset, row_stride, &pad_plane_);
    return;
  }
  const int64_t k = o_.kernel, s = o_.stride, pad = o_.padding;
  float* col = columns->data();
  if (!phase_row_.empty()) {
    // Stride s > 1 through phase planes: tap (ki, kj) of output row oh is the
    // contiguous run of phase (ki % s, kj % s) at row oh + ki / s, column kj / s.
    const int64_t plane = phase_hq_ * phase_wq_, phases = s * s * plane;
    EnsureShape(&phase_plane_, {phases});
    float* ph = phase_plane_.data();
    for (int64_t c = 0; c < o_.in_channels; ++c) {
      SplitPhases(image + c * in_h_ * in_w_, ph, phases);
      for (int64_t ki = 0; ki < k; ++ki) {
        for (int64_t kj = 0; kj < k; ++kj) {
          float* dst = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
          const float* src = ph + ((ki % s) * s + kj % s) * plane + (ki / s) * phase_wq_ + kj / s;
          for (int64_t oh = 0; oh < out_h_; ++oh) CopyRow(src + oh * phase_wq_, dst + oh * out_w_, out_w_);
        }
      }
    }
    return;
  }
  for (int64_t c = 0; c < o_.in_channels; ++c) {
    const float* plane = image + c * in_h_ * in_w_;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* dst = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
        // Output columns ow whose input column ow*s - pad + kj lies inside [0, in_w).
        const int64_t ow_lo = std::min(out_w_, std::max<int64_t>(0, (pad - kj + s - 1) / s));
        const int64_t ow_hi =
            std::max(ow_lo, std::min(out_w_, (in_w_ + pad - kj + s - 1) / s));
        for (int64_t oh = 0; oh < out_h_; ++oh) {
          float* d = dst + oh * out_w_;
          const int64_t ih = oh * s - pad + ki;
          // Rows are short (tens of floats): plain loops, which the compiler
          // vectorises, beat calls to memset/memcpy here.
          if (ih < 0 || ih >= in_h_) {
            for (int64_t ow = 0; ow < out_w_; ++ow) d[ow] = 0.0f;
            continue;
          }
          const float* row = plane + ih * in_w_;
          for (int64_t ow = 0; ow < ow_lo; ++ow) d[ow] = 0.0f;
          if (s == 1) {
            const float* r = row - pad + kj;
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow] = r[ow];
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow] = row[ow * s - pad + kj];
          }
          for (int64_t ow = ow_hi; ow < out_w_; ++ow) d[ow] = 0.0f;
        }
      }
    }
  }
}

void Conv2d::SplitPhases(const float* plane, float* ph, int64_t phases) {
  std::fill(ph, ph + phases, 0.0f);
  for (int64_t ih = 0; ih < in_h_; ++ih) {
    float* d = ph + phase_row_[ih];
    const float* src = plane + ih * in_w_;
    for (int64_t iw = 0; iw < in_w_; ++iw) d[phase_col_[iw]] = src[iw];
  }
}

// Adds the column gradients dcol_ of one image back onto its pixels (image
// must be zeroed for stride 1; with stride > 1 it is overwritten). Each
// pixel's terms are added in (ki, kj, oh, ow) order from 0 on both paths.
void Conv2d::Col2Im(int64_t column_offset, int64_t row_stride, float* image) {
  const int64_t k = o_.kernel, s = o_.stride, pad = o_.padding;
  const float* col = dcol_.data();
  if (!phase_row_.empty()) {
    // Stride s > 1: accumulate into the phase planes (contiguous runs, as in
    // Im2Col), then gather every pixel from its phase.
    const int64_t plane = phase_hq_ * phase_wq_, phases = s * s * plane;
    EnsureShape(&phase_plane_, {phases});
    float* ph = phase_plane_.data();
    for (int64_t c = 0; c < o_.in_channels; ++c) {
      std::fill(ph, ph + phases, 0.0f);
      for (int64_t ki = 0; ki < k; ++ki) {
        for (int64_t kj = 0; kj < k; ++kj) {
          const float* src = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
          float* dst = ph + ((ki % s) * s + kj % s) * plane + (ki / s) * phase_wq_ + kj / s;
          for (int64_t oh = 0; oh < out_h_; ++oh) {
            float* d = dst + oh * phase_wq_;
            const float* sr = src + oh * out_w_;
            for (int64_t ow = 0; ow < out_w_; ++ow) d[ow] += sr[ow];
          }
        }
      }
      float* out = image + c * in_h_ * in_w_;
      for (int64_t ih = 0; ih < in_h_; ++ih) {
        const float* sp = ph + phase_row_[ih];
        float* d = out + ih * in_w_;
        for (int64_t iw = 0; iw < in_w_; ++iw) d[iw] = sp[phase_col_[iw]];
      }
    }
    return;
  }
  for (int64_t c = 0; c < o_.in_channels; ++c) {
    float* plane = image + c * in_h_ * in_w_;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        const float* src = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
        const int64_t ow_lo = std::min(out_w_, std::max<int64_t>(0, (pad - kj + s - 1) / s));
        const int64_t ow_hi =
            std::max(ow_lo, std::min(out_w_, (in_w_ + pad - kj + s - 1) / s));
        for (int64_t oh = 0; oh < out_h_; ++oh) {
          const int64_t ih = oh * s - pad + ki;
          if (ih < 0 || ih >= in_h_) continue;
          const float* sr = src + oh * out_w_;
          float* row = plane + ih * in_w_;
          if (s == 1) {
            float* r = row - pad + kj;
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) r[ow] += sr[ow];
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) row[ow * s - pad + kj] += sr[ow];
          }
        }
      }
    }
  }
}

namespace {
// Target size of each chunk buffer, in floats (512 KB): the columns of a chunk
// stay in L2 between im2col and the GEMM that reads them, which measured
// faster than fewer, larger GEMMs over columns that spill to memory.
constexpr int64_t kChunkFloats = 1 << 17;
// Output pixels per image from which each image is its own chunk.
constexpr int64_t kPerImagePixels = 128;

}  // namespace

int64_t Conv2d::ChunkImages(int64_t batch) const {
  // With enough pixels per image, one image per GEMM is efficient and its
  // [Cout, P] result is already the image's NCHW output: no layout changes.
  if (out_h_ * out_w_ >= kPerImagePixels) return 1;
  const int64_t per_image = std::max(cols(), o_.out_channels) * out_h_ * out_w_;
  const int64_t max_images = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, per_image));
  const int64_t chunks = (batch + max_images - 1) / max_images;
  return (batch + chunks - 1) / chunks;
}

void Conv2d::FillColumns(const Tensor& x, int64_t b0, int64_t n, Tensor* columns) {
  const int64_t p = out_h_ * out_w_;
  const int64_t image_size = o_.in_channels * in_h_ * in_w_;
  EnsureRows(columns, cols(), n * p);
  for (int64_t b = 0; b < n; ++b) Im2Col(x.data() + (b0 + b) * image_size, columns, b * p, n * p);
}

// The direct path works on zero-padded planes of width wp = W + 2 * pad: an
// output pixel (oh, ow) stored at oh * wp + ow reads tap (ki, kj) at
// (oh + ki) * wp + ow + kj of the padded input, a constant shift. So each tap
// is one long element-wise loop over the plane (the compiler vectorises it);
// the wp - Wo extra columns per row are computed and dropped.

void Conv2d::PadImage(const float* image) {
  const int64_t pad = o_.padding, hp = in_h_ + 2 * pad, wp = in_w_ + 2 * pad;
  // The tail lets 8-wide loads run past the last pixel of the last plane.
  EnsureShape(&in_pad_, {o_.in_channels * hp * wp + o_.kernel + 8});
  in_pad_.Fill(0.0f);
  for (int64_t c = 0; c < o_.in_channels; ++c) {
    for (int64_t h = 0; h < in_h_; ++h) {
      const float* src = image + (c * in_h_ + h) * in_w_;
      float* dst = in_pad_.data() + (c * hp + h + pad) * wp + pad;
      CopyRow(src, dst, in_w_);
    }
  }
}

// Offsets of the taps (c, ki, kj) in the padded input, in weight order.
static void TapShifts(int64_t cin, int64_t k, int64_t hp, int64_t wp, int64_t* shift) {
  for (int64_t c = 0; c < cin; ++c) {
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) shift[(c * k + ki) * k + kj] = c * hp * wp + ki * wp + kj;
    }
  }
}

namespace {
// The inner loops of the direct path. T > 0 is the tap count known at compile
// time (9 for a 3x3 single-channel conv): the tap loops unroll and the eight
// weights / partial sums stay in registers; with the count only known at run
// time (T = 0) GCC keeps them on the stack, a load (and a store) per FMA.
template <int T>
void DirectTapsForward(const float* in, const int64_t* shift, const float* wrow, int64_t taps,
                       float bias, float* acc, int64_t span8) {
  const int64_t nt = T > 0 ? T : taps;
  __m256 wv[T > 0 ? T : 16];
#pragma GCC unroll 16
  for (int64_t t = 0; t < nt; ++t) wv[t] = _mm256_set1_ps(wrow[t]);
  const __m256 bv = _mm256_set1_ps(bias);
  for (int64_t i = 0; i < span8; i += 8) {
    __m256 a = bv;
#pragma GCC unroll 16
    for (int64_t t = 0; t < nt; ++t) a = _mm256_fmadd_ps(wv[t], _mm256_loadu_ps(in + shift[t] + i), a);
    _mm256_storeu_ps(acc + i, a);
  }
}

template <int T>
void DirectTapsBackward(const float* in, const int64_t* shift, const float* g, int64_t taps,
                        float* acc_mem, int64_t span8) {
  const int64_t nt = T > 0 ? T : taps;
  __m256 acc[T > 0 ? T : 16];
#pragma GCC unroll 16
  for (int64_t t = 0; t < nt; ++t) acc[t] = _mm256_loadu_ps(acc_mem + 8 * t);
  for (int64_t i = 0; i < span8; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
#pragma GCC unroll 16
    for (int64_t t = 0; t < nt; ++t) {
      acc[t] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(in + shift[t] + i), acc[t]);
    }
  }
#pragma GCC unroll 16
  for (int64_t t = 0; t < nt; ++t) _mm256_storeu_ps(acc_mem + 8 * t, acc[t]);
}
}  // namespace

// Eight output pixels at a time, all taps summed in a register: the sum is
// bias + w0 x0 + w1 x1 + ... in tap order, one explicit FMA per tap (the same
// on every AVX2 machine; the GEMMs of the other layers use FMA too).
void Conv2d::DirectForward(const Tensor& x, const Tensor& w, Tensor* y) {
  const int64_t batch = x.dim(0), cout = o_.out_channels, taps = cols();
  const int64_t pad = o_.padding, hp = in_h_ + 2 * pad, wp = in_w_ + 2 * pad;
  const int64_t p = out_h_ * out_w_, image = o_.in_channels * in_h_ * in_w_;
  const int64_t span = out_h_ * wp, span8 = (span + 7) / 8 * 8;
  int64_t shift[16];
  TapShifts(o_.in_channels, o_.kernel, hp, wp, shift);
  EnsureShape(&out_pad_, {span8});
  for (int64_t b = 0; b < batch; ++b) {
    PadImage(x.data() + b * image);
    const float* in = in_pad_.data();
    for (int64_t co = 0; co < cout; ++co) {
      const float bias = o_.bias ? bias_.value[co] : 0.0f;
      float* acc = out_pad_.data();
      if (taps == 9) {
        DirectTapsForward<9>(in, shift, w.data() + co * taps, taps, bias, acc, span8);
      } else {
        DirectTapsForward<0>(in, shift, w.data() + co * taps, taps, bias, acc, span8);
      }
      float* out = y->data() + (b * cout + co) * p;
      for (int64_t oh = 0; oh < out_h_; ++oh) {
        if (clamp_on_) {
          ClampValues(acc + oh * wp, out + oh * out_w_, out_w_, clamp_[0], clamp_[1]);
        } else {
          CopyRow(acc + oh * wp, out + oh * out_w_, out_w_);
        }
      }
    }
  }
}

void Conv2d::DirectBackward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dw, Tensor* dx,
                            const Tensor* mask_y) {
  const int64_t batch = x.dim(0), cin = o_.in_channels, cout = o_.out_channels, taps = cols();
  const int64_t pad = o_.padding, hp = in_h_ + 2 * pad, wp = in_w_ + 2 * pad;
  const int64_t p = out_h_ * out_w_, image = cin * in_h_ * in_w_;
  const int64_t span = out_h_ * wp, span8 = (span + 7) / 8 * 8;
  int64_t shift[16];
  TapShifts(cin, o_.kernel, hp, wp, shift);
  // Weight gradient: eight partial sums per (co, tap) over the whole batch,
  // added up in double at the end.
  EnsureShape(&tap_acc_, {cout * taps * 8});
  tap_acc_.Fill(0.0f);
  EnsureShape(&g_pad_, {span8});
  if (dx != nullptr) EnsureShape(&dx_pad_, {cin * hp * wp + o_.kernel + 8});
  for (int64_t b = 0; b < batch; ++b) {
    PadImage(x.data() + b * image);
    const float* in = in_pad_.data();
    if (dx != nullptr) dx_pad_.Fill(0.0f);
    for (int64_t co = 0; co < cout; ++co) {
      // dy in the padded row layout, zero in the dropped columns and the tail.
      float* g = g_pad_.data();
      const float* src = dy.data() + (b * cout + co) * p;
      if (mask_y != nullptr) {
        // dy of the fused clamp's output: masked by its values into a row
        // buffer, whose sum is the bias gradient's term (the sums of the
        // unfused path, in its order: per channel over the images).
        EnsureShape(&masked_row_, {p});
        ClampGradient(mask_y->data() + (b * cout + co) * p, src, masked_row_.data(), p, clamp_[0], clamp_[1]);
        src = masked_row_.data();
        if (o_.bias) bias_sum_[co] += SumAsDouble(src, p);
      }
      for (int64_t oh = 0; oh < out_h_; ++oh) {
        CopyRow(src + oh * out_w_, g + oh * wp, out_w_);
        for (int64_t ow = out_w_; ow < wp; ++ow) g[oh * wp + ow] = 0.0f;
      }
      for (int64_t i = span; i < span8; ++i) g[i] = 0.0f;
      float* acc_mem = tap_acc_.data() + co * taps * 8;
      if (taps == 9) {
        DirectTapsBackward<9>(in, shift, g, taps, acc_mem, span8);
      } else {
        DirectTapsBackward<0>(in, shift, g, taps, acc_mem, span8);
      }
      if (dx != nullptr) {
        for (int64_t t = 0; t < taps; ++t) {
          const float wv = w[co * taps + t];
          float* d = dx_pad_.data() + shift[t];
          for (int64_t i = 0; i < span; ++i) d[i] += wv * g[i];
        }
      }
    }
    if (dx != nullptr) {
      for (int64_t c = 0; c < cin; ++c) {
        for (int64_t h = 0; h < in_h_; ++h) {
          const float* s = dx_pad_.data() + (c * hp + h + pad) * wp + pad;
          float* d = dx->data() + b * image + (c * in_h_ + h) * in_w_;
          CopyRow(s, d, in_w_);
        }
      }
    }
  }
  for (int64_t t = 0; t < cout * taps; ++t) {
    double sum = 0.0;
    for (int64_t l = 0; l < 8; ++l) sum += tap_acc_[t * 8 + l];
    (*dw)[t] = static_cast<float>(sum);
  }
}

int64_t Conv2d::BackwardChunkImages(int64_t batch) const {
  const int64_t per_image = cols() * out_h_ * out_w_;
  const int64_t max_images = std::max<int64_t>(1, kChunkFloats / std::max<int64_t>(1, per_image));
  const int64_t chunks = (batch + max_images - 1) / max_images;
  return (batch + chunks - 1) / chunks;
}

void Conv2d::AddBias(float* out, int64_t images, int64_t p) const {
  if (!o_.bias) return;
  for (int64_t b = 0; b < images; ++b) {
    for (int64_t co = 0; co < o_.out_channels; ++co) {
      const float bias = bias_.value[co];
      float* d = out + (b * o_.out_channels + co) * p;
      for (int64_t i = 0; i < p; ++i) d[i] += bias;
    }
  }
}

// ybuf_ [Cout, n_img, P] (rows n floats apart) -> y images [b0, b0 + n_img), adding the bias.
void Conv2d::UnpackOutput(int64_t b0, int64_t n_img, int64_t n, Tensor* y) const {
  const int64_t p = out_h_ * out_w_;
  for (int64_t co = 0; co < o_.out_channels; ++co) {
    const float bias = o_.bias ? bias_.value[co] : 0.0f;
    const float* src = ybuf_.data() + co * n;
    for (int64_t b = 0; b < n_img; ++b) {
      const float* s = src + b * p;
      float* d = y->data() + ((b0 + b) * o_.out_channels + co) * p;
      for (int64_t i = 0; i < p; ++i) d[i] = s[i] + bias;
    }
  }
}

bool Conv2d::SetOutputClamp(bool on, float lo, float hi) {
  clamp_on_ = on;
  clamp_[0] = lo;
  clamp_[1] = hi;
  return true;
}

void Conv2d::Forward(const Tensor& x, Tensor* y) {
  if (!ForwardPaths(x, y) && clamp_on_) ClampValues(y->data(), y->data(), y->numel(), clamp_[0], clamp_[1]);
}

bool Conv2d::ForwardPaths(const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  const int64_t p = out_h_ * out_w_;
  const int64_t chunk = ChunkImages(batch);
  EnsureShape(y, {batch, o_.out_channels, out_h_, out_w_});
  const Tensor& w = EffectiveWeight(weight_);
  if (UseGroupLoop()) {
    GroupForward(x, w, y);
    return false;
  }
  if (depthwise()) {
    DepthwiseForward(x, w, y);
    return false;
  }
  if (winograd_ && WinogradLayer()) {
    wino_.SetWeight(w.data(), o_.out_channels, o_.in_channels);
    wino_.Run(x.data(), batch, in_h_, in_w_, o_.padding, o_.bias ? bias_.value.data() : nullptr, y->data(), clamp());
    col_holds_batch_ = false;
    return true;
  }
  if (DirectPath()) {
    DirectForward(x, w, y);
    return true;
  }
  if (Pointwise() && o_.stride == 1) {
    const int64_t image_size = o_.in_channels * p;
    for (int64_t b = 0; b < batch; ++b) {
      PointwiseGemm(o_.out_channels, o_.in_channels, w.data(), o_.in_channels, o_.bias ? bias_.value.data() : nullptr,
                    x.data() + b * image_size, p, p, y->data() + b * o_.out_channels * p, p, &pw_tail_, clamp());
    }
    col_holds_batch_ = false;
    return true;
  }
  if (o_.stride == 1 && PackableWidth(out_w_)) {
    const int64_t image_size = o_.in_channels * in_h_ * in_w_;
    EnsureShape(&packed_, {out_h_ * cols() * 16});
    for (int64_t b = 0; b < batch; ++b) {
      PackRowPanels(x.data() + b * image_size, o_.in_channels, in_h_, in_w_, o_.kernel, o_.padding,
                    packed_.data(), &panel_plane_);
      PackedGemm(o_.out_channels, cols(), w.data(), cols(), o_.bias ? bias_.value.data() : nullptr, packed_.data(),
                 out_h_, out_w_, y->data() + b * o_.out_channels * p, clamp());
    }
    col_holds_batch_ = false;
    return true;
  }
  if (chunk == 1) {
    for (int64_t b = 0; b < batch; ++b) {
      FillColumns(x, b, 1, &col_);
      float* out = y->data() + b * o_.out_channels * p;
      Sgemm(false, false, o_.out_channels, p, cols(), 1.0f, w.data(), cols(), col_.data(), p, 0.0f,
            out, p);
      AddBias(out, 1, p);
    }
    col_holds_batch_ = batch == 1;
    return false;
  }
  for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
    const int64_t n_img = std::min(chunk, batch - b0);
    const int64_t n = n_img * p;
    FillColumns(x, b0, n_img, &col_);
    EnsureRows(&ybuf_, o_.out_channels, n);
    Sgemm(false, false, o_.out_channels, n, cols(), 1.0f, w.data(), cols(), col_.data(), n, 0.0f,
          ybuf_.data(), n);
    UnpackOutput(b0, n_img, n, y);
  }
  col_holds_batch_ = chunk >= batch;
  return false;
}

void Conv2d::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (!clamp_on_) {
    BackwardPaths(x, dy, dx, nullptr);
  } else if (DirectPath()) {
    // The direct loop copies every row of dy anyway (for dW, db and dx): it
    // masks them as it copies, no pass of its own.
    BackwardPaths(x, dy, dx, &y);
  } else {
    EnsureShape(&masked_dy_, dy.shape());
    ClampGradient(y.data(), dy.data(), masked_dy_.data(), dy.numel(), clamp_[0], clamp_[1]);
    BackwardPaths(x, masked_dy_, dx, nullptr);
  }
}

void Conv2d::BackwardPaths(const Tensor& x, const Tensor& dy, Tensor* dx, const Tensor* mask_y) {
  const int64_t batch = x.dim(0);
  const int64_t p = out_h_ * out_w_;
  const int64_t image_size = o_.in_channels * in_h_ * in_w_;
  Tensor* dw = EffectiveWeightGrad(weight_);
  const Tensor& w = LastEffectiveWeight(weight_);
  bias_sum_.assign(o_.out_channels, 0.0);  // capacity is kept
  if (dx != nullptr) EnsureShape(dx, x.shape());
  if (UseGroupLoop() || depthwise()) {
    if (UseGroupLoop()) {
      GroupBackward(x, dy, dw, dx);
    } else {
      DepthwiseBackward(x, w, dy, dw, dx);
    }
    FinishWeightGrad(weight_);
    return;
  }
  if (DirectPath()) {
    DirectBackward(x, w, dy, dw, dx, mask_y);
    if (o_.bias) {
      for (int64_t co = 0; co < o_.out_channels; ++co) {
        double sum = 0.0;
        if (mask_y != nullptr) {
          sum = bias_sum_[co];  // DirectBackward's, over the masked rows in the same order
        } else {
          for (int64_t b = 0; b < batch; ++b) sum += SumAsDouble(dy.data() + (b * o_.out_channels + co) * p, p);
        }
        bias_.grad[co] = static_cast<float>(sum);
      }
    }
    FinishWeightGrad(weight_);
    return;
  }
  const int64_t cout = o_.out_channels, cin = o_.in_channels, k = o_.kernel, kk = k * k;
  // Stride 1: dx is the convolution of dy (padded by k - 1 - padding) with the
  // flipped, transposed weight W'[c, (co, a, b)] = W[co, c, k-1-a, k-1-b]: an
  // im2col of dy and a GEMM straight into dx, no col2im.
  const bool flipped_dx = dx != nullptr && o_.stride == 1 && o_.padding <= k - 1;
  const int64_t flip_rows = cout * kk, hw = in_h_ * in_w_;
  if (flipped_dx) {
    EnsureShape(&wflip_, {cin, flip_rows});
    for (int64_t co = 0; co < cout; ++co) {
      for (int64_t c = 0; c < cin; ++c) {
        for (int64_t t = 0; t < kk; ++t) {
          wflip_[c * flip_rows + co * kk + t] = w[(co * cin + c) * kk + kk - 1 - t];
        }
      }
    }
  }
  const bool winograd_dx = flipped_dx && winograd_ && WinogradLayer() && o_.out_channels > 1;
  if (winograd_dx) wino_dx_.SetWeight(wflip_.data(), cin, cout);
  const bool dw_transposed = TransposedWeightGrad();
  if (dw_transposed) EnsureShape(&dwt_, {cols(), cout});
  const int64_t bchunk = col_holds_batch_ ? batch : BackwardChunkImages(batch);
  const int64_t ld_col = col_holds_batch_ ? batch * p : 0;
  for (int64_t b0 = 0; b0 < batch; b0 += bchunk) {
    const int64_t n_img = std::min(bchunk, batch - b0);
    const int64_t n = n_img * p;
    // [n, Cout, P] -> [Cout, n, P]; the bias gradient on the way.
    EnsureRows(&dybuf_, cout, n);
    for (int64_t co = 0; co < cout; ++co) {
      float* d = dybuf_.data() + co * n;
      for (int64_t b = 0; b < n_img; ++b) {
        std::memcpy(d + b * p, dy.data() + ((b0 + b) * cout + co) * p, p * sizeof(float));
      }
      if (o_.bias) bias_sum_[co] += SumAsDouble(d, n);
    }
    // The chunk's columns: rebuilt (they fit in L2 and are read right away,
    // which measured faster than keeping a whole batch's in memory), unless
    // the last Forward left the whole batch's.
    if (!col_holds_batch_) FillColumns(x, b0, n_img, &bcol_);
    const float* col = col_holds_batch_ ? col_.data() + b0 * p : bcol_.data();
    // dW (+)= dY col^T, or its transpose col dY^T (see TransposedWeightGrad).
    if (dw_transposed) {
      Sgemm(false, true, cols(), cout, n, 1.0f, col, col_holds_batch_ ? ld_col : n, dybuf_.data(), n,
            b0 == 0 ? 0.0f : 1.0f, dwt_.data(), cout);
    } else {
      Sgemm(false, true, cout, cols(), n, 1.0f, dybuf_.data(), n, col, col_holds_batch_ ? ld_col : n,
            b0 == 0 ? 0.0f : 1.0f, dw->data(), cols());
    }
    if (dx == nullptr) continue;
    if (winograd_dx) {
      wino_dx_.Run(dy.data() + b0 * cout * p, n_img, out_h_, out_w_, k - 1 - o_.padding, nullptr,
                   dx->data() + b0 * image_size);
      continue;
    }
    if (flipped_dx && Pointwise()) {
      // dx[b] = W^T dy[b] (wflip_ is W^T for a 1x1 kernel), straight from NCHW.
      for (int64_t b = b0; b < b0 + n_img; ++b) {
        PointwiseGemm(cin, cout, wflip_.data(), cout, nullptr, dy.data() + b * cout * p, p, p,
                      dx->data() + b * image_size, p, &pw_tail_);
      }
      continue;
    }
    if (flipped_dx && PackableWidth(in_w_)) {
      EnsureShape(&dpacked_, {in_h_ * flip_rows * 16});
      for (int64_t b = b0; b < b0 + n_img; ++b) {
        PackRowPanels(dy.data() + b * cout * p, cout, out_h_, out_w_, k, k - 1 - o_.padding,
                      dpacked_.data(), &dy_plane_);
        PackedGemm(cin, flip_rows, wflip_.data(), flip_rows, nullptr, dpacked_.data(), in_h_, in_w_,
                   dx->data() + b * image_size);
      }
      continue;
    }
    if (flipped_dx && hw < kPerImagePixels) {
      // Small maps (7x7, 4x4): the chunk's dy columns side by side and one
      // GEMM [C, n*HW], then [C, n, HW] -> [n, C, HW].
      const int64_t nhw = n_img * hw;
      EnsureRows(&dcol_, flip_rows, nhw);
      for (int64_t b = 0; b < n_img; ++b) {
        Im2ColStride1(dy.data() + (b0 + b) * cout * p, cout, out_h_, out_w_, k, k - 1 - o_.padding,
                      dcol_.data() + b * hw, nhw, &dy_plane_);
      }
      EnsureRows(&dxbuf_, cin, nhw);
      Sgemm(false, false, cin, nhw, flip_rows, 1.0f, wflip_.data(), flip_rows, dcol_.data(), nhw, 0.0f,
            dxbuf_.data(), nhw);
      for (int64_t b = 0; b < n_img; ++b) {
        for (int64_t c = 0; c < cin; ++c) {
          std::memcpy(dx->data() + (b0 + b) * image_size + c * hw, dxbuf_.data() + c * nhw + b * hw,
                      hw * sizeof(float));
        }
      }
      continue;
    }
    if (flipped_dx) {
      EnsureShape(&dcol_, {flip_rows, hw});
      for (int64_t b = b0; b < b0 + n_img; ++b) {
        Im2ColStride1(dy.data() + b * cout * p, cout, out_h_, out_w_, k, k - 1 - o_.padding,
                      dcol_.data(), hw, &dy_plane_);
        Sgemm(false, false, cin, hw, flip_rows, 1.0f, wflip_.data(), flip_rows, dcol_.data(), hw,
              0.0f, dx->data() + b * image_size, hw);
      }
      continue;
    }
    EnsureRows(&dcol_, cols(), n);
    Sgemm(true, false, cols(), n, cout, 1.0f, w.data(), cols(), dybuf_.data(), n, 0.0f,
          dcol_.data(), n);
    float* images = dx->data() + b0 * image_size;
    if (phase_row_.empty()) std::fill(images, images + n_img * image_size, 0.0f);
    for (int64_t b = 0; b < n_img; ++b) Col2Im(b * p, n, images + b * image_size);
  }
  if (dw_transposed) {
    for (int64_t co = 0; co < cout; ++co) {
      for (int64_t r = 0; r < cols(); ++r) (*dw)[co * cols() + r] = dwt_[r * cout + co];
    }
  }
  if (o_.bias) {
    for (int64_t co = 0; co < cout; ++co) bias_.grad[co] = static_cast<float>(bias_sum_[co]);
  }
  FinishWeightGrad(weight_);
}

// ---------------------------------------------------------------------------
// Grouped convolution through one groups = 1 layer per group.

void Conv2d::GroupForward(const Tensor& x, const Tensor& w, Tensor* y) {
  const int64_t batch = x.dim(0), g = o_.groups, cin = o_.in_channels, cout = o_.out_channels;
  const int64_t cg = cin / g, og = cout / g, kk = o_.kernel * o_.kernel;
  const int64_t hw = in_h_ * in_w_, p = out_h_ * out_w_;
  EnsureShape(&gx_, {batch, cg, in_h_, in_w_});
  for (int64_t gi = 0; gi < g; ++gi) {
    Conv2d& sub = *group_convs_[gi];
    // The group's weight rows [gi*og, (gi+1)*og) are contiguous: [og, cg, k, k].
    std::memcpy(sub.weight_.value.data(), w.data() + gi * og * cg * kk, og * cg * kk * sizeof(float));
    if (o_.bias) {
      std::memcpy(sub.bias_.value.data(), bias_.value.data() + gi * og, og * sizeof(float));
    }
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(gx_.data() + b * cg * hw, x.data() + (b * cin + gi * cg) * hw, cg * hw * sizeof(float));
    }
    sub.Forward(gx_, &gy_);
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(y->data() + (b * cout + gi * og) * p, gy_.data() + b * og * p, og * p * sizeof(float));
    }
  }
}

void Conv2d::GroupBackward(const Tensor& x, const Tensor& dy, Tensor* dw, Tensor* dx) {
  const int64_t batch = x.dim(0), g = o_.groups, cin = o_.in_channels, cout = o_.out_channels;
  const int64_t cg = cin / g, og = cout / g, kk = o_.kernel * o_.kernel;
  const int64_t hw = in_h_ * in_w_, p = out_h_ * out_w_;
  EnsureShape(&gx_, {batch, cg, in_h_, in_w_});
  EnsureShape(&gdy_, {batch, og, out_h_, out_w_});
  for (int64_t gi = 0; gi < g; ++gi) {
    Conv2d& sub = *group_convs_[gi];
    // sub's weight is still the one Forward used (this layer's LastEffectiveWeight).
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(gx_.data() + b * cg * hw, x.data() + (b * cin + gi * cg) * hw, cg * hw * sizeof(float));
      std::memcpy(gdy_.data() + b * og * p, dy.data() + (b * cout + gi * og) * p, og * p * sizeof(float));
    }
    sub.Backward(gx_, gy_, gdy_, dx != nullptr ? &gdx_ : nullptr);  // (Conv2d reads no y)
    std::memcpy(dw->data() + gi * og * cg * kk, sub.weight_.grad.data(), og * cg * kk * sizeof(float));
    if (o_.bias) {
      std::memcpy(bias_.grad.data() + gi * og, sub.bias_.grad.data(), og * sizeof(float));
    }
    if (dx == nullptr) continue;
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(dx->data() + (b * cin + gi * cg) * hw, gdx_.data() + b * cg * hw, cg * hw * sizeof(float));
    }
  }
}

// ---------------------------------------------------------------------------
// Depthwise kernel.

namespace {
inline int64_t RoundUp8(int64_t n) { return (n + 7) / 8 * 8; }

// One 8-wide block: init + sum_t w[t] * p[t][off..off+8), one explicit FMA
// per tap in tap order. T > 0 taps known at compile time keep the weights in
// registers; T = 0 takes `taps` at run time and broadcasts each weight.
template <int T>
inline __m256 TapBlock(const float* const* p, const __m256* wv, const float* w, int64_t taps,
                       __m256 init, int64_t off) {
  __m256 a = init;
  if (T > 0) {
#pragma GCC unroll 16
    for (int t = 0; t < T; ++t) a = _mm256_fmadd_ps(wv[t], _mm256_loadu_ps(p[t] + off), a);
  } else {
    for (int64_t t = 0; t < taps; ++t) {
      a = _mm256_fmadd_ps(_mm256_broadcast_ss(w + t), _mm256_loadu_ps(p[t] + off), a);
    }
  }
  return a;
}

// out[r * out_stride + j] = init + sum_t w[t] * src[t][r * in_stride + j] for
// r < rows, j < len. Rows are computed in 8-wide blocks, two at a time (two
// independent FMA chains), the last block of a row overlapping the one before
// (each lane is computed on its own, so the overlap writes the same values
// again); a row shorter than 8 is stored whole, running into the rows after
// it (written afterwards), unless the store would end past the last row:
// then it goes through a small buffer.
template <int T>
void TapRowsFixed(const float* const* src, const float* w, int64_t taps, float init, int64_t rows,
                  int64_t len, int64_t in_stride, float* out, int64_t out_stride) {
  __m256 wv[T > 0 ? T : 1];
  // The tap pointers as locals (registers): read through `src`, GCC reloads
  // them after every store, as `out` might alias them.
  const float* local[T > 0 ? T : 1];
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    wv[t] = _mm256_set1_ps(w[t]);
    local[t] = src[t];
  }
  const float* const* p = T > 0 ? local : src;
  const __m256 iv = _mm256_set1_ps(init);
  const int64_t blocks = (len + 7) / 8;
  const int64_t end = (rows - 1) * out_stride + len;  // floats of `out` this call may write
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t in = r * in_stride;
    float* o = out + r * out_stride;
    if (len < 8) {
      // Two rows at a time while both stores end inside.
      if (r + 1 < rows && (r + 1) * out_stride + 8 <= end) {
        const __m256 a0 = TapBlock<T>(p, wv, w, taps, iv, in);
        const __m256 a1 = TapBlock<T>(p, wv, w, taps, iv, in + in_stride);
        _mm256_storeu_ps(o, a0);
        _mm256_storeu_ps(o + out_stride, a1);
        ++r;
        continue;
      }
      const __m256 a = TapBlock<T>(p, wv, w, taps, iv, in);
      if (r * out_stride + 8 <= end) {
        _mm256_storeu_ps(o, a);
      } else {
        alignas(32) float tmp[8];
        _mm256_store_ps(tmp, a);
        for (int64_t j = 0; j < len; ++j) o[j] = tmp[j];
      }
      continue;
    }
    int64_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
      const int64_t j0 = std::min(8 * b, len - 8), j1 = std::min(8 * b + 8, len - 8);
      const __m256 a0 = TapBlock<T>(p, wv, w, taps, iv, in + j0);
      const __m256 a1 = TapBlock<T>(p, wv, w, taps, iv, in + j1);
      _mm256_storeu_ps(o + j0, a0);
      _mm256_storeu_ps(o + j1, a1);
    }
    if (b < blocks) {
      const int64_t j0 = len - 8;
      _mm256_storeu_ps(o + j0, TapBlock<T>(p, wv, w, taps, iv, in + j0));
    }
  }
}

void TapRows(const float* const* src, const float* w, int64_t taps, float init, int64_t rows,
             int64_t len, int64_t in_stride, float* out, int64_t out_stride) {
  switch (taps) {
    case 1: TapRowsFixed<1>(src, w, taps, init, rows, len, in_stride, out, out_stride); break;
    case 2: TapRowsFixed<2>(src, w, taps, init, rows, len, in_stride, out, out_stride); break;
    case 4: TapRowsFixed<4>(src, w, taps, init, rows, len, in_stride, out, out_stride); break;
    case 9: TapRowsFixed<9>(src, w, taps, init, rows, len, in_stride, out, out_stride); break;
    default: TapRowsFixed<0>(src, w, taps, init, rows, len, in_stride, out, out_stride); break;
  }
}

// Lanes [0, n) set, for masked loads of a row's last n < 8 floats.
inline __m256i FirstLanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// dsum[4t..4t+4) += sum over r < rows, j < len of g[r * len + j] *
// src[t][r * in_stride + j]: eight float partial sums per tap over one
// plane, then added pairwise into four double lanes. A row's last len % 8
// floats of g are read with a mask (the other lanes are zero).
template <int T>
void TapDotFixed(const float* const* src, const float* g, int64_t rows, int64_t len,
                 int64_t in_stride, double* dsum) {
  __m256 acc[T];
  const float* p[T];  // locals: see TapRowsFixed
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
    p[t] = src[t];
  }
  const int64_t full = len / 8 * 8;
  const __m256i tail = FirstLanes(len - full);
  for (int64_t r = 0; r < rows; ++r) {
    const float* gr = g + r * len;
    const int64_t in = r * in_stride;
    for (int64_t j = 0; j <= full; j += 8) {
      if (j == full && j == len) break;
      const __m256 gv = j < full ? _mm256_loadu_ps(gr + j) : _mm256_maskload_ps(gr + j, tail);
#pragma GCC unroll 16
      for (int t = 0; t < T; ++t) acc[t] = _mm256_fmadd_ps(gv, _mm256_loadu_ps(p[t] + in + j), acc[t]);
    }
  }
#pragma GCC unroll 16
  for (int t = 0; t < T; ++t) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(acc[t]));
    const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(acc[t], 1));
    _mm256_storeu_pd(dsum + 4 * t, _mm256_add_pd(_mm256_loadu_pd(dsum + 4 * t), _mm256_add_pd(lo, hi)));
  }
}

void TapDot(const float* const* src, int64_t taps, const float* g, int64_t rows, int64_t len,
            int64_t in_stride, double* dsum) {
  for (int64_t t = 0; t < taps; t += 9) {
    const float* const* s = src + t;
    double* d = dsum + 4 * t;
    switch (std::min<int64_t>(taps - t, 9)) {
      case 1: TapDotFixed<1>(s, g, rows, len, in_stride, d); break;
      case 2: TapDotFixed<2>(s, g, rows, len, in_stride, d); break;
      case 3: TapDotFixed<3>(s, g, rows, len, in_stride, d); break;
      case 4: TapDotFixed<4>(s, g, rows, len, in_stride, d); break;
      case 5: TapDotFixed<5>(s, g, rows, len, in_stride, d); break;
      case 6: TapDotFixed<6>(s, g, rows, len, in_stride, d); break;
      case 7: TapDotFixed<7>(s, g, rows, len, in_stride, d); break;
      case 8: TapDotFixed<8>(s, g, rows, len, in_stride, d); break;
      default: TapDotFixed<9>(s, g, rows, len, in_stride, d); break;
    }
  }
}
}  // namespace

// Phase planes of hq_ x wq_ floats, plane_stride_ apart (slack so that 8-wide
// loads and stores past a plane's last row stay inside the buffer):
//  - wq_ >= out_w + (k-1)/s, so a row of dy in this layout ends with at least
//    (k-1)/s zero columns: dx's gather, which reads dy at column ow - e for
//    e <= (k-1)/s, wraps around into zeros;
//  - hq_ >= out_h + (k-1)/s, so every tap of every output row is inside.
void Conv2d::DepthwiseGeometry() {
  const int64_t s = o_.stride, k = o_.kernel, pad = o_.padding;
  const int64_t hp = in_h_ + 2 * pad, wp = in_w_ + 2 * pad, reach = (k - 1) / s;
  hq_ = std::max((hp + s - 1) / s, out_h_ + reach);
  wq_ = std::max((wp + s - 1) / s, out_w_ + reach);
  phases_ = s * s;
  plane_stride_ = RoundUp8(hq_ * wq_) + 16;
  dmargin_ = RoundUp8(reach * wq_ + reach);
  const int64_t m = o_.out_channels / o_.in_channels;
  // Zeroed once. Every row of a phase plane that a valid output reads is
  // rewritten for each input plane; the other floats stay finite (zeros or
  // copies of inputs), so the dropped lanes never hold NaN. In dy_planes_
  // only the valid pixels are ever written: the margin and the dropped
  // columns stay zero.
  planes_ = Tensor({phases_ * plane_stride_});
  dy_planes_ = Tensor({m * (dmargin_ + plane_stride_)});
  dx_phase_ = Tensor({phases_ * plane_stride_});
  tap_src_.assign(m * k * k, nullptr);
  tap_x_.assign(k * k, nullptr);
  tap_w_.assign(m * k * k, 0.0f);
  // dx's gathers. dx at padded (R, Q), in phase (R % s, Q % s) at row R / s,
  // column Q / s, is the sum over the taps ki = R % s + s*a, kj = Q % s + s*e
  // of w[ki][kj] * dy[R/s - a][Q/s - e] (zero outside): a gather of dy planes
  // (after their zero margin) at fixed offsets. Stride 1: one phase, the rows
  // inside the input written straight into dx; else each phase's rows that
  // are inside the input, into dx_phase_. Precomputed: no divisions per plane.
  dx_gathers_.clear();
  dx_taps_.clear();
  const int64_t dplane = dmargin_ + plane_stride_;
  for (int64_t pr = 0; pr < s; ++pr) {
    // Rows of this phase inside the unpadded input.
    const int64_t r_lo = std::max<int64_t>(0, (pad - pr + s - 1) / s);
    const int64_t r_hi = (pad + in_h_ - 1 - pr) / s;  // inclusive
    if (pad + in_h_ - 1 < pr || r_hi < r_lo) continue;
    for (int64_t pc = 0; pc < s; ++pc) {
      DxGather gather;
      gather.first_tap = static_cast<int64_t>(dx_taps_.size());
      // Stride 1: dx row h is padded row h + pad, from column pad.
      const int64_t start = s == 1 ? pad * wq_ + pad : r_lo * wq_;
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t ki = pr; ki < k; ki += s) {
          for (int64_t kj = pc; kj < k; kj += s) {
            dx_taps_.push_back({j * dplane + dmargin_ + start - (ki / s) * wq_ - kj / s,
                                j * k * k + ki * k + kj});
          }
        }
      }
      gather.taps = static_cast<int64_t>(dx_taps_.size()) - gather.first_tap;
      if (s == 1) {
        gather.out_offset = 0;
        gather.rows = in_h_;
        gather.len = in_w_;
        gather.stride = in_w_;
      } else {
        gather.out_offset = (pr * s + pc) * plane_stride_ + r_lo * wq_;
        gather.rows = r_hi - r_lo + 1;
        gather.len = wq_;
        gather.stride = wq_;
      }
      dx_gathers_.push_back(gather);
    }
  }
  // Stride 2: blocks of eight dx pixels from the two column phases (offsets
  // from the phase row), the last block overlapping the one before.
  // Otherwise (stride > 2, or rows narrower than 8) each dx pixel of a row
  // from its column phase: offsets precomputed (a division per pixel cost
  // about a third of mobilenet_mini's stride-2 depthwise backward at 7x7).
  dx_col_offset_.clear();
  for (int64_t wi = 0; wi < in_w_; ++wi) {
    const int64_t q = wi + pad;
    dx_col_offset_.push_back((q % s) * plane_stride_ + q / s);
  }
  dx_interleave_.clear();
  if (s == 2 && in_w_ >= 8) {
    for (int64_t i0 = 0;; i0 = std::min(i0 + 8, in_w_ - 8)) {
      const int64_t q0 = i0 + pad;
      dx_interleave_.push_back({i0, (q0 % 2) * plane_stride_ + q0 / 2,
                                ((q0 + 1) % 2) * plane_stride_ + (q0 + 1) / 2});
      if (i0 == in_w_ - 8) break;
    }
  }
  // Load masks of the padded row's blocks: lane l of block b (8 floats of a
  // phase row for stride 1; 16 of the padded row, two masks, for stride 2)
  // is set when its padded column lies inside the input row.
  const int64_t blocks = (wq_ + 7) / 8, per_block = s == 2 ? 16 : 8;
  row_masks_.assign(blocks * per_block, 0);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t l = 0; l < per_block; ++l) {
      const int64_t q = b * per_block + l;
      row_masks_[b * per_block + l] = q >= pad && q < pad + in_w_ ? -1 : 0;
    }
  }
}

namespace {
// One padded row of a plane into its phase row(s), `blocks` blocks of 8
// floats per phase: `row` is the input row shifted so that padded column q is
// row[q], `masks` (8 lanes per 8 padded columns) select the columns inside the
// input. kPlain: every float read lies inside the plane, so plain loads and
// an AND (AMD's masked loads measured several times slower); else masked loads.
// Stride 2 splits 16 padded columns into 8 even (dst0) and 8 odd (dst1).
template <int S, bool kPlain>
inline void PhaseRow(const float* row, const __m256i* masks, int64_t blocks, float* dst0,
                     float* dst1) {
  auto load = [&](int64_t i) {
    const __m256i m = _mm256_loadu_si256(masks + i);
    return kPlain ? _mm256_and_ps(_mm256_loadu_ps(row + 8 * i), _mm256_castsi256_ps(m))
                  : _mm256_maskload_ps(row + 8 * i, m);
  };
  for (int64_t b = 0; b < blocks; ++b) {
    if (S == 1) {
      _mm256_storeu_ps(dst0 + 8 * b, load(b));
      continue;
    }
    const __m256 lo = load(2 * b), hi = load(2 * b + 1);
    // [l0 l2 h0 h2 | l4 l6 h4 h6] -> [l0 l2 l4 l6 h0 h2 h4 h6]
    _mm256_storeu_ps(dst0 + 8 * b, _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0))), 0xD8)));
    _mm256_storeu_ps(dst1 + 8 * b, _mm256_castpd_ps(_mm256_permute4x64_pd(
        _mm256_castps_pd(_mm256_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1))), 0xD8)));
  }
}
}  // namespace

// Writes each padded row r < hp (zeros included, in order) of `plane` into its
// phase plane row, in 8-wide blocks straight from the input row (the padding
// is never stored anywhere first, so no load waits on a store). A row's last
// block may run into the next row of the same phase, which is written
// afterwards, or into the slack.
void Conv2d::DepthwisePhases(const float* plane) {
  const int64_t s = o_.stride, pad = o_.padding, hp = in_h_ + 2 * pad;
  float* pl = planes_.data();
  const int64_t blocks = (wq_ + 7) / 8;
  const __m256i* masks = reinterpret_cast<const __m256i*>(row_masks_.data());
  if (s == 1 || s == 2) {
    const __m256 zero = _mm256_setzero_ps();
    for (int64_t r = 0; r < hp; ++r) {
      float* dst0 = s == 1 ? pl + r * wq_ : pl + (r & 1) * 2 * plane_stride_ + (r >> 1) * wq_;
      float* dst1 = dst0 + plane_stride_;
      const int64_t h = r - pad;
      if (h < 0 || h >= in_h_) {
        for (int64_t b = 0; b < blocks; ++b) {
          _mm256_storeu_ps(dst0 + 8 * b, zero);
          if (s == 2) _mm256_storeu_ps(dst1 + 8 * b, zero);
        }
        continue;
      }
      const int64_t first = h * in_w_ - pad;  // the padded row's column 0 in the plane
      const float* row = plane + first;
      const bool plain = first >= 0 && first + blocks * 8 * s <= in_h_ * in_w_;
      if (s == 1) {
        if (plain) {
          PhaseRow<1, true>(row, masks, blocks, dst0, dst1);
        } else {
          PhaseRow<1, false>(row, masks, blocks, dst0, dst1);
        }
      } else if (plain) {
        PhaseRow<2, true>(row, masks, blocks, dst0, dst1);
      } else {
        PhaseRow<2, false>(row, masks, blocks, dst0, dst1);
      }
    }
    return;
  }
  for (int64_t ph = 0; ph < phases_; ++ph) {
    std::fill(pl + ph * plane_stride_, pl + ph * plane_stride_ + hq_ * wq_, 0.0f);
  }
  for (int64_t h = 0; h < in_h_; ++h) {
    const int64_t r = h + pad;
    for (int64_t w = 0; w < in_w_; ++w) {
      const int64_t q = w + pad;
      pl[((r % s) * s + q % s) * plane_stride_ + (r / s) * wq_ + q / s] = plane[h * in_w_ + w];
    }
  }
}

void Conv2d::DepthwiseForward(const Tensor& x, const Tensor& w, Tensor* y) {
  const int64_t batch = x.dim(0), cin = o_.in_channels, cout = o_.out_channels;
  const int64_t m = cout / cin, s = o_.stride, k = o_.kernel, kk = k * k;
  const int64_t hw = in_h_ * in_w_, p = out_h_ * out_w_;
  // Tap (ki, kj) reads phase (ki % s, kj % s) at shift (ki / s) * wq_ + kj / s.
  for (int64_t ki = 0; ki < k; ++ki) {
    for (int64_t kj = 0; kj < k; ++kj) {
      tap_src_[ki * k + kj] = planes_.data() + ((ki % s) * s + kj % s) * plane_stride_ +
                              (ki / s) * wq_ + kj / s;
    }
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < cin; ++c) {
      DepthwisePhases(x.data() + (b * cin + c) * hw);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t co = c * m + j;
        TapRows(tap_src_.data(), w.data() + co * kk, kk, o_.bias ? bias_.value[co] : 0.0f, out_h_,
                out_w_, wq_, y->data() + (b * cout + co) * p, out_w_);
      }
    }
  }
}

void Conv2d::DepthwiseBackward(const Tensor& x, const Tensor& w, const Tensor& dy, Tensor* dw,
                               Tensor* dx) {
  const int64_t batch = x.dim(0), cin = o_.in_channels, cout = o_.out_channels;
  const int64_t m = cout / cin, s = o_.stride, k = o_.kernel, kk = k * k, pad = o_.padding;
  const int64_t hw = in_h_ * in_w_, p = out_h_ * out_w_;
  const int64_t dplane = dmargin_ + plane_stride_;
  std::vector<const float*>& x_src = tap_x_;  // sized in DepthwiseGeometry
  for (int64_t ki = 0; ki < k; ++ki) {
    for (int64_t kj = 0; kj < k; ++kj) {
      x_src[ki * k + kj] = planes_.data() + ((ki % s) * s + kj % s) * plane_stride_ +
                           (ki / s) * wq_ + kj / s;
    }
  }
  dw_sum_.assign(cout * kk * 4, 0.0);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < cin; ++c) {
      DepthwisePhases(x.data() + (b * cin + c) * hw);
      for (int64_t j = 0; j < m; ++j) {
        const int64_t co = c * m + j;
        const float* src = dy.data() + (b * cout + co) * p;
        if (dx != nullptr) {
          // dy in the kernel's layout after the zero margin, for dx's gather
          // (written before dW's loop, which reads dy itself, so that the
          // gather's wide loads do not wait on these stores).
          float* g = dy_planes_.data() + j * dplane + dmargin_;
          for (int64_t oh = 0; oh < out_h_; ++oh) CopyRow(src + oh * out_w_, g + oh * wq_, out_w_);
        }
        if (o_.bias) bias_sum_[co] += SumAsDouble(src, p);
        TapDot(x_src.data(), kk, src, out_h_, out_w_, wq_, dw_sum_.data() + co * kk * 4);
      }
      if (dx == nullptr) continue;
      // dx: the gathers of DepthwiseGeometry's table, then (stride > 1) the
      // phases back into rows.
      float* out = dx->data() + (b * cin + c) * hw;
      const float* wc = w.data() + c * m * kk;
      for (const DxGather& gather : dx_gathers_) {
        for (int64_t t = 0; t < gather.taps; ++t) {
          const DxTap& tap = dx_taps_[gather.first_tap + t];
          tap_src_[t] = dy_planes_.data() + tap.dy_offset;
          tap_w_[t] = wc[tap.w_index];
        }
        float* dst = (s == 1 ? out : dx_phase_.data()) + gather.out_offset;
        if (gather.taps == 0) {
          for (int64_t r = 0; r < gather.rows; ++r) std::fill(dst + r * gather.stride, dst + r * gather.stride + gather.len, 0.0f);
        } else {
          TapRows(tap_src_.data(), tap_w_.data(), gather.taps, 0.0f, gather.rows, gather.len,
                  wq_, dst, gather.stride);
        }
      }
      if (s == 1) continue;
      const float* dp = dx_phase_.data();
      for (int64_t h = 0; h < in_h_; ++h) {
        const int64_t r = h + pad;
        float* d = out + h * in_w_;
        if (s == 2 && in_w_ >= 8) {
          // Eight pixels from 4 + 4 of the two column phases of padded row r.
          const float* row = dp + (r & 1) * 2 * plane_stride_ + (r >> 1) * wq_;
          for (const Interleave& il : dx_interleave_) {
            const __m128 a = _mm_loadu_ps(row + il.first), e = _mm_loadu_ps(row + il.second);
            _mm256_storeu_ps(d + il.out, _mm256_set_m128(_mm_unpackhi_ps(a, e), _mm_unpacklo_ps(a, e)));
          }
          continue;
        }
        const float* row = dp + (r % s) * s * plane_stride_ + (r / s) * wq_;
        const int64_t* col = dx_col_offset_.data();
        for (int64_t wi = 0; wi < in_w_; ++wi) d[wi] = row[col[wi]];
      }
    }
  }
  for (int64_t t = 0; t < cout * kk; ++t) {
    const double* l = dw_sum_.data() + 4 * t;
    (*dw)[t] = static_cast<float>((l[0] + l[1]) + (l[2] + l[3]));
  }
  if (o_.bias) {
    for (int64_t co = 0; co < cout; ++co) bias_.grad[co] = static_cast<float>(bias_sum_[co]);
  }
}
// ---------------------------------------------------------------------------
// The `op:` plugin. Keys, checks and messages as quant/nn/layer_spec.cc's
// ReadLayerSpec reads a conv2d, plus `groups`.

absl::StatusOr<std::unique_ptr<Layer>> CreateConv2d(ParamReader& p) {
  Conv2dOptions o;
  o.in_channels = p.Int("in_channels", -1, "input channels (default: inferred; checked when given)");
  // A missing key is reported as such, before IntInRange's range error on the default 0
  // (the first error recorded is the one returned).
  if (!p.describing() && !p.Has("out_channels")) {
    p.Fail("out_channels", "a conv2d layer needs out_channels");
  }
  o.out_channels = p.IntInRange("out_channels", 0, 1, 1 << 20, "output channels");
  o.kernel = p.IntInRange("kernel", 3, 1, 1024, "square kernel size");
  o.stride = p.IntInRange("stride", 1, 1, 1024, "stride");
  o.padding = p.IntInRange("padding", 0, 0, 1024, "zero padding on each side");
  o.bias = p.Bool("bias", true, "learn a bias");
  o.groups = p.IntInRange("groups", 1, 1, 1 << 20,
                          "channel groups (1..out_channels; in_channels and out_channels divisible "
                          "by it; in_channels for depthwise)");
  if (!p.describing() && p.status().ok()) {
    if (o.groups > o.out_channels) {
      p.Fail("groups", absl::StrCat("must be at most out_channels (", o.out_channels, "); is ",
                                    o.groups));
    } else if (o.out_channels % o.groups != 0) {
      p.Fail("groups", absl::StrCat("out_channels (", o.out_channels,
                                    ") must be divisible by groups (", o.groups, ")"));
    } else if (o.in_channels > 0 && o.in_channels % o.groups != 0) {
      p.Fail("groups", absl::StrCat("in_channels (", o.in_channels,
                                    ") must be divisible by groups (", o.groups, ")"));
    }
  }
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(new Conv2d("", o));
}

QUANTLAB_REGISTER(Layer, "conv2d", CreateConv2d,
                  "2-D convolution over NCHW (PyTorch's Conv2d: square kernel, stride, padding, "
                  "groups, depthwise when groups = in_channels)");

}  // namespace quant::nn
