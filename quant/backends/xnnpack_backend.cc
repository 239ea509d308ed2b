#include "quant/backends/xnnpack_backend.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Convs with fewer input channels than this run as im2col + fully connected.
constexpr int kIm2colBelowChannels = 8;

}  // namespace

void XnnpackBackend::Im2col(const Conv2D& c, const Shape& in, const Shape& out, int64_t batch, const uint8_t* src,
                            Step* st) {
  const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1];
  const int64_t PW = W + c.pad_left() + c.pad_right();
  const int64_t row = c.kernel_w() * C;  // contiguous bytes of one kernel row of a patch
  const int64_t k = c.kernel_h() * row;
  uint8_t* dst = st->patches.data();
  for (int64_t b = 0; b < batch; ++b) {
    // The image into the interior of the padded buffer (borders keep the zero point).
    for (int64_t y = 0; y < H; ++y) {
      std::memcpy(st->padded.data() + ((y + c.pad_top()) * PW + c.pad_left()) * C, src + (b * H + y) * W * C, W * C);
    }
    if (row == 3 && c.kernel_h() == 3 && c.stride_w() == 1) {
      // The common first layer (3x3 over one channel, stride 1): three 4-byte moves per
      // patch (each 4th byte is rewritten by the next move; the buffers have slack).
      for (int64_t oy = 0; oy < OH; ++oy) {
        const uint8_t* r0 = st->padded.data() + oy * c.stride_h() * PW;
        const uint8_t* r1 = r0 + PW;
        const uint8_t* r2 = r1 + PW;
        for (int64_t ox = 0; ox < OW; ++ox, dst += 9) {
          uint32_t v0, v1, v2;
          std::memcpy(&v0, r0 + ox, 4);
          std::memcpy(&v1, r1 + ox, 4);
          std::memcpy(&v2, r2 + ox, 4);
          std::memcpy(dst, &v0, 4);
          std::memcpy(dst + 3, &v1, 4);
          std::memcpy(dst + 6, &v2, 4);
        }
      }
      continue;
    }
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox, dst += k) {
        const uint8_t* p = st->padded.data() + (oy * c.stride_h() * PW + ox * c.stride_w()) * C;
        for (int ky = 0; ky < c.kernel_h(); ++ky, p += PW * C) {
          std::memcpy(dst + ky * row, p, row);
        }
      }
    }
  }
}

const BackendProfile& XnnpackBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "xnnpack";
    const WeightSupport s8{INT8, INT8, true, true, false,
                           "XNNPACK qs8 (per-tensor) and qc8 (per-channel) take symmetric int8 weights"};
    const WeightSupport u8{UINT8, UINT8, true, false, true,
                           "XNNPACK qu8: per-tensor uint8 weights with a kernel zero point; no per-channel variant"};
    p->fully_connected = {s8, u8};
    p->conv2d = {s8, u8};
    // xnn_create_*_qs8/qc8/qu8 reject requantization scales >= 256 (probed in the test).
    p->max_requantization_scale = 256.0;
    p->max_pool2d_single_element = false;  // xnn_create_max_pooling2d_*: invalid_parameter
    p->requantization =
        "XNNPACK fp32 requantization: float(acc) * float(s_in*s_w/s_out), round to nearest even, + zero point";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> XnnpackBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new XnnpackBackend());
}

