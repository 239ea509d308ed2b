#include "quant/backends/xnnpack_backend.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::backends {

static_assert(Im2col::kSlack >= XNN_EXTRA_BYTES, "XNNPACK reads past the end of the im2col patches");
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
    p->ops = {
        {"fully_connected", {}, "fully_connected_nc_qs8/qu8, qc8 as a 1x1 convolution"},
        {"conv2d", {}, "convolution2d_nhwc_qs8/qc8/qu8 (groups: grouped and depthwise)"},
        {"max_pool2d", {}, "max_pooling2d_nhwc_s8/u8"},
        {"average_pool2d", {UINT8}, "XNNPACK 2022-02 has average_pooling2d_nhwc_qu8 only"},
        {"global_average_pool", {}, "global_average_pooling_nwc_qs8/qu8"},
        {"add", {}, "add_nd_qs8/qu8"},
        {"sigmoid", {}, "sigmoid_nc_qs8/qu8 (XNNPACK's own table)"},
        {"tanh", {}, "tanh_nc_qs8/qu8 (XNNPACK's own table)"},
        {"flatten", {}, "a copy"},
        {"reshape", {}, "a copy"},
    };  // no concat, no hardswish: XNNPACK 2022-02 has no int8 operator for them
    // xnn_create_*_qs8/qc8/qu8 reject requantization scales >= 256 (probed in the test).
    p->max_requantization_scale = 256.0;
    p->max_pool2d_single_element = false;  // xnn_create_max_pooling2d_*: invalid_parameter
    p->fixed_sigmoid_tanh_output = true;   // xnn_create_sigmoid/tanh_nc_*: unsupported_parameter otherwise
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

absl::Status XnnpackBackend::BeginPrepare() {
  RETURN_IF_ERROR(xnn::Initialize());
  const Tensor& q = model().tensors(InputTensor(model()));
  s8_ = q.dtype() == INT8;
  steps_.clear();
  steps_.resize(model().ops_size());
  const size_t channels = static_cast<size_t>(Numel(input_shape()));
  xnn_operator_t op = nullptr;
  const xnn_status st =
      s8_ ? xnn_create_convert_nc_f32_qs8(channels, channels, channels, TensorScale(q),
                                          static_cast<int8_t>(TensorZeroPoint(q)), -128, 127, 0, &op)
          : xnn_create_convert_nc_f32_qu8(channels, channels, channels, TensorScale(q),
                                          static_cast<uint8_t>(TensorZeroPoint(q)), 0, 255, 0, &op);
  convert_.reset(op);
  return xnn::Check(st, name(), "input quantization",
                    s8_ ? "xnn_create_convert_nc_f32_qs8" : "xnn_create_convert_nc_f32_qu8");
}

