#include "quant/backends/xnnpack_float_backend.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

BackendProfile FloatProfile(const char* name, bool f16) {
  BackendProfile p;
  p.backend = name;
  p.float_model = true;
  p.max_pool2d_single_element = false;
  p.requantization = "none: runs the float model";
  const char* t = f16 ? "f16" : "f32";
  p.ops = {{"fully_connected", {}, absl::StrCat("fully_connected_nc_", t)},
           {"conv2d", {}, absl::StrCat("convolution2d_nhwc_", t)},
           {"max_pool2d", {}, absl::StrCat("max_pooling2d_nhwc_", t)},
           {"global_average_pool", {}, absl::StrCat("global_average_pooling_nwc_", t)},
           {"add", {}, absl::StrCat("add_nd_", t)},
           {"hardswish", {}, absl::StrCat("hardswish_nc_", t)},
           {"flatten", {}, "a copy"},
           {"reshape", {}, "a copy"}};
  if (!f16) {  // XNNPACK 2022-02 has these in f32 only; tanh and concat in neither
    p.ops.push_back({"average_pool2d", {}, "average_pooling2d_nhwc_f32"});
    p.ops.push_back({"sigmoid", {}, "sigmoid_nc_f32"});
  }
  return p;
}

void ActivationRange(Activation a, float* lo, float* hi) {
  *lo = a == ACTIVATION_NONE ? -std::numeric_limits<float>::infinity() : 0.0f;
  *hi = a == RELU6 ? 6.0f : std::numeric_limits<float>::infinity();
}

}  // namespace

const BackendProfile& XnnpackFloatBackend::ProfileF32() {
  static const BackendProfile* p = new BackendProfile(FloatProfile("xnnpack_f32", false));
  return *p;
}
const BackendProfile& XnnpackFloatBackend::ProfileF16() {
  static const BackendProfile* p = new BackendProfile(FloatProfile("xnnpack_f16", true));
  return *p;
}

absl::StatusOr<std::unique_ptr<Backend>> XnnpackFloatBackend::CreateF32(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new XnnpackFloatBackend(false));
}
absl::StatusOr<std::unique_ptr<Backend>> XnnpackFloatBackend::CreateF16(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new XnnpackFloatBackend(true));
}

absl::Status XnnpackFloatBackend::BeginPrepare() {
  RETURN_IF_ERROR(xnn::Initialize());
  ops_.clear();
  ops_.resize(model().ops_size());
  if (f16_) {
    const size_t in_c = Numel(input_shape()), out_c = Numel(output_shape());
    xnn_operator_t op = nullptr;
    xnn_status st = xnn_create_convert_nc_f32_f16(in_c, in_c, in_c, 0, &op);
    convert_in_.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, name(), "input conversion", "xnn_create_convert_nc_f32_f16"));
    op = nullptr;
    st = xnn_create_convert_nc_f16_f32(out_c, out_c, out_c, 0, &op);
    convert_out_.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, name(), "output conversion", "xnn_create_convert_nc_f16_f32"));
  }
  return absl::OkStatus();
}

