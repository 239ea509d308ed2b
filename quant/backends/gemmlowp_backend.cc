#include "quant/backends/gemmlowp_backend.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#include <gemmlowp/public/gemmlowp.h>

#include "quant/backends/fixed_point.h"
#include "quant/core/registry.h"

#if !defined(GEMMLOWP_SSE4_64) && !defined(GEMMLOWP_AVX2_64) && !defined(GEMMLOWP_NEON)
#error "gemmlowp would fall back to its generic (slow) path: compile with -msse4.1 or better"
#endif

namespace quant::backends {
namespace {

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

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
};

}  // namespace

struct GemmlowpBackend::Impl {
  gemmlowp::GemmContext context;
  std::vector<LayerPlan> plans;
  int32_t act_shift = 0;  // 128 for int8 activations
  std::vector<uint8_t> a, b, patches;
  std::vector<int32_t> acc;  // per-channel layers: int32 accumulators

  // output[rows x cols] (ColMajor, leading dimension `ld`) = lhs[rows x depth] (RowMajor)
  // * rhs[depth x cols] (ColMajor) through the quantized output pipeline.
  void Gemm(const LayerPlan& p, int row0, int rows, int depth, int cols, const uint8_t* lhs, const uint8_t* rhs,
            int32_t rhs_offset, const Layer& l, uint8_t* out, int ld) {
    gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::RowMajor> lhs_map(lhs, rows, depth, depth);
    gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::ColMajor> rhs_map(rhs, depth, cols, depth);
    gemmlowp::MatrixMap<std::uint8_t, gemmlowp::MapOrder::ColMajor> result(out, rows, cols, ld);
    const ColVector lhs_off(p.lhs_offset.data() + row0, rows);
    const RowDup rhs_off(rhs_offset, cols);
    gemmlowp::OutputStageBiasAddition<ColVector> bias_stage;
    bias_stage.bias_vector = ColVector(p.bias.data() + row0, rows);
    gemmlowp::OutputStageClamp clamp{l.output_min() + act_shift, l.output_max() + act_shift};
    gemmlowp::OutputStageSaturatingCastToUint8 cast;
    const int32_t offset_after_shift = l.output().zero_point() + act_shift;
    if (p.per_channel) {
      // gemmlowp 2021-12's per-channel fixed-point stage
      // (OutputStageScaleInt32ByFixedPointAndExponentPC) only compiles for scalar and
      // NEON registers (its SSE/AVX path lacks Max(register, int) and per-lane shifts).
      // So per-channel layers take the int32 accumulators (+ bias) from gemmlowp and
      // apply the same fixed-point formula with fixed_point.h.
      acc.resize(static_cast<size_t>(rows) * cols);
      gemmlowp::MatrixMap<std::int32_t, gemmlowp::MapOrder::ColMajor> acc_map(acc.data(), rows, cols, rows);
      gemmlowp::GemmWithOutputPipelinePC<std::uint8_t, std::int32_t, gemmlowp::DefaultL8R8BitDepthParams>(
          &context, lhs_map, rhs_map, &acc_map, lhs_off, rhs_off, std::make_tuple(bias_stage));
      const int32_t lo = clamp.min, hi = clamp.max;
      const int32_t* mult = p.multiplier.data() + row0;
      const int32_t* expo = p.exponent.data() + row0;
      for (int c = 0; c < cols; ++c) {
        const int32_t* a = acc.data() + static_cast<size_t>(c) * rows;
        uint8_t* o = out + static_cast<size_t>(c) * ld;
        for (int r = 0; r < rows; ++r) {
          const int32_t v = MultiplyByQuantizedMultiplier(a[r], mult[r], expo[r]) + offset_after_shift;
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
    p->requantization = "gemmlowp OutputStageScaleInt32ByFixedPointAndExponent(PC): same as reference";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> GemmlowpBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new GemmlowpBackend());
}

absl::Status GemmlowpBackend::PrepareImpl() {
  const QuantizedModel& m = model();
  impl_->act_shift = m.input().dtype() == INT8 ? 128 : 0;
  impl_->plans.clear();
  for (const Layer& l : m.layers()) {
    LayerPlan p;
    auto fill = [&](const auto& op) {
      const WeightQuant& wq = op.weight_quant();
      const int32_t w_shift = wq.dtype() == INT8 ? 128 : 0;
      const std::vector<int32_t> w = WeightValues(l);
      p.weights.resize(w.size());
      for (size_t i = 0; i < w.size(); ++i) p.weights[i] = static_cast<uint8_t>(w[i] + w_shift);
      p.fan_in = static_cast<int64_t>(w.size()) / op.output_channels();
      p.per_channel = IsPerChannel(wq);
      for (int o = 0; o < op.output_channels(); ++o) {
        p.lhs_offset.push_back(-(WeightZeroPoint(wq, o) + w_shift));
        p.bias.push_back(op.bias_size() ? op.bias(o) : 0);
        p.multiplier.push_back(op.requant().multiplier(o));
        p.exponent.push_back(op.requant().shift(o));
      }
    };
    if (l.has_fully_connected()) fill(l.fully_connected());
    if (l.has_conv2d()) fill(l.conv2d());
    impl_->plans.push_back(std::move(p));
  }
  return absl::OkStatus();
}

absl::Status GemmlowpBackend::RunImpl(const float* input, int64_t batch, RunOutput* output) {
  auto t = std::chrono::steady_clock::now();
  Impl& s = *impl_;
  const QuantizedModel& m = model();
  const std::vector<Shape>& shapes = this->shapes();
  const int64_t n_in = batch * Numel(shapes[0]);
  s.a.resize(n_in);
  const float inv_scale = 1.0f / m.input().scale();
  const int32_t qmin = DTypeMin(m.input().dtype()), qmax = DTypeMax(m.input().dtype());
  for (int64_t i = 0; i < n_in; ++i) {
    s.a[i] = static_cast<uint8_t>(QuantizeInputValue(input[i], inv_scale, m.input().zero_point(), qmin, qmax) +
                                  s.act_shift);
  }
  if (profiling()) Lap(0, &t);
  int32_t in_zp = m.input().zero_point();
  for (int li = 0; li < m.layers_size(); ++li) {
    const Layer& l = m.layers(li);
    const Shape& in = shapes[li];
    const Shape& out = shapes[li + 1];
    const LayerPlan& p = s.plans[li];
    s.b.resize(batch * Numel(out));
    const int32_t rhs_offset = -(in_zp + s.act_shift);
    if (l.has_fully_connected()) {
      const FullyConnected& fc = l.fully_connected();
      s.Gemm(p, 0, fc.output_channels(), fc.input_channels(), static_cast<int>(batch), p.weights.data(), s.a.data(),
             rhs_offset, l, s.b.data(), fc.output_channels());
    } else if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1], O = out[2];
      const int ig = c.input_channels() / c.groups(), og = c.output_channels() / c.groups();
      const int64_t pixels = batch * OH * OW;
      const int depth = static_cast<int>(p.fan_in);
      const bool pointwise = c.kernel_h() == 1 && c.kernel_w() == 1 && c.stride_h() == 1 && c.stride_w() == 1 &&
                             c.pad_top() == 0 && c.pad_left() == 0 && c.groups() == 1;
      for (int g = 0; g < c.groups(); ++g) {
        const uint8_t* rhs = s.a.data();
        if (!pointwise) {
          // im2col: column (b, oy, ox) holds the [kh][kw][ig] patch; outside the image the
          // input zero point, which the rhs offset turns into 0.
          s.patches.resize(static_cast<size_t>(pixels) * depth);
          const uint8_t pad = static_cast<uint8_t>(in_zp + s.act_shift);
          uint8_t* col = s.patches.data();
          for (int64_t b = 0; b < batch; ++b)
            for (int64_t oy = 0; oy < OH; ++oy)
              for (int64_t ox = 0; ox < OW; ++ox)
                for (int ky = 0; ky < c.kernel_h(); ++ky) {
                  const int64_t y = oy * c.stride_h() - c.pad_top() + ky;
                  for (int kx = 0; kx < c.kernel_w(); ++kx, col += ig) {
                    const int64_t x = ox * c.stride_w() - c.pad_left() + kx;
                    if (y < 0 || y >= H || x < 0 || x >= W) {
                      std::memset(col, pad, ig);
                    } else {
                      std::memcpy(col, s.a.data() + ((b * H + y) * W + x) * C + g * ig, ig);
                    }
                  }
                }
          rhs = s.patches.data();
        }
        s.Gemm(p, g * og, og, depth, static_cast<int>(pixels), p.weights.data() + static_cast<int64_t>(g) * og * depth,
               rhs, rhs_offset, l, s.b.data() + g * og, static_cast<int>(O));
      }
    } else if (l.has_max_pool2d()) {
      const Pool2D& pl = l.max_pool2d();
      const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1];
      const uint8_t lo = static_cast<uint8_t>(l.output_min() + s.act_shift);
      const uint8_t hi = static_cast<uint8_t>(l.output_max() + s.act_shift);
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox) {
            uint8_t* o = s.b.data() + ((b * OH + oy) * OW + ox) * C;
            std::fill(o, o + C, uint8_t{0});
            for (int ky = 0; ky < pl.kernel_h(); ++ky) {
              const int64_t y = oy * pl.stride_h() - pl.pad_top() + ky;
              if (y < 0 || y >= H) continue;
              for (int kx = 0; kx < pl.kernel_w(); ++kx) {
                const int64_t x = ox * pl.stride_w() - pl.pad_left() + kx;
                if (x < 0 || x >= W) continue;
                const uint8_t* src = s.a.data() + ((b * H + y) * W + x) * C;
                for (int64_t ch = 0; ch < C; ++ch) o[ch] = std::max(o[ch], src[ch]);
              }
            }
            for (int64_t ch = 0; ch < C; ++ch) o[ch] = std::min(std::max(o[ch], lo), hi);
          }
    } else {  // flatten
      const uint8_t lo = static_cast<uint8_t>(l.output_min() + s.act_shift);
      const uint8_t hi = static_cast<uint8_t>(l.output_max() + s.act_shift);
      for (size_t i = 0; i < s.b.size(); ++i) s.b[i] = std::min(std::max(s.a[i], lo), hi);
    }
    s.a.swap(s.b);
    in_zp = l.output().zero_point();
    if (profiling() && li + 1 < m.layers_size()) Lap(li + 1, &t);
  }
  output->quantized.resize(s.a.size());
  for (size_t i = 0; i < s.a.size(); ++i) output->quantized[i] = static_cast<int32_t>(s.a[i]) - s.act_shift;
  FinishIntegerOutput(batch, output);
  if (profiling()) Lap(m.layers_size(), &t);
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "gemmlowp", GemmlowpBackend::Create,
                  "gemmlowp GemmWithOutputPipeline (uint8 with offsets, fixed-point output stage), conv by im2col");

}  // namespace quant::backends