absl::Status XnnpackBackend::PrepareImpl() {
  RETURN_IF_ERROR(xnn::Initialize());
  const QuantizedModel& m = model();
  const bool s8 = m.input().dtype() == INT8;
  steps_.clear();
  setup_batch_ = -1;
  const std::string& backend = name();
  {
    const TensorQuant& q = m.input();
    const size_t channels = static_cast<size_t>(Numel(shapes()[0]));
    xnn_operator_t op = nullptr;
    const xnn_status st =
        s8 ? xnn_create_convert_nc_f32_qs8(channels, channels, channels, q.scale(),
                                           static_cast<int8_t>(q.zero_point()), -128, 127, 0, &op)
           : xnn_create_convert_nc_f32_qu8(channels, channels, channels, q.scale(),
                                           static_cast<uint8_t>(q.zero_point()), 0, 255, 0, &op);
    convert_.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, backend, "input quantization", s8 ? "xnn_create_convert_nc_f32_qs8"
                                                                     : "xnn_create_convert_nc_f32_qu8"));
  }
  float s_in = m.input().scale();
  int32_t zp_in = m.input().zero_point();
  for (int li = 0; li < m.layers_size(); ++li) {
    const Layer& l = m.layers(li);
    const std::string where = LayerLabel(m, li);
    const Shape& out_shape = shapes()[li + 1];
    Step step;
    xnn_operator_t op = nullptr;
    xnn_status st = xnn_status_success;
    const char* call = "";
    const int32_t zp_out = l.output().zero_point();
    const float s_out = l.output().scale();
    auto weighted = [&](const auto& w_op, size_t groups, size_t kh, size_t kw, const auto& geometry) {
      const WeightQuant& wq = w_op.weight_quant();
      const size_t out_c = w_op.output_channels();
      const size_t in_c = out_c == 0 ? 0 : w_op.weights().size() / out_c / kh / kw * groups;
      std::vector<int32_t> zero_bias;
      const int32_t* bias = w_op.bias().data();
      if (w_op.bias_size() == 0) {
        zero_bias.assign(out_c, 0);
        bias = zero_bias.data();
      }
      const void* kernel = w_op.weights().data();
      uint32_t pt, pr, pb, pl, sh, sw;
      geometry(&pt, &pr, &pb, &pl, &sh, &sw);
      if (s8 && IsPerChannel(wq)) {
        call = "xnn_create_convolution2d_nhwc_qc8";
        std::vector<float> scales(wq.scale().begin(), wq.scale().end());
        st = xnn_create_convolution2d_nhwc_qc8(
            pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups, out_c / groups, in_c, out_c,
            static_cast<int8_t>(zp_in), s_in, scales.data(), static_cast<const int8_t*>(kernel), bias,
            static_cast<int8_t>(zp_out), s_out, static_cast<int8_t>(l.output_min()),
            static_cast<int8_t>(l.output_max()), 0, &op);
        step.conv_api = true;
      } else if (s8 && step.kind == Kind::kFullyConnected) {
        call = "xnn_create_fully_connected_nc_qs8";
        st = xnn_create_fully_connected_nc_qs8(in_c, out_c, in_c, out_c, static_cast<int8_t>(zp_in), s_in,
                                               wq.scale(0), static_cast<const int8_t*>(kernel), bias,
                                               static_cast<int8_t>(zp_out), s_out,
                                               static_cast<int8_t>(l.output_min()),
                                               static_cast<int8_t>(l.output_max()), 0, &op);
      } else if (s8) {
        call = "xnn_create_convolution2d_nhwc_qs8";
        st = xnn_create_convolution2d_nhwc_qs8(
            pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups, out_c / groups, in_c, out_c,
            static_cast<int8_t>(zp_in), s_in, wq.scale(0), static_cast<const int8_t*>(kernel), bias,
            static_cast<int8_t>(zp_out), s_out, static_cast<int8_t>(l.output_min()),
            static_cast<int8_t>(l.output_max()), 0, &op);
        step.conv_api = true;
      } else if (step.kind == Kind::kFullyConnected) {
        call = "xnn_create_fully_connected_nc_qu8";
        st = xnn_create_fully_connected_nc_qu8(in_c, out_c, in_c, out_c, static_cast<uint8_t>(zp_in), s_in,
                                               static_cast<uint8_t>(wq.zero_point(0)), wq.scale(0),
                                               static_cast<const uint8_t*>(kernel), bias,
                                               static_cast<uint8_t>(zp_out), s_out,
                                               static_cast<uint8_t>(l.output_min()),
                                               static_cast<uint8_t>(l.output_max()), 0, &op);
      } else {
        call = "xnn_create_convolution2d_nhwc_qu8";
        st = xnn_create_convolution2d_nhwc_qu8(
            pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups, out_c / groups, in_c, out_c,
            static_cast<uint8_t>(zp_in), s_in, static_cast<uint8_t>(wq.zero_point(0)), wq.scale(0),
            static_cast<const uint8_t*>(kernel), bias, static_cast<uint8_t>(zp_out), s_out,
            static_cast<uint8_t>(l.output_min()), static_cast<uint8_t>(l.output_max()), 0, &op);
        step.conv_api = true;
      }
    };
    if (l.has_fully_connected()) {
      step.kind = Kind::kFullyConnected;
      weighted(l.fully_connected(), 1, 1, 1, [](uint32_t* pt, uint32_t* pr, uint32_t* pb, uint32_t* pl, uint32_t* sh,
                                                uint32_t* sw) { *pt = *pr = *pb = *pl = 0, *sh = *sw = 1; });
    } else if (l.has_conv2d() && l.conv2d().groups() == 1 && l.conv2d().input_channels() < kIm2colBelowChannels) {
      // XNNPACK's int8 conv kernels on x86 process the reduction in blocks of 8 bytes
      // per kernel tap (kr = 8), so a conv over 1..7 input channels (a first layer on
      // images) wastes most of each block: 8x for one channel. As im2col + a fully
      // connected layer, the reduction is all kh*kw*C values of a patch, padded once.
      // Padding uses the input zero point, exactly like XNNPACK's own convolution,
      // and the weights (OHWI) are already the [out][kh*kw*in] matrix: same results.
      const Conv2D& c = l.conv2d();
      step.kind = Kind::kFullyConnected;
      step.im2col = true;
      step.pixels = out_shape[0] * out_shape[1];
      weighted(c, 1, 1, 1, [](uint32_t* pt, uint32_t* pr, uint32_t* pb, uint32_t* pl, uint32_t* sh, uint32_t* sw) {
        *pt = *pr = *pb = *pl = 0, *sh = *sw = 1;
      });
      const Shape& is = shapes()[li];
      step.padded.assign((is[0] + c.pad_top() + c.pad_bottom()) * (is[1] + c.pad_left() + c.pad_right()) * is[2] +
                             XNN_EXTRA_BYTES,
                         static_cast<uint8_t>(zp_in));
    } else if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      step.kind = Kind::kConv;
      weighted(c, c.groups(), c.kernel_h(), c.kernel_w(),
               [&c](uint32_t* pt, uint32_t* pr, uint32_t* pb, uint32_t* pl, uint32_t* sh, uint32_t* sw) {
                 *pt = c.pad_top(), *pr = c.pad_right(), *pb = c.pad_bottom(), *pl = c.pad_left();
                 *sh = c.stride_h(), *sw = c.stride_w();
               });
    } else if (l.has_max_pool2d()) {
      const Pool2D& p = l.max_pool2d();
      step.kind = Kind::kMaxPool;
      const size_t ch = static_cast<size_t>(out_shape[2]);
      if (s8) {
        call = "xnn_create_max_pooling2d_nhwc_s8";
        st = xnn_create_max_pooling2d_nhwc_s8(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(), p.kernel_h(),
                                              p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch, ch, ch,
                                              static_cast<int8_t>(l.output_min()),
                                              static_cast<int8_t>(l.output_max()), 0, &op);
      } else {
        call = "xnn_create_max_pooling2d_nhwc_u8";
        st = xnn_create_max_pooling2d_nhwc_u8(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(), p.kernel_h(),
                                              p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch, ch, ch,
                                              static_cast<uint8_t>(l.output_min()),
                                              static_cast<uint8_t>(l.output_max()), 0, &op);
      }
    } else {
      step.kind = Kind::kFlatten;
      const DType d = m.input().dtype();
      step.clamp = l.output_min() > DTypeMin(d) || l.output_max() < DTypeMax(d);
    }
    step.op.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, backend, where, call));
    steps_.push_back(std::move(step));
    s_in = s_out;
    zp_in = zp_out;
  }
  return absl::OkStatus();
}