absl::Status XnnpackFloatBackend::PrepareOp(int i) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  const std::string where = OpLabel(m, i);
  const uint32_t wflags = f16_ ? XNN_FLAG_FP32_STATIC_WEIGHTS : 0;
  xnn_operator_t op = nullptr;
  xnn_status st = xnn_status_success;
  const char* call = "";
  float lo, hi;
  ActivationRange(l.fused_activation(), &lo, &hi);
  const Shape& out = shapes()[l.outputs(0)];
  const float* w = WeightTensor(l) >= 0 ? m.tensors(WeightTensor(l)).float_data().data() : nullptr;
  const float* bias = BiasTensor(l) >= 0 && m.tensors(BiasTensor(l)).float_data_size()
                          ? m.tensors(BiasTensor(l)).float_data().data()
                          : nullptr;
  switch (l.options_case()) {
    case Op::kFullyConnected: {
      const size_t in_c = shapes()[l.inputs(0)][0], out_c = out[0];
      call = f16_ ? "xnn_create_fully_connected_nc_f16" : "xnn_create_fully_connected_nc_f32";
      st = f16_ ? xnn_create_fully_connected_nc_f16(in_c, out_c, in_c, out_c, w, bias, lo, hi, wflags, &op)
                : xnn_create_fully_connected_nc_f32(in_c, out_c, in_c, out_c, w, bias, lo, hi, 0, &op);
      break;
    }
    case Op::kConv2D: {
      const Conv2DOptions& c = l.conv2d();
      const size_t g = c.groups(), in_c = shapes()[l.inputs(0)][2], out_c = out[2];
      call = f16_ ? "xnn_create_convolution2d_nhwc_f16" : "xnn_create_convolution2d_nhwc_f32";
      st = f16_ ? xnn_create_convolution2d_nhwc_f16(c.pad_top(), c.pad_right(), c.pad_bottom(), c.pad_left(),
                                                    c.kernel_h(), c.kernel_w(), c.stride_h(), c.stride_w(), 1, 1, g,
                                                    in_c / g, out_c / g, in_c, out_c, w, bias, lo, hi, wflags, &op)
                : xnn_create_convolution2d_nhwc_f32(c.pad_top(), c.pad_right(), c.pad_bottom(), c.pad_left(),
                                                    c.kernel_h(), c.kernel_w(), c.stride_h(), c.stride_w(), 1, 1, g,
                                                    in_c / g, out_c / g, in_c, out_c, w, bias, lo, hi, 0, &op);
      break;
    }
    case Op::kMaxPool2D: {
      const Pool2DOptions& p = l.max_pool2d();
      const size_t ch = out[2];
      call = f16_ ? "xnn_create_max_pooling2d_nhwc_f16" : "xnn_create_max_pooling2d_nhwc_f32";
      st = f16_ ? xnn_create_max_pooling2d_nhwc_f16(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(),
                                                    p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch,
                                                    ch, ch, lo, hi, 0, &op)
                : xnn_create_max_pooling2d_nhwc_f32(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(),
                                                    p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch,
                                                    ch, ch, lo, hi, 0, &op);
      break;
    }
    case Op::kAveragePool2D: {
      const Pool2DOptions& p = l.average_pool2d();
      const size_t ch = out[2];
      call = "xnn_create_average_pooling2d_nhwc_f32";
      st = xnn_create_average_pooling2d_nhwc_f32(0, 0, 0, 0, p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), ch,
                                                 ch, ch, lo, hi, 0, &op);
      break;
    }
    case Op::kGlobalAveragePool: {
      const size_t ch = out[0];
      call = f16_ ? "xnn_create_global_average_pooling_nwc_f16" : "xnn_create_global_average_pooling_nwc_f32";
      st = f16_ ? xnn_create_global_average_pooling_nwc_f16(ch, ch, ch, lo, hi, 0, &op)
                : xnn_create_global_average_pooling_nwc_f32(ch, ch, ch, lo, hi, 0, &op);
      break;
    }
    case Op::kAdd:
      call = f16_ ? "xnn_create_add_nd_f16" : "xnn_create_add_nd_f32";
      st = f16_ ? xnn_create_add_nd_f16(lo, hi, 0, &op) : xnn_create_add_nd_f32(lo, hi, 0, &op);
      break;
    case Op::kHardswish: {
      const size_t ch = Numel(out);
      call = f16_ ? "xnn_create_hardswish_nc_f16" : "xnn_create_hardswish_nc_f32";
      st = f16_ ? xnn_create_hardswish_nc_f16(ch, ch, ch, 0, &op) : xnn_create_hardswish_nc_f32(ch, ch, ch, 0, &op);
      break;
    }
    case Op::kSigmoid: {
      const size_t ch = Numel(out);
      call = "xnn_create_sigmoid_nc_f32";
      st = xnn_create_sigmoid_nc_f32(ch, ch, ch, 0, &op);
      break;
    }
    case Op::kFlatten:
    case Op::kReshape:
      break;
    default:
      return absl::UnimplementedError(absl::StrCat("backend '", name(), "' cannot run ", where, ": rule: ", OpKind(l),
                                                   " has no XNNPACK float operator in this release"));
  }
  ops_[i].reset(op);
  return xnn::Check(st, name(), where, call);
}