absl::Status XnnpackBackend::PrepareOp(int i) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  const std::string where = OpLabel(m, i);
  const bool s8 = s8_;
  Step& step = steps_[i];
  xnn_operator_t op = nullptr;
  xnn_status st = xnn_status_success;
  const char* call = "";
  const Tensor& x = m.tensors(l.inputs(0));
  const Tensor& yt = m.tensors(l.outputs(0));
  const float s_in = TensorScale(x), s_out = TensorScale(yt);
  const int32_t zp_in = TensorZeroPoint(x), zp_out = TensorZeroPoint(yt);
  const Shape& in_shape = shapes()[l.inputs(0)];
  const Shape& out_shape = shapes()[l.outputs(0)];
  const int8_t lo8 = static_cast<int8_t>(l.output_min()), hi8 = static_cast<int8_t>(l.output_max());
  const uint8_t lou = static_cast<uint8_t>(l.output_min()), hiu = static_cast<uint8_t>(l.output_max());
  // A weighted op: FC (fc = true) or conv with geometry (groups, kh, kw, pads, strides).
  auto weighted = [&](bool fc, size_t groups, size_t kh, size_t kw, uint32_t pt, uint32_t pr, uint32_t pb,
                      uint32_t pl, uint32_t sh, uint32_t sw) {
    const Tensor& w = m.tensors(WeightTensor(l));
    const size_t out_c = w.shape(0);
    const size_t in_c = Numel(TensorShape(w)) / out_c / kh / kw * groups;
    std::vector<int32_t> zero_bias;
    const int32_t* bias = nullptr;
    if (BiasTensor(l) >= 0) {
      bias = m.tensors(BiasTensor(l)).int_data().data();
    } else {
      zero_bias.assign(out_c, 0);
      bias = zero_bias.data();
    }
    const void* kernel = w.data().data();
    if (s8 && IsPerChannel(w)) {
      call = "xnn_create_convolution2d_nhwc_qc8";
      std::vector<float> scales(w.scale().begin(), w.scale().end());
      st = xnn_create_convolution2d_nhwc_qc8(pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups,
                                             out_c / groups, in_c, out_c, static_cast<int8_t>(zp_in), s_in,
                                             scales.data(), static_cast<const int8_t*>(kernel), bias,
                                             static_cast<int8_t>(zp_out), s_out, lo8, hi8, 0, &op);
      step.conv_api = true;
    } else if (s8 && fc) {
      call = "xnn_create_fully_connected_nc_qs8";
      st = xnn_create_fully_connected_nc_qs8(in_c, out_c, in_c, out_c, static_cast<int8_t>(zp_in), s_in, w.scale(0),
                                             static_cast<const int8_t*>(kernel), bias, static_cast<int8_t>(zp_out),
                                             s_out, lo8, hi8, 0, &op);
    } else if (s8) {
      call = "xnn_create_convolution2d_nhwc_qs8";
      st = xnn_create_convolution2d_nhwc_qs8(pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups,
                                             out_c / groups, in_c, out_c, static_cast<int8_t>(zp_in), s_in,
                                             w.scale(0), static_cast<const int8_t*>(kernel), bias,
                                             static_cast<int8_t>(zp_out), s_out, lo8, hi8, 0, &op);
      step.conv_api = true;
    } else if (fc) {
      call = "xnn_create_fully_connected_nc_qu8";
      st = xnn_create_fully_connected_nc_qu8(in_c, out_c, in_c, out_c, static_cast<uint8_t>(zp_in), s_in,
                                             static_cast<uint8_t>(w.zero_point(0)), w.scale(0),
                                             static_cast<const uint8_t*>(kernel), bias, static_cast<uint8_t>(zp_out),
                                             s_out, lou, hiu, 0, &op);
    } else {
      call = "xnn_create_convolution2d_nhwc_qu8";
      st = xnn_create_convolution2d_nhwc_qu8(pt, pr, pb, pl, kh, kw, sh, sw, 1, 1, groups, in_c / groups,
                                             out_c / groups, in_c, out_c, static_cast<uint8_t>(zp_in), s_in,
                                             static_cast<uint8_t>(w.zero_point(0)), w.scale(0),
                                             static_cast<const uint8_t*>(kernel), bias, static_cast<uint8_t>(zp_out),
                                             s_out, lou, hiu, 0, &op);
      step.conv_api = true;
    }
  };
  switch (l.options_case()) {
    case Op::kFullyConnected:
      weighted(true, 1, 1, 1, 0, 0, 0, 0, 1, 1);
      break;
    case Op::kConv2D: {
      const Conv2DOptions& c = l.conv2d();
      if (c.groups() == 1 && in_shape[2] < kIm2colBelowChannels) {
        // XNNPACK's int8 conv kernels on x86 reduce in blocks of 8 bytes per kernel tap
        // (kr = 8): 8x waste for one channel. See im2col.h.
        step.im2col = std::make_unique<Im2col>(c, in_shape, out_shape, zp_in);
        weighted(true, 1, 1, 1, 0, 0, 0, 0, 1, 1);
      } else {
        weighted(false, c.groups(), c.kernel_h(), c.kernel_w(), c.pad_top(), c.pad_right(), c.pad_bottom(),
                 c.pad_left(), c.stride_h(), c.stride_w());
      }
      break;
    }
    case Op::kMaxPool2D: {
      const Pool2DOptions& p = l.max_pool2d();
      const size_t ch = static_cast<size_t>(out_shape[2]);
      call = s8 ? "xnn_create_max_pooling2d_nhwc_s8" : "xnn_create_max_pooling2d_nhwc_u8";
      st = s8 ? xnn_create_max_pooling2d_nhwc_s8(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(), p.kernel_h(),
                                                 p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch, ch, ch, lo8, hi8, 0,
                                                 &op)
              : xnn_create_max_pooling2d_nhwc_u8(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(), p.kernel_h(),
                                                 p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch, ch, ch, lou, hiu, 0,
                                                 &op);
      break;
    }
    case Op::kAveragePool2D: {
      const Pool2DOptions& p = l.average_pool2d();
      const size_t ch = static_cast<size_t>(out_shape[2]);
      call = "xnn_create_average_pooling2d_nhwc_qu8";
      st = xnn_create_average_pooling2d_nhwc_qu8(0, 0, 0, 0, p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), ch,
                                                 ch, ch, static_cast<uint8_t>(zp_in), s_in,
                                                 static_cast<uint8_t>(zp_out), s_out, lou, hiu, 0, &op);
      break;
    }
    case Op::kGlobalAveragePool: {
      const size_t ch = static_cast<size_t>(out_shape[0]);
      call = s8 ? "xnn_create_global_average_pooling_nwc_qs8" : "xnn_create_global_average_pooling_nwc_qu8";
      st = s8 ? xnn_create_global_average_pooling_nwc_qs8(ch, ch, ch, static_cast<int8_t>(zp_in), s_in,
                                                          static_cast<int8_t>(zp_out), s_out, lo8, hi8, 0, &op)
              : xnn_create_global_average_pooling_nwc_qu8(ch, ch, ch, static_cast<uint8_t>(zp_in), s_in,
                                                          static_cast<uint8_t>(zp_out), s_out, lou, hiu, 0, &op);
      break;
    }
    case Op::kAdd: {
      const Tensor& x2 = m.tensors(l.inputs(1));
      call = s8 ? "xnn_create_add_nd_qs8" : "xnn_create_add_nd_qu8";
      st = s8 ? xnn_create_add_nd_qs8(static_cast<int8_t>(zp_in), s_in, static_cast<int8_t>(TensorZeroPoint(x2)),
                                      TensorScale(x2), static_cast<int8_t>(zp_out), s_out, lo8, hi8, 0, &op)
              : xnn_create_add_nd_qu8(static_cast<uint8_t>(zp_in), s_in, static_cast<uint8_t>(TensorZeroPoint(x2)),
                                      TensorScale(x2), static_cast<uint8_t>(zp_out), s_out, lou, hiu, 0, &op);
      break;
    }
    case Op::kSigmoid:
    case Op::kTanh: {
      const size_t ch = static_cast<size_t>(Numel(out_shape));
      const bool sig = l.has_sigmoid();
      if (s8) {
        call = sig ? "xnn_create_sigmoid_nc_qs8" : "xnn_create_tanh_nc_qs8";
        st = (sig ? xnn_create_sigmoid_nc_qs8 : xnn_create_tanh_nc_qs8)(
            ch, ch, ch, static_cast<int8_t>(zp_in), s_in, static_cast<int8_t>(zp_out), s_out, lo8, hi8, 0, &op);
      } else {
        call = sig ? "xnn_create_sigmoid_nc_qu8" : "xnn_create_tanh_nc_qu8";
        st = (sig ? xnn_create_sigmoid_nc_qu8 : xnn_create_tanh_nc_qu8)(
            ch, ch, ch, static_cast<uint8_t>(zp_in), s_in, static_cast<uint8_t>(zp_out), s_out, lou, hiu, 0, &op);
      }
      break;
    }
    case Op::kFlatten:
    case Op::kReshape: {
      const DType d = x.dtype();
      step.clamp = ClampIsNarrower(l, d);
      break;
    }
    default:
      return absl::UnimplementedError(absl::StrCat("backend '", name(), "' cannot run ", where, ": rule: ", OpKind(l),
                                                   " has no XNNPACK int8 operator in this release"));
  }
  step.op.reset(op);
  return xnn::Check(st, name(), where, call);
}

