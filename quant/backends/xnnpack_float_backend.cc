#include "quant/backends/xnnpack_float_backend.h"

#include <cmath>
#include <cstring>
#include <limits>

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

BackendProfile FloatProfile(const char* name) {
  BackendProfile p;
  p.backend = name;
  p.float_model = true;
  p.max_pool2d_single_element = false;
  p.requantization = "none: runs the float model";
  return p;
}

void ActivationRange(Activation a, float* lo, float* hi) {
  *lo = a == ACTIVATION_NONE ? -std::numeric_limits<float>::infinity() : 0.0f;
  *hi = a == RELU6 ? 6.0f : std::numeric_limits<float>::infinity();
}

}  // namespace

const BackendProfile& XnnpackFloatBackend::ProfileF32() {
  static const BackendProfile* p = new BackendProfile(FloatProfile("xnnpack_f32"));
  return *p;
}
const BackendProfile& XnnpackFloatBackend::ProfileF16() {
  static const BackendProfile* p = new BackendProfile(FloatProfile("xnnpack_f16"));
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

absl::Status XnnpackFloatBackend::PrepareImpl() {
  RETURN_IF_ERROR(xnn::Initialize());
  const QuantizedModel& m = model();
  const std::string& backend = name();
  steps_.clear();
  setup_batch_ = -1;
  const uint32_t wflags = f16_ ? XNN_FLAG_FP32_STATIC_WEIGHTS : 0;
  if (f16_) {
    const size_t in_c = Numel(shapes()[0]), out_c = Numel(shapes().back());
    xnn_operator_t op = nullptr;
    xnn_status st = xnn_create_convert_nc_f32_f16(in_c, in_c, in_c, 0, &op);
    convert_in_.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, backend, "input conversion", "xnn_create_convert_nc_f32_f16"));
    op = nullptr;
    st = xnn_create_convert_nc_f16_f32(out_c, out_c, out_c, 0, &op);
    convert_out_.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, backend, "output conversion", "xnn_create_convert_nc_f16_f32"));
  }
  for (int li = 0; li < m.layers_size(); ++li) {
    const Layer& l = m.layers(li);
    const std::string where = LayerLabel(m, li);
    Step step;
    xnn_operator_t op = nullptr;
    xnn_status st = xnn_status_success;
    const char* call = "";
    float lo, hi;
    ActivationRange(l.fused_activation(), &lo, &hi);
    if (l.has_fully_connected()) {
      const FullyConnected& fc = l.fully_connected();
      const size_t in = fc.input_channels(), out = fc.output_channels();
      const float* bias = fc.float_bias_size() ? fc.float_bias().data() : nullptr;
      call = f16_ ? "xnn_create_fully_connected_nc_f16" : "xnn_create_fully_connected_nc_f32";
      st = f16_ ? xnn_create_fully_connected_nc_f16(in, out, in, out, fc.float_weights().data(), bias, lo, hi, wflags,
                                                    &op)
                : xnn_create_fully_connected_nc_f32(in, out, in, out, fc.float_weights().data(), bias, lo, hi, 0, &op);
    } else if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      const size_t g = c.groups(), in = c.input_channels(), out = c.output_channels();
      const float* bias = c.float_bias_size() ? c.float_bias().data() : nullptr;
      step.conv = true;
      call = f16_ ? "xnn_create_convolution2d_nhwc_f16" : "xnn_create_convolution2d_nhwc_f32";
      st = f16_ ? xnn_create_convolution2d_nhwc_f16(c.pad_top(), c.pad_right(), c.pad_bottom(), c.pad_left(),
                                                    c.kernel_h(), c.kernel_w(), c.stride_h(), c.stride_w(), 1, 1, g,
                                                    in / g, out / g, in, out, c.float_weights().data(), bias, lo, hi,
                                                    wflags, &op)
                : xnn_create_convolution2d_nhwc_f32(c.pad_top(), c.pad_right(), c.pad_bottom(), c.pad_left(),
                                                    c.kernel_h(), c.kernel_w(), c.stride_h(), c.stride_w(), 1, 1, g,
                                                    in / g, out / g, in, out, c.float_weights().data(), bias, lo, hi,
                                                    0, &op);
    } else if (l.has_max_pool2d()) {
      const Pool2D& p = l.max_pool2d();
      const size_t ch = shapes()[li + 1][2];
      step.pool = true;
      call = f16_ ? "xnn_create_max_pooling2d_nhwc_f16" : "xnn_create_max_pooling2d_nhwc_f32";
      st = f16_ ? xnn_create_max_pooling2d_nhwc_f16(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(),
                                                    p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch,
                                                    ch, ch, lo, hi, 0, &op)
                : xnn_create_max_pooling2d_nhwc_f32(p.pad_top(), p.pad_right(), p.pad_bottom(), p.pad_left(),
                                                    p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), 1, 1, ch,
                                                    ch, ch, lo, hi, 0, &op);
    } else if (l.fused_activation() != ACTIVATION_NONE) {
      return absl::UnimplementedError(
          absl::StrCat("backend '", backend, "' cannot run ", where, ": rule: a fused activation on flatten"));
    }
    step.op.reset(op);
    RETURN_IF_ERROR(xnn::Check(st, backend, where, call));
    steps_.push_back(std::move(step));
  }
  return absl::OkStatus();
}

