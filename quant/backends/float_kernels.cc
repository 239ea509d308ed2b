#include "quant/backends/float_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/status_macros.h"

#include "quant/nn/gemm.h"

namespace quant::backends::floatk {

void FullyConnected(const float* x, int64_t batch, int in, int out, const float* w, const float* bias,
                    float* y) {
  nn::Sgemm(false, true, static_cast<int>(batch), out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (bias == nullptr) return;
  for (int64_t b = 0; b < batch; ++b) {
    float* row = y + b * out;
    for (int o = 0; o < out; ++o) row[o] += bias[o];
  }
}

void Conv2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const Conv2DOptions& c,
            const float* w, const float* bias, std::vector<float>* col, float* y) {
  const int64_t ih = in[0], iw = in[1], ic = in[2], oh = out[0], ow = out[1], oc = out[2];
  const int kh = c.kernel_h(), kw = c.kernel_w(), groups = c.groups();
  const int64_t icg = ic / groups, ocg = oc / groups;
  if (groups == 1) {
    const int64_t k = kh * kw * ic;
    const int64_t rows = batch * oh * ow;
    col->assign(rows * k, 0.0f);
    float* cp = col->data();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t y0 = 0; y0 < oh; ++y0) {
        for (int64_t x0 = 0; x0 < ow; ++x0, cp += k) {
          for (int ky = 0; ky < kh; ++ky) {
            const int64_t sy = y0 * c.stride_h() - c.pad_top() + ky;
            if (sy < 0 || sy >= ih) continue;
            for (int kx = 0; kx < kw; ++kx) {
              const int64_t sx = x0 * c.stride_w() - c.pad_left() + kx;
              if (sx < 0 || sx >= iw) continue;
              const float* src = x + ((b * ih + sy) * iw + sx) * ic;
              std::copy(src, src + ic, cp + (ky * kw + kx) * ic);
            }
          }
        }
      }
    }
    FullyConnected(col->data(), rows, static_cast<int>(k), static_cast<int>(oc), w, bias, y);
    return;
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t y0 = 0; y0 < oh; ++y0) {
      for (int64_t x0 = 0; x0 < ow; ++x0) {
        float* dst = y + ((b * oh + y0) * ow + x0) * oc;
        for (int64_t o = 0; o < oc; ++o) {
          const int64_t g = o / ocg;
          float acc = bias != nullptr ? bias[o] : 0.0f;
          for (int ky = 0; ky < kh; ++ky) {
            const int64_t sy = y0 * c.stride_h() - c.pad_top() + ky;
            if (sy < 0 || sy >= ih) continue;
            for (int kx = 0; kx < kw; ++kx) {
              const int64_t sx = x0 * c.stride_w() - c.pad_left() + kx;
              if (sx < 0 || sx >= iw) continue;
              const float* src = x + ((b * ih + sy) * iw + sx) * ic + g * icg;
              const float* wp = w + ((o * kh + ky) * kw + kx) * icg;
              for (int64_t i = 0; i < icg; ++i) acc += src[i] * wp[i];
            }
          }
          dst[o] = acc;
        }
      }
    }
  }
}

void MaxPool2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const Pool2DOptions& p, float* y) {
  const int64_t ih = in[0], iw = in[1], c = in[2], oh = out[0], ow = out[1];
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t y0 = 0; y0 < oh; ++y0) {
      for (int64_t x0 = 0; x0 < ow; ++x0) {
        float* dst = y + ((b * oh + y0) * ow + x0) * c;
        std::fill(dst, dst + c, -std::numeric_limits<float>::infinity());
        for (int ky = 0; ky < p.kernel_h(); ++ky) {
          const int64_t sy = y0 * p.stride_h() - p.pad_top() + ky;
          if (sy < 0 || sy >= ih) continue;
          for (int kx = 0; kx < p.kernel_w(); ++kx) {
            const int64_t sx = x0 * p.stride_w() - p.pad_left() + kx;
            if (sx < 0 || sx >= iw) continue;
            const float* src = x + ((b * ih + sy) * iw + sx) * c;
            for (int64_t i = 0; i < c; ++i) dst[i] = std::max(dst[i], src[i]);
          }
        }
      }
    }
  }
}