absl::Status XnnpackBackend::SetUp(int64_t batch, const float* input) {
  const QuantizedModel& m = model();
  const bool s8 = m.input().dtype() == INT8;
  const std::string& backend = name();
  const size_t n = static_cast<size_t>(batch);
  if (batch != setup_batch_) xnn::ResizePadded(&input_q_, n * Numel(shapes()[0]));
  // The input pointer changes between runs, so the (cheap, elementwise) convert is set up every time.
  RETURN_IF_ERROR(xnn::Check(
      s8 ? xnn_setup_convert_nc_f32_qs8(convert_.get(), n, input, reinterpret_cast<int8_t*>(input_q_.data()), nullptr)
         : xnn_setup_convert_nc_f32_qu8(convert_.get(), n, input, input_q_.data(), nullptr),
      backend, "input quantization", "xnn_setup_convert_nc_f32_*"));
  if (batch == setup_batch_) return absl::OkStatus();
  // Buffers first (setting up an operator records their addresses).
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (steps_[i].kind != Kind::kFlatten || steps_[i].clamp) {
      xnn::ResizePadded(&steps_[i].out, n * Numel(shapes()[i + 1]));
    }
  }
  const uint8_t* in = input_q_.data();
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& st = steps_[i];
    const Shape& is = shapes()[i];
    const std::string where = LayerLabel(m, static_cast<int>(i));
    xnn_status s = xnn_status_success;
    auto* i8 = reinterpret_cast<const int8_t*>(in);
    auto* o8 = reinterpret_cast<int8_t*>(st.out.data());
    switch (st.kind) {
      case Kind::kFullyConnected: {
        size_t rows = n;
        if (st.im2col) {  // rows are the patches of every output pixel
          rows = n * st.pixels;
          xnn::ResizePadded(&st.patches, rows * (m.layers(i).conv2d().weights().size() /
                                                 m.layers(i).conv2d().output_channels()));
          in = st.patches.data();
          i8 = reinterpret_cast<const int8_t*>(in);
        }
        if (st.conv_api) {  // per-channel FC as a 1x1 convolution over a batch*1x1 image
          s = s8 ? xnn_setup_convolution2d_nhwc_qc8(st.op.get(), rows, 1, 1, i8, o8, nullptr)
                 : xnn_status_invalid_state;
        } else {
          s = s8 ? xnn_setup_fully_connected_nc_qs8(st.op.get(), rows, i8, o8, nullptr)
                 : xnn_setup_fully_connected_nc_qu8(st.op.get(), rows, in, st.out.data(), nullptr);
        }
        break;
      }
      case Kind::kConv: {
        const WeightQuant& wq = m.layers(i).conv2d().weight_quant();
        if (!s8) {
          s = xnn_setup_convolution2d_nhwc_qu8(st.op.get(), n, is[0], is[1], in, st.out.data(), nullptr);
        } else if (IsPerChannel(wq)) {
          s = xnn_setup_convolution2d_nhwc_qc8(st.op.get(), n, is[0], is[1], i8, o8, nullptr);
        } else {
          s = xnn_setup_convolution2d_nhwc_qs8(st.op.get(), n, is[0], is[1], i8, o8, nullptr);
        }
        break;
      }
      case Kind::kMaxPool:
        s = s8 ? xnn_setup_max_pooling2d_nhwc_s8(st.op.get(), n, is[0], is[1], i8, o8, nullptr)
               : xnn_setup_max_pooling2d_nhwc_u8(st.op.get(), n, is[0], is[1], in, st.out.data(), nullptr);
        break;
      case Kind::kFlatten:
        break;
    }
    RETURN_IF_ERROR(xnn::Check(s, backend, where, "xnn_setup_*"));
    if (st.kind != Kind::kFlatten || st.clamp) in = st.out.data();  // a plain flatten aliases its input
  }
  setup_batch_ = batch;
  return absl::OkStatus();
}