absl::Status XnnpackBackend::SetUpBatch(int64_t batch) {
  const QuantizedModel& m = model();
  const bool s8 = s8_;
  const size_t n = static_cast<size_t>(batch);
  for (int i = 0; i < m.ops_size(); ++i) {
    Step& st = steps_[i];
    if (!st.op) continue;
    const Op& l = m.ops(i);
    const Shape& is = shapes()[l.inputs(0)];
    const std::string where = OpLabel(m, i);
    const uint8_t* in = Data<uint8_t>(l.inputs(0));
    uint8_t* out = Data<uint8_t>(l.outputs(0));
    auto* i8 = reinterpret_cast<const int8_t*>(in);
    auto* o8 = reinterpret_cast<int8_t*>(out);
    xnn_status s = xnn_status_success;
    switch (l.options_case()) {
      case Op::kFullyConnected:
      case Op::kConv2D: {
        if (l.has_conv2d() && !st.im2col) {
          if (!s8) {
            s = xnn_setup_convolution2d_nhwc_qu8(st.op.get(), n, is[0], is[1], in, out, nullptr);
          } else if (IsPerChannel(m.tensors(WeightTensor(l)))) {
            s = xnn_setup_convolution2d_nhwc_qc8(st.op.get(), n, is[0], is[1], i8, o8, nullptr);
          } else {
            s = xnn_setup_convolution2d_nhwc_qs8(st.op.get(), n, is[0], is[1], i8, o8, nullptr);
          }
          break;
        }
        size_t rows = n;
        if (st.im2col) {  // rows are the patches of every output pixel
          rows = n * st.im2col->pixels();
          st.im2col->Reserve(n);  // with slack for XNNPACK's reads past the end (im2col.cc)
          in = st.im2col->patches();
          i8 = reinterpret_cast<const int8_t*>(in);
        }
        if (st.conv_api) {  // per-channel FC as a 1x1 convolution over a batch*1x1 image
          s = s8 ? xnn_setup_convolution2d_nhwc_qc8(st.op.get(), rows, 1, 1, i8, o8, nullptr) : xnn_status_invalid_state;
        } else {
          s = s8 ? xnn_setup_fully_connected_nc_qs8(st.op.get(), rows, i8, o8, nullptr)
                 : xnn_setup_fully_connected_nc_qu8(st.op.get(), rows, in, out, nullptr);
        }
        break;
      }
      case Op::kMaxPool2D:
        s = s8 ? xnn_setup_max_pooling2d_nhwc_s8(st.op.get(), n, is[0], is[1], i8, o8, nullptr)
               : xnn_setup_max_pooling2d_nhwc_u8(st.op.get(), n, is[0], is[1], in, out, nullptr);
        break;
      case Op::kAveragePool2D:
        s = xnn_setup_average_pooling2d_nhwc_qu8(st.op.get(), n, is[0], is[1], in, out, nullptr);
        break;
      case Op::kGlobalAveragePool:
        s = s8 ? xnn_setup_global_average_pooling_nwc_qs8(st.op.get(), n, is[0] * is[1], i8, o8, nullptr)
               : xnn_setup_global_average_pooling_nwc_qu8(st.op.get(), n, is[0] * is[1], in, out, nullptr);
        break;
      case Op::kAdd: {
        const size_t shape[1] = {n * static_cast<size_t>(Numel(is))};
        const uint8_t* in2 = Data<uint8_t>(l.inputs(1));
        s = s8 ? xnn_setup_add_nd_qs8(st.op.get(), 1, shape, 1, shape, i8, reinterpret_cast<const int8_t*>(in2), o8,
                                      nullptr)
               : xnn_setup_add_nd_qu8(st.op.get(), 1, shape, 1, shape, in, in2, out, nullptr);
        break;
      }
      case Op::kSigmoid:
        s = s8 ? xnn_setup_sigmoid_nc_qs8(st.op.get(), n, i8, o8, nullptr)
               : xnn_setup_sigmoid_nc_qu8(st.op.get(), n, in, out, nullptr);
        break;
      case Op::kTanh:
        s = s8 ? xnn_setup_tanh_nc_qs8(st.op.get(), n, i8, o8, nullptr)
               : xnn_setup_tanh_nc_qu8(st.op.get(), n, in, out, nullptr);
        break;
      default:
        break;
    }
    RETURN_IF_ERROR(xnn::Check(s, name(), where, "xnn_setup_*"));
  }
  return absl::OkStatus();
}