void Activate(Activation a, float* y, int64_t n) {
  if (a == RELU) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::max(y[i], 0.0f);
  } else if (a == RELU6) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], 0.0f), 6.0f);
  }
}

OpWeights FloatWeights(const QuantizedModel& m, const Op& op, bool dequantize) {
  OpWeights w;
  const int wt = WeightTensor(op), bt = BiasTensor(op);
  if (wt < 0) return w;
  const Tensor& wten = m.tensors(wt);
  const int64_t O = wten.shape(0);
  if (!dequantize) {
    w.weights.assign(wten.float_data().begin(), wten.float_data().end());
    if (bt >= 0) w.bias.assign(m.tensors(bt).float_data().begin(), m.tensors(bt).float_data().end());
  } else {
    const std::vector<int32_t> q = TensorValues(wten);
    const int64_t per = static_cast<int64_t>(q.size()) / O;
    w.weights.resize(q.size());
    const double s_in = TensorScale(m.tensors(op.inputs(0)));
    for (int64_t o = 0; o < O; ++o) {
      const int c = IsPerChannel(wten) ? static_cast<int>(o) : 0;
      const float s = TensorScale(wten, c);
      const int32_t zp = TensorZeroPoint(wten, c);
      for (int64_t i = 0; i < per; ++i) w.weights[o * per + i] = s * static_cast<float>(q[o * per + i] - zp);
      if (bt >= 0) {
        const Tensor& b = m.tensors(bt);
        w.bias.push_back(b.float_data_size() == O ? b.float_data(static_cast<int>(o))
                                                  : static_cast<float>(b.int_data(static_cast<int>(o)) * s_in * s));
      }
    }
  }
  if (w.bias.empty()) w.bias.assign(O, 0.0f);
  return w;
}

void RunOp(const QuantizedModel& m, const std::vector<Shape>& shapes, int op_index, int64_t batch,
           const std::vector<const float*>& inputs, const OpWeights& w, std::vector<float>* col, float* y) {
  const Op& op = m.ops(op_index);
  const Shape& in = shapes[op.inputs(0)];
  const Shape& out = shapes[op.outputs(0)];
  const float* x = inputs[0];
  const int64_t n_out = batch * Numel(out);
  switch (op.options_case()) {
    case Op::kFullyConnected:
      FullyConnected(x, batch, static_cast<int>(in[0]), static_cast<int>(out[0]), w.weights.data(), w.bias.data(), y);
      break;
    case Op::kConv2D:
      Conv2D(x, batch, in, out, op.conv2d(), w.weights.data(), w.bias.data(), col, y);
      break;
    case Op::kMaxPool2D:
      MaxPool2D(x, batch, in, out, op.max_pool2d(), y);
      break;
    case Op::kAveragePool2D: {
      const Pool2DOptions& p = op.average_pool2d();
      const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1];
      const float inv = 1.0f / static_cast<float>(p.kernel_h() * p.kernel_w());
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox)
            for (int64_t c = 0; c < C; ++c) {
              float sum = 0.0f;
              for (int ky = 0; ky < p.kernel_h(); ++ky)
                for (int kx = 0; kx < p.kernel_w(); ++kx) {
                  sum += x[((b * H + oy * p.stride_h() + ky) * W + ox * p.stride_w() + kx) * C + c];
                }
              y[((b * OH + oy) * OW + ox) * C + c] = sum * inv;
            }
      break;
    }
    case Op::kGlobalAveragePool: {
      const int64_t P = in[0] * in[1], C = in[2];
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t c = 0; c < C; ++c) {
          float sum = 0.0f;
          for (int64_t i = 0; i < P; ++i) sum += x[(b * P + i) * C + c];
          y[b * C + c] = sum / static_cast<float>(P);
        }
      break;
    }
    case Op::kAdd:
      for (int64_t i = 0; i < n_out; ++i) y[i] = x[i] + inputs[1][i];
      break;
    case Op::kConcat: {
      const int64_t pixels = n_out / out.back();
      float* dst = y;
      for (int64_t px = 0; px < pixels; ++px) {
        for (int k = 0; k < op.inputs_size(); ++k) {
          const int64_t c = shapes[op.inputs(k)].back();
          std::copy(inputs[k] + px * c, inputs[k] + (px + 1) * c, dst);
          dst += c;
        }
      }
      break;
    }
    case Op::kHardswish:
    case Op::kSigmoid:
    case Op::kTanh:
      for (int64_t i = 0; i < n_out; ++i) y[i] = LookupFunction(op.options_case(), x[i]);
      break;
    default:  // flatten, reshape: NHWC order is already the flat order
      std::copy(x, x + n_out, y);
      break;
  }
  Activate(op.fused_activation(), y, n_out);
}

