#include "quant/backends/gemmlowp_backend.h"

#include <gemmlowp/public/gemmlowp.h>
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "quant/backends/fixed_point.h"
#include "quant/backends/im2col.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

#if !defined(GEMMLOWP_SSE4_64) && !defined(GEMMLOWP_AVX2_64) && !defined(GEMMLOWP_NEON)
#error "gemmlowp would fall back to its generic (slow) path: compile with -msse4.1 or better"
#endif

namespace quant::backends {
namespace {

using ColVector = gemmlowp::VectorMap<const std::int32_t, gemmlowp::VectorShape::Col>;
using RowDup = gemmlowp::VectorDup<const std::int32_t, gemmlowp::VectorShape::Row>;

// Per-layer data prepared once.
struct LayerPlan {
  std::vector<uint8_t> weights;      // +128 for int8 weights; [out][fan_in]
  std::vector<int32_t> lhs_offset;   // -(weight zero point + 128 or 0), per output channel
  std::vector<int32_t> bias;         // per output channel (zeros if the model has none)
  std::vector<int32_t> multiplier, exponent;
  bool per_channel = false;
  int64_t fan_in = 0;
  // Convs with groups == 1 that are not pointwise: the shared uint8 im2col (im2col.h), whose
  // patch matrix [pixels][kh*kw*C] is gemmlowp's column-major RHS as it stands.
  std::unique_ptr<Im2col> im2col;
};

// A 1x1 stride-1 unpadded conv over all channels: the NHWC input is already the RHS.
bool Pointwise(const Conv2DOptions& c) {
  return c.kernel_h() == 1 && c.kernel_w() == 1 && c.stride_h() == 1 && c.stride_w() == 1 && c.pad_top() == 0 &&
         c.pad_left() == 0 && c.groups() == 1;
}

}  // namespace

struct GemmlowpBackend::Impl {
  gemmlowp::GemmContext context;
  std::vector<LayerPlan> plans;
  int32_t act_shift = 0;  // 128 for int8 activations
  std::vector<uint8_t> a, b, patches;  // scratch: input (+ shift), output, im2col
  std::vector<int32_t> acc;  // per-channel layers: int32 accumulators

  // output[rows x cols] (ColMajor, leading dimension `ld`) = lhs[rows x depth] (RowMajor)
  // * rhs[depth x cols] (ColMajor) through the quantized output pipeline.
  // Columns per gemmlowp call. gemmlowp sizes its packed blocks from the L2 budget over the
  // depth, so a shallow GEMM over many columns (conv1's 9-deep im2col of 256 images: 200k
  // columns) packed and accumulated all of them at once: 34 MB in one call, plus as much
  // again in per-channel accumulators. Columns are independent, so the results are the same.
  static constexpr int kMaxColumns = 8192;

  void Gemm(const LayerPlan& p, int row0, int rows, int depth, int cols, const uint8_t* lhs, const uint8_t* rhs,
            int32_t rhs_offset, const Op& l, int32_t output_zero_point, uint8_t* out, int ld) {
    for (int c0 = 0; c0 < cols; c0 += kMaxColumns) {
      GemmColumns(p, row0, rows, depth, std::min(kMaxColumns, cols - c0), lhs, rhs + static_cast<size_t>(c0) * depth,
                  rhs_offset, l, output_zero_point, out + static_cast<size_t>(c0) * ld, ld);
    }
  }