absl::Status XnnpackBackend::RunInput(const float* input, int64_t batch, void* out) {
  // The input pointer changes between runs, so the (cheap, elementwise) convert is set up every time.
  // (Error strings only on failure: nothing is allocated per run.)
  const size_t n = static_cast<size_t>(batch);
  xnn_status s = s8_ ? xnn_setup_convert_nc_f32_qs8(convert_.get(), n, input, static_cast<int8_t*>(out), nullptr)
                     : xnn_setup_convert_nc_f32_qu8(convert_.get(), n, input, static_cast<uint8_t*>(out), nullptr);
  if (s != xnn_status_success) return xnn::Check(s, name(), "input quantization", "xnn_setup_convert_nc_f32_*");
  s = xnn_run_operator(convert_.get(), nullptr);
  return s == xnn_status_success ? absl::OkStatus()
                                 : xnn::Check(s, name(), "input quantization", "xnn_run_operator");
}

absl::Status XnnpackBackend::RunOp(int i, int64_t batch) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  Step& st = steps_[i];
  const uint8_t* in = Data<uint8_t>(l.inputs(0));
  uint8_t* out = Data<uint8_t>(l.outputs(0));
  if (!st.op) {  // flatten / reshape: NHWC data is already in order (plus a clamp if the model has one)
    const size_t count = static_cast<size_t>(batch * Numel(shapes()[l.outputs(0)]));
    std::memcpy(out, in, count);
    if (st.clamp) ClampBytes(out, static_cast<int64_t>(count), s8_, l.output_min(), l.output_max());
    return absl::OkStatus();
  }
  if (st.im2col) st.im2col->Run(in, batch);
  const xnn_status s = xnn_run_operator(st.op.get(), nullptr);
  return s == xnn_status_success ? absl::OkStatus() : xnn::Check(s, name(), OpLabel(m, i), "xnn_run_operator");
}

void XnnpackBackend::WriteOutput(const void* out, int64_t batch, RunOutput* output) {
  const int64_t count = batch * Numel(output_shape());
  q_.resize(static_cast<size_t>(count));
  WidenBytes(out, count, s8_, q_.data());
  FinishIntegerOutput(q_.data(), batch, output);
}

bool XnnpackBackend::ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const {
  (void)tensor;
  WidenBytes(data, count, s8_, out);
  return true;
}

bool XnnpackBackend::WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const {
  (void)tensor;
  NarrowToBytes(values, count, s8_, data);
  return true;
}

QUANTLAB_REGISTER(Backend, "xnnpack", XnnpackBackend::Create,
                  "XNNPACK int8 operators (qs8/qu8 fully connected and conv, qc8 per-channel, pools, add, "
                  "sigmoid/tanh)");

}  // namespace quant::backends