absl::Status XnnpackBackend::RunImpl(const float* input, int64_t batch, RunOutput* output) {
  auto t = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(SetUp(batch, input));
  const QuantizedModel& m = model();
  const std::string& backend = name();
  RETURN_IF_ERROR(xnn::Check(xnn_run_operator(convert_.get(), nullptr), backend, "input quantization",
                             "xnn_run_operator"));
  if (profiling()) Lap(0, &t);
  const uint8_t* in = input_q_.data();
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& st = steps_[i];
    const size_t count = static_cast<size_t>(batch * Numel(shapes()[i + 1]));
    if (st.kind == Kind::kFlatten) {  // a no-op on NHWC data (plus a clamp if the model has one)
      if (!st.clamp) {
        if (profiling()) Lap(static_cast<int>(i) + 1, &t);
        continue;
      }
      std::copy(in, in + count, st.out.begin());
      {
        const Layer& l = m.layers(static_cast<int>(i));
        for (size_t j = 0; j < count; ++j) {
          int32_t v = m.input().dtype() == INT8 ? static_cast<int8_t>(st.out[j]) : st.out[j];
          v = std::min(std::max(v, l.output_min()), l.output_max());
          st.out[j] = static_cast<uint8_t>(v);
        }
      }
    } else {
      if (st.im2col) Im2col(m.layers(static_cast<int>(i)).conv2d(), shapes()[i], shapes()[i + 1], batch, in, &st);
      RETURN_IF_ERROR(xnn::Check(xnn_run_operator(st.op.get(), nullptr), backend, LayerLabel(m, static_cast<int>(i)),
                                 "xnn_run_operator"));
    }
    in = st.out.data();
    if (profiling() && i + 1 < steps_.size()) Lap(static_cast<int>(i) + 1, &t);
  }
  const size_t count = static_cast<size_t>(batch * Numel(shapes().back()));
  output->quantized.resize(count);
  const bool s8 = m.input().dtype() == INT8;
  for (size_t j = 0; j < count; ++j) output->quantized[j] = s8 ? static_cast<int8_t>(in[j]) : in[j];
  FinishIntegerOutput(batch, output);
  if (profiling()) Lap(static_cast<int>(steps_.size()), &t);
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "xnnpack", XnnpackBackend::Create,
                  "XNNPACK int8 operators (qs8/qu8 fully connected and conv, qc8 per-channel, s8/u8 max pool)");

}  // namespace quant::backends