  void GemmColumns(const LayerPlan& p, int row0, int rows, int depth, int cols, const uint8_t* lhs, const uint8_t* rhs,
                   int32_t rhs_offset, const Op& l, int32_t output_zero_point, uint8_t* out, int ld) {
    gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::RowMajor> lhs_map(lhs, rows, depth, depth);
    gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::ColMajor> rhs_map(rhs, depth, cols, depth);
    gemmlowp::MatrixMap<std::uint8_t, gemmlowp::MapOrder::ColMajor> result(out, rows, cols, ld);
    const ColVector lhs_off(p.lhs_offset.data() + row0, rows);
    const RowDup rhs_off(rhs_offset, cols);
    gemmlowp::OutputStageBiasAddition<ColVector> bias_stage;
    bias_stage.bias_vector = ColVector(p.bias.data() + row0, rows);
    gemmlowp::OutputStageClamp clamp{l.output_min() + act_shift, l.output_max() + act_shift};
    gemmlowp::OutputStageSaturatingCastToUint8 cast;
    const int32_t offset_after_shift = output_zero_point + act_shift;
    if (p.per_channel) {
      // gemmlowp 2021-12's per-channel fixed-point stage
      // (OutputStageScaleInt32ByFixedPointAndExponentPC) only compiles for scalar and
      // NEON registers (its SSE/AVX path lacks Max(register, int) and per-lane shifts).
      // So per-channel layers take the int32 accumulators (+ bias) from gemmlowp and
      // apply the same fixed-point formula with fixed_point.h. The bias is added here
      // too: with an empty pipeline gemmlowp's unpacking of the int32 result is cheaper
      // (cnn batch 256 4-8 % faster), and the int32 sum is the same.
      acc.resize(static_cast<size_t>(rows) * cols);
      gemmlowp::MatrixMap<std::int32_t, gemmlowp::MapOrder::ColMajor> acc_map(acc.data(), rows, cols, rows);
      gemmlowp::GemmWithOutputPipelinePC<std::uint8_t, std::int32_t, gemmlowp::DefaultL8R8BitDepthParams>(
          &context, lhs_map, rhs_map, &acc_map, lhs_off, rhs_off, std::make_tuple());
      const int32_t lo = clamp.min, hi = clamp.max;
      const int32_t* mult = p.multiplier.data() + row0;
      const int32_t* expo = p.exponent.data() + row0;
      const int32_t* bias = p.bias.data() + row0;
      for (int c = 0; c < cols; ++c) {
        const int32_t* a = acc.data() + static_cast<size_t>(c) * rows;
        uint8_t* o = out + static_cast<size_t>(c) * ld;
        int r = 0;
#ifdef __AVX2__
        // Eight channels at a time, identical to the scalar formula (fixed_point.h); this
        // loop was a fifth of the cnn's time when scalar.
        const __m256i vlo = _mm256_set1_epi32(lo), vhi = _mm256_set1_epi32(hi);
        const __m256i voff = _mm256_set1_epi32(offset_after_shift);
        for (; r + 8 <= rows; r += 8) {
          const __m256i sum = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + r)),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + r)));
          __m256i v =
              MultiplyByQuantizedMultiplierX8(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(mult + r)),
                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(expo + r)));
          v = _mm256_min_epi32(_mm256_max_epi32(_mm256_add_epi32(v, voff), vlo), vhi);
          const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(o + r), _mm_packus_epi16(words, words));
        }
#endif
        for (; r < rows; ++r) {
          const int32_t v = MultiplyByQuantizedMultiplier(a[r] + bias[r], mult[r], expo[r]) + offset_after_shift;
          o[r] = static_cast<uint8_t>(std::min(std::max(v, lo), hi));
        }
      }
    } else {
      gemmlowp::OutputStageScaleInt32ByFixedPointAndExponent scale;
      scale.result_fixedpoint_multiplier = p.multiplier[0];
      scale.result_exponent = p.exponent[0];
      scale.result_offset_after_shift = offset_after_shift;
      gemmlowp::GemmWithOutputPipelinePC<std::uint8_t, std::uint8_t, gemmlowp::DefaultL8R8BitDepthParams>(
          &context, lhs_map, rhs_map, &result, lhs_off, rhs_off, std::make_tuple(bias_stage, scale, clamp, cast));
    }
  }
};

GemmlowpBackend::GemmlowpBackend() : impl_(new Impl) { impl_->context.set_max_num_threads(1); }
GemmlowpBackend::~GemmlowpBackend() = default;