absl::Status XnnpackFloatBackend::SetUpBatch(int64_t batch) {
  const QuantizedModel& m = model();
  const size_t n = static_cast<size_t>(batch);
  for (int i = 0; i < m.ops_size(); ++i) {
    if (!ops_[i]) continue;
    const Op& l = m.ops(i);
    const Shape& is = shapes()[l.inputs(0)];
    const void* in = Buffer(l.inputs(0));
    void* out = Buffer(l.outputs(0));
    const float* fi = static_cast<const float*>(in);
    float* fo = static_cast<float*>(out);
    xnn_operator_t op = ops_[i].get();
    xnn_status s = xnn_status_success;
    switch (l.options_case()) {
      case Op::kFullyConnected:
        s = f16_ ? xnn_setup_fully_connected_nc_f16(op, n, in, out, nullptr)
                 : xnn_setup_fully_connected_nc_f32(op, n, fi, fo, nullptr);
        break;
      case Op::kConv2D:
        s = f16_ ? xnn_setup_convolution2d_nhwc_f16(op, n, is[0], is[1], in, out, nullptr)
                 : xnn_setup_convolution2d_nhwc_f32(op, n, is[0], is[1], fi, fo, nullptr);
        break;
      case Op::kMaxPool2D:
        s = f16_ ? xnn_setup_max_pooling2d_nhwc_f16(op, n, is[0], is[1], in, out, nullptr)
                 : xnn_setup_max_pooling2d_nhwc_f32(op, n, is[0], is[1], fi, fo, nullptr);
        break;
      case Op::kAveragePool2D:
        s = xnn_setup_average_pooling2d_nhwc_f32(op, n, is[0], is[1], fi, fo, nullptr);
        break;
      case Op::kGlobalAveragePool:
        s = f16_ ? xnn_setup_global_average_pooling_nwc_f16(op, n, is[0] * is[1], in, out, nullptr)
                 : xnn_setup_global_average_pooling_nwc_f32(op, n, is[0] * is[1], fi, fo, nullptr);
        break;
      case Op::kAdd: {
        const size_t shape[1] = {n * static_cast<size_t>(Numel(is))};
        const void* in2 = Buffer(l.inputs(1));
        s = f16_ ? xnn_setup_add_nd_f16(op, 1, shape, 1, shape, in, in2, out, nullptr)
                 : xnn_setup_add_nd_f32(op, 1, shape, 1, shape, fi, static_cast<const float*>(in2), fo, nullptr);
        break;
      }
      case Op::kHardswish:
        s = f16_ ? xnn_setup_hardswish_nc_f16(op, n, in, out, nullptr) : xnn_setup_hardswish_nc_f32(op, n, fi, fo, nullptr);
        break;
      case Op::kSigmoid:
        s = xnn_setup_sigmoid_nc_f32(op, n, fi, fo, nullptr);
        break;
      default:
        break;
    }
    RETURN_IF_ERROR(xnn::Check(s, name(), OpLabel(m, i), "xnn_setup_*"));
  }
  if (f16_) {
    output_.resize(n * Numel(output_shape()));
    RETURN_IF_ERROR(xnn::Check(
        xnn_setup_convert_nc_f16_f32(convert_out_.get(), n, Buffer(OutputTensor(m)), output_.data(), nullptr), name(),
        "output conversion", "xnn_setup_convert_nc_f16_f32"));
  }
  return absl::OkStatus();
}

absl::Status XnnpackFloatBackend::RunInput(const float* input, int64_t batch, void* out) {
  if (!f16_) {
    std::memcpy(out, input, static_cast<size_t>(batch * Numel(input_shape())) * sizeof(float));
    return absl::OkStatus();
  }
  xnn_status s = xnn_setup_convert_nc_f32_f16(convert_in_.get(), batch, input, out, nullptr);
  if (s != xnn_status_success) return xnn::Check(s, name(), "input conversion", "xnn_setup_convert_nc_f32_f16");
  s = xnn_run_operator(convert_in_.get(), nullptr);
  return s == xnn_status_success ? absl::OkStatus() : xnn::Check(s, name(), "input conversion", "xnn_run_operator");
}

absl::Status XnnpackFloatBackend::RunOp(int i, int64_t batch) {
  const Op& l = model().ops(i);
  if (!ops_[i]) {  // flatten / reshape
    std::memcpy(Buffer(l.outputs(0)), Buffer(l.inputs(0)),
                static_cast<size_t>(batch * Numel(shapes()[l.outputs(0)])) * ElementBytes());
    return absl::OkStatus();
  }
  const xnn_status s = xnn_run_operator(ops_[i].get(), nullptr);
  return s == xnn_status_success ? absl::OkStatus() : xnn::Check(s, name(), OpLabel(model(), i), "xnn_run_operator");
}

void XnnpackFloatBackend::WriteOutput(const void* out, int64_t batch, RunOutput* output) {
  const size_t count = static_cast<size_t>(batch * Numel(output_shape()));
  if (f16_) {
    // Errors here are impossible after a successful setup; keep the record honest anyway.
    if (xnn_run_operator(convert_out_.get(), nullptr) != xnn_status_success) output_.assign(count, NAN);
    output->logits.assign(output_.begin(), output_.begin() + count);
  } else {
    const float* f = static_cast<const float*>(out);
    output->logits.assign(f, f + count);
  }
  output->shape = {batch};
  for (int64_t d : output_shape()) output->shape.push_back(d);
  output->dtype = DTYPE_UNSPECIFIED;
  output->quantized.clear();
}

QUANTLAB_REGISTER(Backend, "xnnpack_f32", XnnpackFloatBackend::CreateF32,
                  "the float model on XNNPACK f32 operators (speed baseline)");
QUANTLAB_REGISTER(Backend, "xnnpack_f16", XnnpackFloatBackend::CreateF16,
                  "the float model on XNNPACK f16 operators (fp32 weights converted at creation)");

}  // namespace quant::backends