absl::Status RunGraph(const QuantizedModel& m, int64_t batch, std::vector<std::vector<float>>* values,
                      const RunOptions& options) {
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(m));
  values->resize(m.tensors_size());
  const int last = options.last_op < 0 ? m.ops_size() - 1 : options.last_op;
  std::vector<float> col, before_scratch;
  std::vector<const float*> inputs;
  for (int i = options.first_op; i <= last; ++i) {
    const Op& op = m.ops(i);
    inputs.clear();
    for (int k = 0; k < op.inputs_size(); ++k) {
      const int t = op.inputs(k);
      if (IsConstant(m.tensors(t))) continue;
      std::vector<float>& v = (*values)[t];
      if (static_cast<int64_t>(v.size()) != batch * Numel(shapes[t])) {
        return absl::FailedPreconditionError(absl::StrCat("float executor: ", OpLabel(m, i), ": input tensor ", t, " '",
                                                          m.tensors(t).name(), "' has no value (run the ops before it)"));
      }
      inputs.push_back(v.data());
    }
    if ((op.has_fully_connected() || op.has_conv2d()) && !options.dequantize &&
        m.tensors(WeightTensor(op)).float_data_size() == 0) {
      return absl::FailedPreconditionError(absl::StrCat("float executor: ", OpLabel(m, i), " has no float weights"));
    }
    if (options.before) {
      // The hook modifies a copy of the op's first input: other consumers of the
      // tensor (a residual branch) still read the original.
      before_scratch.assign(inputs[0], inputs[0] + (*values)[op.inputs(0)].size());
      RETURN_IF_ERROR(options.before(i, before_scratch.data(), static_cast<int64_t>(before_scratch.size())));
      inputs[0] = before_scratch.data();
    }
    std::vector<float>& y = (*values)[op.outputs(0)];
    y.resize(batch * Numel(shapes[op.outputs(0)]));
    RunOp(m, shapes, i, batch, inputs, FloatWeights(m, op, options.dequantize), &col, y.data());
    if (options.after) RETURN_IF_ERROR(options.after(i, y.data(), static_cast<int64_t>(y.size())));
  }
  return absl::OkStatus();
}

absl::Status Forward(const QuantizedModel& m, const float* input, int64_t batch, std::vector<float>* output,
                     const RunOptions& options) {
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(m));
  std::vector<std::vector<float>> values(m.tensors_size());
  const int in = InputTensor(m);
  values[in].assign(input, input + batch * Numel(shapes[in]));
  RETURN_IF_ERROR(RunGraph(m, batch, &values, options));
  *output = std::move(values[OutputTensor(m)]);
  return absl::OkStatus();
}

}  // namespace quant::backends::floatk