const char* GemmlowpBackend::KernelPath() {
#if defined(GEMMLOWP_AVX2_64)
  return "AVX2 64-bit";
#elif defined(GEMMLOWP_SSE4_64)
  return "SSE4 64-bit";
#else
  return "other SIMD";
#endif
}

const BackendProfile& GemmlowpBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "gemmlowp";
    // Offsets are per row of the LHS (per output channel), so per-channel
    // weight zero points are free; int8 is carried as uint8 + 128.
    SupportEveryDtype("GemmWithOutputPipelinePC, uint8 operands with offsets", p);
    for (const std::string& k : AllOpKinds()) {
      p->ops.push_back({k, {}, k == "fully_connected" || k == "conv2d"
                                   ? "gemmlowp GEMM (depthwise conv: the reference kernel)"
                                   : "the reference kernel"});
    }
    p->requantization = "gemmlowp OutputStageScaleInt32ByFixedPointAndExponent(PC): same as reference";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> GemmlowpBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new GemmlowpBackend());
}

absl::Status GemmlowpBackend::BeginPrepare() {
  RETURN_IF_ERROR(ReferenceBackend::BeginPrepare());
  impl_->act_shift = model().tensors(InputTensor(model())).dtype() == INT8 ? 128 : 0;
  impl_->plans.clear();
  impl_->plans.resize(model().ops_size());
  return absl::OkStatus();
}

absl::Status GemmlowpBackend::PrepareOp(int i) {
  RETURN_IF_ERROR(ReferenceBackend::PrepareOp(i));
  const Op& op = model().ops(i);
  const int wt = WeightTensor(op);
  if (wt < 0) return absl::OkStatus();
  const Tensor& wq = model().tensors(wt);
  const Requantization& rq = op.has_conv2d() ? op.conv2d().requant() : op.fully_connected().requant();
  LayerPlan& p = impl_->plans[i];
  const int32_t w_shift = wq.dtype() == INT8 ? 128 : 0;
  const std::vector<int32_t>& w = ops_[i].weights;
  const int O = wq.shape(0);
  p.weights.resize(w.size());
  for (size_t k = 0; k < w.size(); ++k) p.weights[k] = static_cast<uint8_t>(w[k] + w_shift);
  p.fan_in = static_cast<int64_t>(w.size()) / O;
  p.per_channel = IsPerChannel(wq);
  if (op.has_conv2d() && op.conv2d().groups() == 1 && !Pointwise(op.conv2d())) {
    const int32_t pad = TensorZeroPoint(model().tensors(op.inputs(0))) + impl_->act_shift;  // as uint8
    p.im2col = std::make_unique<Im2col>(op.conv2d(), shapes()[op.inputs(0)], shapes()[op.outputs(0)], pad);
  }
  for (int o = 0; o < O; ++o) {
    p.lhs_offset.push_back(-(ops_[i].weight_zero_point[o] + w_shift));
    p.bias.push_back(ops_[i].bias[o]);
    p.multiplier.push_back(rq.multiplier(o));
    p.exponent.push_back(rq.shift(o));
  }
  return absl::OkStatus();
}