absl::Status XnnpackFloatBackend::SetUp(int64_t batch) {
  const size_t n = static_cast<size_t>(batch);
  const size_t elem = f16_ ? 2 : 4;
  const std::string& backend = name();
  xnn::ResizePadded(&input_, n * Numel(shapes()[0]) * elem);
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (steps_[i].op) xnn::ResizePadded(&steps_[i].out, n * Numel(shapes()[i + 1]) * elem);
  }
  const void* in = input_.data();
  for (size_t i = 0; i < steps_.size(); ++i) {
    Step& st = steps_[i];
    if (!st.op) continue;  // flatten
    const Shape& is = shapes()[i];
    void* out = st.out.data();
    xnn_status s;
    if (st.conv) {
      s = f16_ ? xnn_setup_convolution2d_nhwc_f16(st.op.get(), n, is[0], is[1], in, out, nullptr)
               : xnn_setup_convolution2d_nhwc_f32(st.op.get(), n, is[0], is[1], static_cast<const float*>(in),
                                                  static_cast<float*>(out), nullptr);
    } else if (st.pool) {
      s = f16_ ? xnn_setup_max_pooling2d_nhwc_f16(st.op.get(), n, is[0], is[1], in, out, nullptr)
               : xnn_setup_max_pooling2d_nhwc_f32(st.op.get(), n, is[0], is[1], static_cast<const float*>(in),
                                                  static_cast<float*>(out), nullptr);
    } else {
      s = f16_ ? xnn_setup_fully_connected_nc_f16(st.op.get(), n, in, out, nullptr)
               : xnn_setup_fully_connected_nc_f32(st.op.get(), n, static_cast<const float*>(in),
                                                  static_cast<float*>(out), nullptr);
    }
    RETURN_IF_ERROR(xnn::Check(s, backend, LayerLabel(model(), static_cast<int>(i)), "xnn_setup_*"));
    in = out;
  }
  if (f16_) {
    output_.resize(n * Numel(shapes().back()));
    RETURN_IF_ERROR(xnn::Check(xnn_setup_convert_nc_f16_f32(convert_out_.get(), n, in, output_.data(), nullptr),
                               backend, "output conversion", "xnn_setup_convert_nc_f16_f32"));
  }
  setup_batch_ = batch;
  return absl::OkStatus();
}

absl::Status XnnpackFloatBackend::RunImpl(const float* input, int64_t batch, RunOutput* output) {
  const std::string& backend = name();
  auto t = std::chrono::steady_clock::now();
  if (batch != setup_batch_) RETURN_IF_ERROR(SetUp(batch));
  const size_t n_in = static_cast<size_t>(batch * Numel(shapes()[0]));
  if (f16_) {
    RETURN_IF_ERROR(xnn::Check(
        xnn_setup_convert_nc_f32_f16(convert_in_.get(), batch, input, input_.data(), nullptr), backend,
        "input conversion", "xnn_setup_convert_nc_f32_f16"));
    RETURN_IF_ERROR(xnn::Check(xnn_run_operator(convert_in_.get(), nullptr), backend, "input conversion",
                               "xnn_run_operator"));
  } else {
    std::memcpy(input_.data(), input, n_in * sizeof(float));
  }
  if (profiling()) Lap(0, &t);
  const void* last = input_.data();
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (steps_[i].op) {
      RETURN_IF_ERROR(xnn::Check(xnn_run_operator(steps_[i].op.get(), nullptr), backend,
                                 LayerLabel(model(), static_cast<int>(i)), "xnn_run_operator"));
      last = steps_[i].out.data();
    }
    if (profiling() && i + 1 < steps_.size()) Lap(static_cast<int>(i) + 1, &t);
  }
  const size_t count = static_cast<size_t>(batch * Numel(shapes().back()));
  if (f16_) {
    RETURN_IF_ERROR(xnn::Check(xnn_run_operator(convert_out_.get(), nullptr), backend, "output conversion",
                               "xnn_run_operator"));
    output->logits.assign(output_.begin(), output_.begin() + count);
  } else {
    const float* f = static_cast<const float*>(last);
    output->logits.assign(f, f + count);
  }
  output->shape = {batch};
  for (int64_t d : shapes().back()) output->shape.push_back(d);
  output->dtype = DTYPE_UNSPECIFIED;
  output->quantized.clear();
  if (profiling()) Lap(static_cast<int>(steps_.size()), &t);
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "xnnpack_f32", XnnpackFloatBackend::CreateF32,
                  "the float model on XNNPACK f32 operators (speed baseline)");
QUANTLAB_REGISTER(Backend, "xnnpack_f16", XnnpackFloatBackend::CreateF16,
                  "the float model on XNNPACK f16 operators (fp32 weights converted at creation)");

}  // namespace quant::backends