absl::Status GemmlowpBackend::RunOp(int i, int64_t batch) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  if (!l.has_fully_connected() && !l.has_conv2d()) return ReferenceBackend::RunOp(i, batch);
  // Depthwise (one input channel per group): a GEMM of depth kh*kw per group is all
  // packing overhead in gemmlowp (mobilenet_mini ran slower than the reference); the
  // reference kernel computes the same integers.
  if (l.has_conv2d() && l.conv2d().groups() > 1 && shapes()[l.inputs(0)][2] == l.conv2d().groups()) {
    return ReferenceBackend::RunOp(i, batch);
  }
  Impl& s = *impl_;
  const Shape& in = shapes()[l.inputs(0)];
  const Shape& out = shapes()[l.outputs(0)];
  LayerPlan& p = s.plans[i];
  const int32_t in_zp = TensorZeroPoint(m.tensors(l.inputs(0)));
  const int32_t out_zp = TensorZeroPoint(m.tensors(l.outputs(0)));
  // int32 activations -> gemmlowp's uint8 (+128 for int8); the scratch keeps its capacity.
  const int32_t* x = Data<int32_t>(l.inputs(0));
  const int64_t n_in = batch * Numel(in), n_out = batch * Numel(out);
  s.a.resize(n_in);
  // The shift in a local and raw pointers: through the members the compiler must assume the
  // stores may change act_shift, and left the loop scalar.
  const int32_t shift = s.act_shift;
  uint8_t* a = s.a.data();
  for (int64_t k = 0; k < n_in; ++k) a[k] = static_cast<uint8_t>(x[k] + shift);
  s.b.resize(n_out);
  const int32_t rhs_offset = -(in_zp + s.act_shift);
  if (l.has_fully_connected()) {
    const int I = static_cast<int>(in[0]), O = static_cast<int>(out[0]);
    s.Gemm(p, 0, O, I, static_cast<int>(batch), p.weights.data(), s.a.data(), rhs_offset, l, out_zp, s.b.data(), O);
  } else {
    const Conv2DOptions& c = l.conv2d();
    const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1], O = out[2];
    const int ig = static_cast<int>(C / c.groups()), og = static_cast<int>(O / c.groups());
    const int64_t pixels = batch * OH * OW;
    const int depth = static_cast<int>(p.fan_in);
    for (int g = 0; g < c.groups(); ++g) {
      const uint8_t* rhs = s.a.data();
      if (p.im2col != nullptr) {
        p.im2col->Reserve(batch);
        p.im2col->Run(s.a.data(), batch);
        rhs = p.im2col->patches();
      } else if (!Pointwise(c)) {
        // Grouped convs: column (b, oy, ox) holds the group's [kh][kw][ig] patch; outside the
        // image the input zero point, which the rhs offset turns into 0.
        s.patches.resize(static_cast<size_t>(pixels) * depth);
        const uint8_t pad = static_cast<uint8_t>(in_zp + s.act_shift);
        uint8_t* col = s.patches.data();
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t oy = 0; oy < OH; ++oy)
            for (int64_t ox = 0; ox < OW; ++ox)
              for (int ky = 0; ky < c.kernel_h(); ++ky) {
                const int64_t y = oy * c.stride_h() - c.pad_top() + ky;
                for (int kx = 0; kx < c.kernel_w(); ++kx, col += ig) {
                  const int64_t xx = ox * c.stride_w() - c.pad_left() + kx;
                  if (y < 0 || y >= H || xx < 0 || xx >= W) {
                    std::memset(col, pad, ig);
                  } else {
                    std::memcpy(col, s.a.data() + ((b * H + y) * W + xx) * C + g * ig, ig);
                  }
                }
              }
        rhs = s.patches.data();
      }
      s.Gemm(p, g * og, og, depth, static_cast<int>(pixels), p.weights.data() + static_cast<int64_t>(g) * og * depth,
             rhs, rhs_offset, l, out_zp, s.b.data() + g * og, static_cast<int>(O));
    }
  }
  int32_t* y = Data<int32_t>(l.outputs(0));
  const uint8_t* result = s.b.data();
  int64_t k = 0;
#ifdef __AVX2__
  // Eight at a time (GCC left this widening loop scalar: a tenth of the cnn's time).
  const __m256i vshift = _mm256_set1_epi32(shift);
  for (; k + 8 <= n_out; k += 8) {
    const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(result + k)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + k), _mm256_sub_epi32(v, vshift));
  }
#endif
  for (; k < n_out; ++k) y[k] = static_cast<int32_t>(result[k]) - shift;
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "gemmlowp", GemmlowpBackend::Create,
                  "gemmlowp GemmWithOutputPipeline (uint8 with offsets, fixed-point output stage), conv by im2col; "
                  "reference kernels for the other ops");

}  // namespace quant::backends
