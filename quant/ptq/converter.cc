#include "quant/ptq/converter.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/status_macros.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"

namespace quant::ptq {
namespace {

using backends::Layer;
using backends::QuantizedModel;

int64_t Numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string ShapeStr(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) absl::StrAppend(&out, i ? ", " : "", s[i]);
  return out + "]";
}

// "MaxPool2d(kernel=2, stride=2)" -> kernel, stride (the layer has no accessors).
bool ParsePool(const std::string& d, int* kernel, int* stride) {
  return std::sscanf(d.c_str(), "MaxPool2d(kernel=%d, stride=%d)", kernel, stride) == 2;
}

// Shapes ([H, W, C] or [C]) after each layer of a float net: shapes[0] the input.
absl::StatusOr<std::vector<backends::Shape>> NetShapes(const QuantizedModel& m) {
  std::vector<backends::Shape> shapes;
  shapes.push_back(backends::Shape(m.input_shape().begin(), m.input_shape().end()));
  for (const Layer& l : m.layers()) {
    backends::Shape s = shapes.back();
    if (l.has_fully_connected()) {
      s = {l.fully_connected().output_channels()};
    } else if (l.has_conv2d()) {
      const backends::Conv2D& c = l.conv2d();
      s = {(s[0] + c.pad_top() + c.pad_bottom() - c.kernel_h()) / c.stride_h() + 1,
           (s[1] + c.pad_left() + c.pad_right() - c.kernel_w()) / c.stride_w() + 1, c.output_channels()};
    } else if (l.has_max_pool2d()) {
      const backends::Pool2D& p = l.max_pool2d();
      s = {(s[0] + p.pad_top() + p.pad_bottom() - p.kernel_h()) / p.stride_h() + 1,
           (s[1] + p.pad_left() + p.pad_right() - p.kernel_w()) / p.stride_w() + 1, s[2]};
    } else {
      s = {Numel(s)};
    }
    shapes.push_back(std::move(s));
  }
  return shapes;
}

bool FiniteScale(float s) { return std::isfinite(s) && s > 0.0f; }

}  // namespace

absl::StatusOr<FloatNet> ExtractFloatNet(nn::Model& model) {
  if (!model.built()) return absl::FailedPreconditionError("ExtractFloatNet: the model is not built");
  FloatNet net;
  QuantizedModel& m = net.model;
  m.set_format_version(backends::kQuantizedModelFormatVersion);
  m.set_source_model(model.name());
  std::vector<int64_t> shape = model.sample_shape();  // NCHW-style, [C, H, W] or [F]
  net.nn_input_shape = shape;
  if (shape.size() == 3) {
    for (int64_t d : {shape[1], shape[2], shape[0]}) m.add_input_shape(static_cast<int32_t>(d));
  } else {
    for (int64_t d : shape) m.add_input_shape(static_cast<int32_t>(d));
  }
  std::vector<int64_t> pre_flatten;  // [C, H, W] before a flatten, until the next linear
  // Whether the last integer-model layer can still absorb a BatchNorm / an activation.
  auto last_weighted_open = [&]() {
    if (m.layers_size() == 0 || net.weighted.empty()) return false;
    const Layer& l = m.layers(m.layers_size() - 1);
    return (l.has_fully_connected() || l.has_conv2d()) && net.weighted.back().index == m.layers_size() - 1 &&
           l.fused_activation() == backends::ACTIVATION_NONE;
  };
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& layer = model.layer(i);
    const std::string desc = layer.Describe();
    auto fail = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat("layer ", i, " '", layer.name(), "' (", desc,
                                                     "): no backend can run it: ", why));
    };
    if (auto* lin = dynamic_cast<nn::Linear*>(&layer)) {
      if (shape.size() != 1) return fail(absl::StrCat("a linear layer on a ", ShapeStr(shape), " input"));
      const int64_t in = lin->in_features(), out = lin->out_features();
      WeightedLayer w;
      w.index = m.layers_size();
      w.name = layer.name();
      w.torch_weight = lin->weight().value;
      w.bias.assign(out, 0.0f);
      if (lin->bias().value.numel() == out) {
        std::copy(lin->bias().value.data(), lin->bias().value.data() + out, w.bias.begin());
      }
      w.perm.resize(in * out);
      const bool permute = pre_flatten.size() == 3 && pre_flatten[0] > 1;
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t j = 0; j < in; ++j) w.perm[o * in + j] = o * in + j;
      }
      if (permute) {
        const int64_t C = pre_flatten[0], H = pre_flatten[1], W = pre_flatten[2];
        for (int64_t o = 0; o < out; ++o) {
          for (int64_t c = 0; c < C; ++c) {
            for (int64_t h = 0; h < H; ++h) {
              for (int64_t x = 0; x < W; ++x) {
                w.perm[o * in + (h * W + x) * C + c] = o * in + c * H * W + h * W + x;
              }
            }
          }
        }
      }
      pre_flatten.clear();
      Layer* l = m.add_layers();
      l->set_name(layer.name());
      l->mutable_fully_connected()->set_input_channels(static_cast<int32_t>(in));
      l->mutable_fully_connected()->set_output_channels(static_cast<int32_t>(out));
      net.weighted.push_back(std::move(w));
      shape = {out};
    } else if (auto* conv = dynamic_cast<nn::Conv2d*>(&layer)) {
      if (shape.size() != 3) return fail(absl::StrCat("a conv on a ", ShapeStr(shape), " input"));
      const nn::Conv2dOptions& o = conv->options();
      const int64_t C = shape[0], k = o.kernel, O = o.out_channels;
      WeightedLayer w;
      w.index = m.layers_size();
      w.name = layer.name();
      w.torch_weight = conv->weight().value;
      w.bias.assign(O, 0.0f);
      if (conv->bias().value.numel() == O) {
        std::copy(conv->bias().value.data(), conv->bias().value.data() + O, w.bias.begin());
      }
      w.perm.resize(O * k * k * C);
      for (int64_t oc = 0; oc < O; ++oc) {
        for (int64_t ky = 0; ky < k; ++ky) {
          for (int64_t kx = 0; kx < k; ++kx) {
            for (int64_t c = 0; c < C; ++c) {
              w.perm[((oc * k + ky) * k + kx) * C + c] = ((oc * C + c) * k + ky) * k + kx;
            }
          }
        }
      }
      Layer* l = m.add_layers();
      l->set_name(layer.name());
      backends::Conv2D* c = l->mutable_conv2d();
      c->set_input_channels(static_cast<int32_t>(C));
      c->set_output_channels(static_cast<int32_t>(O));
      c->set_groups(1);
      c->set_kernel_h(static_cast<int32_t>(k));
      c->set_kernel_w(static_cast<int32_t>(k));
      c->set_stride_h(static_cast<int32_t>(o.stride));
      c->set_stride_w(static_cast<int32_t>(o.stride));
      for (auto set : {&backends::Conv2D::set_pad_top, &backends::Conv2D::set_pad_bottom,
                       &backends::Conv2D::set_pad_left, &backends::Conv2D::set_pad_right}) {
        (c->*set)(static_cast<int32_t>(o.padding));
      }
      net.weighted.push_back(std::move(w));
      shape = {O, (shape[1] + 2 * o.padding - k) / o.stride + 1, (shape[2] + 2 * o.padding - k) / o.stride + 1};
    } else if (auto* bn = dynamic_cast<nn::BatchNorm*>(&layer)) {
      if (!last_weighted_open()) {
        return fail("a BatchNorm is folded into the conv/linear right before it, and there is none");
      }
      // w' = w * gamma / sqrt(var + eps); b' = (b - mean) * gamma / sqrt(var + eps) + beta.
      WeightedLayer& w = net.weighted.back();
      const int64_t O = static_cast<int64_t>(w.bias.size());
      const int64_t per_o = w.torch_weight.numel() / O;
      for (int64_t oc = 0; oc < O; ++oc) {
        const double g = bn->weight().value.data()[oc], beta = bn->bias().value.data()[oc];
        const double mean = bn->running_mean().data()[oc], var = bn->running_var().data()[oc];
        const double f = g / std::sqrt(var + static_cast<double>(bn->eps()));
        float* row = w.torch_weight.data() + oc * per_o;
        for (int64_t j = 0; j < per_o; ++j) row[j] = static_cast<float>(row[j] * f);
        w.bias[oc] = static_cast<float>((w.bias[oc] - mean) * f + beta);
      }
    } else if (dynamic_cast<nn::Clamp*>(&layer) != nullptr) {
      backends::Activation a;
      if (desc == "ReLU()") {
        a = backends::RELU;
      } else if (desc == "ReLU6()") {
        a = backends::RELU6;
      } else {
        return fail("only ReLU and ReLU6 are fused (as output clamps)");
      }
      if (!last_weighted_open()) {
        return fail("an activation is fused into the conv/linear right before it, and there is none");
      }
      m.mutable_layers(m.layers_size() - 1)->set_fused_activation(a);
    } else if (dynamic_cast<nn::Pool2d*>(&layer) != nullptr) {
      int k = 0, s = 0;
      if (!ParsePool(desc, &k, &s)) return fail("only max pooling runs on integers");
      Layer* l = m.add_layers();
      l->set_name(layer.name());
      backends::Pool2D* p = l->mutable_max_pool2d();
      p->set_kernel_h(k);
      p->set_kernel_w(k);
      p->set_stride_h(s);
      p->set_stride_w(s);
      shape = {shape[0], (shape[1] - k) / s + 1, (shape[2] - k) / s + 1};
    } else if (dynamic_cast<nn::Flatten*>(&layer) != nullptr) {
      if (shape.size() == 3) {
        pre_flatten = shape;
        Layer* l = m.add_layers();
        l->set_name(layer.name());
        l->mutable_flatten();
        shape = {Numel(shape)};
      }
    } else if (dynamic_cast<nn::Dropout*>(&layer) != nullptr) {
      continue;  // identity at inference
    } else {
      return fail("this layer type has no integer form");
    }
  }
  if (net.weighted.empty()) return absl::InvalidArgumentError("the model has no conv/linear layer to quantize");
  // Float weights in the model layout.
  for (const WeightedLayer& w : net.weighted) {
    Layer* l = m.mutable_layers(w.index);
    auto* fw = l->has_fully_connected() ? l->mutable_fully_connected()->mutable_float_weights()
                                        : l->mutable_conv2d()->mutable_float_weights();
    auto* fb = l->has_fully_connected() ? l->mutable_fully_connected()->mutable_float_bias()
                                        : l->mutable_conv2d()->mutable_float_bias();
    fw->Resize(static_cast<int>(w.perm.size()), 0.0f);
    for (size_t j = 0; j < w.perm.size(); ++j) fw->Set(static_cast<int>(j), w.torch_weight.data()[w.perm[j]]);
    fb->Assign(w.bias.begin(), w.bias.end());
  }
  return net;
}

std::vector<float> ToNhwc(const float* images, int64_t n, const std::vector<int64_t>& chw) {
  const int64_t per = Numel(chw);
  if (chw.size() != 3 || chw[0] == 1) return std::vector<float>(images, images + n * per);
  const int64_t C = chw[0], HW = chw[1] * chw[2];
  std::vector<float> out(n * per);
  for (int64_t b = 0; b < n; ++b) {
    const float* src = images + b * per;
    float* dst = out.data() + b * per;
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t p = 0; p < HW; ++p) dst[p * C + c] = src[c * HW + p];
    }
  }
  return out;
}

std::vector<float> ToNhwc(const Tensor& images) {
  std::vector<int64_t> chw(images.shape().begin() + 1, images.shape().end());
  return ToNhwc(images.data(), images.shape()[0], chw);
}

absl::Status FloatForward(const QuantizedModel& net, const float* input, int64_t batch, std::vector<float>* logits,
                          const Hook& before, const Hook& after) {
  ASSIGN_OR_RETURN(std::vector<backends::Shape> shapes, NetShapes(net));
  std::vector<float> a(input, input + batch * Numel(shapes[0])), b, col;
  int widx = 0;
  for (int li = 0; li < net.layers_size(); ++li) {
    const Layer& l = net.layers(li);
    const int64_t n_out = batch * Numel(shapes[li + 1]);
    b.resize(n_out);
    if (l.has_fully_connected() || l.has_conv2d()) {
      if (before) RETURN_IF_ERROR(before(widx, a.data(), static_cast<int64_t>(a.size())));
      ++widx;
    }
    if (l.has_fully_connected()) {
      const backends::FullyConnected& fc = l.fully_connected();
      backends::floatk::FullyConnected(a.data(), batch, fc.input_channels(), fc.output_channels(),
                                       fc.float_weights().data(), fc.float_bias().data(), b.data());
    } else if (l.has_conv2d()) {
      backends::floatk::Conv2D(a.data(), batch, shapes[li], shapes[li + 1], l.conv2d(),
                               l.conv2d().float_weights().data(), l.conv2d().float_bias().data(), &col, b.data());
    } else if (l.has_max_pool2d()) {
      backends::floatk::MaxPool2D(a.data(), batch, shapes[li], shapes[li + 1], l.max_pool2d(), b.data());
    } else {
      std::copy(a.begin(), a.begin() + n_out, b.begin());
    }
    backends::floatk::Activate(l.fused_activation(), b.data(), n_out);
    if (after) RETURN_IF_ERROR(after(li, b.data(), n_out));
    a.swap(b);
  }
  *logits = std::move(a);
  return absl::OkStatus();
}

absl::StatusOr<StaticQuantizers> MakeStaticQuantizers(const FloatNet& net, const QuantConfig& config) {
  StaticQuantizers q;
  auto check_activation = [&](const std::string& name, const std::unique_ptr<Quantizer>& a) -> absl::Status {
    if (a == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': activations are float (none); a static integer model quantizes every activation"));
    }
    const QuantSpec& s = a->spec();
    if (s.granularity != Granularity::kPerTensor) {
      return absl::InvalidArgumentError(absl::StrCat("layer '", name, "': activations must be per_tensor, are ",
                                                     GranularityName(s.granularity)));
    }
    if (s.bits > 8) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", name, "': activations of ", s.bits, " bits do not fit int8/uint8"));
    }
    if (q.input != nullptr && s.is_signed != q.input->spec().is_signed) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': activations are ", s.is_signed ? "signed" : "unsigned", " but the input's are ",
          q.input->spec().is_signed ? "signed" : "unsigned", "; the integer model has one activation dtype"));
    }
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(q.input, config.ActivationQuantizer("input"));
  RETURN_IF_ERROR(check_activation("input", q.input));
  for (const WeightedLayer& w : net.weighted) {
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> wq, config.WeightQuantizer(w.name));
    if (wq == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", w.name, "': weights are float (none); a static integer model needs them quantized"));
    }
    const QuantSpec& s = wq->spec();
    if (s.granularity == Granularity::kPerBlock) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", w.name, "': per_block (per-group) weights have no integer form in the QuantizedModel; "
                             "use ptq.method weight_only"));
    }
    if (s.granularity == Granularity::kPerChannel && s.axis != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", w.name, "': per-channel weights must use axis 0 (output channels), not ", s.axis));
    }
    if (s.bits > 8 || s.bits < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", w.name, "': weights of ", s.bits, " bits; the integer model holds 2..8"));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> aq, config.ActivationQuantizer(w.name));
    RETURN_IF_ERROR(check_activation(w.name, aq));
    q.weights.push_back(std::move(wq));
    q.activations.push_back(std::move(aq));
  }
  return q;
}

absl::StatusOr<QuantizedModel> QuantizeStatic(const FloatNet& net, StaticQuantizers& q, const float* calibration,
                                              int64_t n, int64_t batch_size) {
  if (n <= 0) return absl::InvalidArgumentError("static PTQ needs at least one calibration image");
  const int64_t per = Numel(std::vector<int64_t>(net.model.input_shape().begin(), net.model.input_shape().end()));
  std::vector<int> weighted_of(net.model.layers_size(), -1);
  for (size_t k = 0; k < net.weighted.size(); ++k) weighted_of[net.weighted[k].index] = static_cast<int>(k);
  // Calibration: the float model's activations (after fused ReLU/ReLU6), as PyTorch's observers see them.
  std::vector<float> logits;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t b = std::min(batch_size, n - start);
    const float* x = calibration + start * per;
    if (absl::Status s = q.input->Observe(Tensor({b * per}, std::vector<float>(x, x + b * per))); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer 'input' activations, calibration images ", start, "..", start + b - 1, ": ",
                       std::string(s.message())));
    }
    RETURN_IF_ERROR(FloatForward(net.model, x, b, &logits, nullptr, [&](int li, float* y, int64_t count) {
      if (weighted_of[li] < 0) return absl::OkStatus();
      absl::Status s =
          q.activations[weighted_of[li]]->Observe(Tensor({count}, std::vector<float>(y, y + count)));
      if (s.ok()) return s;
      return absl::InvalidArgumentError(absl::StrCat("layer '", net.weighted[weighted_of[li]].name,
                                                     "' activations, calibration images ", start, "..",
                                                     start + b - 1, ": ", std::string(s.message())));
    }));
  }
  auto compute = [](Quantizer& qz, const std::string& what) -> absl::Status {
    absl::Status s = qz.ComputeQParams();
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", std::string(s.message())));
    for (float sc : qz.qparams().scale) {
      if (!FiniteScale(sc)) {
        return absl::InvalidArgumentError(absl::StrCat(
            what, ": calibration gave scale ", sc,
            " (a degenerate calibration batch: constant, empty or non-finite values?)"));
      }
    }
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(compute(*q.input, "layer 'input' activations"));
  QuantizedModel m = net.model;
  const QParams& iq = q.input->qparams();
  const backends::DType act_dtype = q.input->spec().is_signed ? backends::INT8 : backends::UINT8;
  m.mutable_input()->set_scale(iq.scale[0]);
  m.mutable_input()->set_zero_point(iq.zero_point[0]);
  m.mutable_input()->set_dtype(act_dtype);
  backends::TensorQuant cur = m.input();
  for (int li = 0; li < m.layers_size(); ++li) {
    Layer* l = m.mutable_layers(li);
    const int k = weighted_of[li];
    if (k < 0) {  // max pool / flatten: integers pass through with the input's qparams
      *l->mutable_output() = cur;
      l->set_output_min(backends::DTypeMin(act_dtype));
      l->set_output_max(backends::DTypeMax(act_dtype));
      continue;
    }
    const WeightedLayer& w = net.weighted[k];
    Quantizer& wq = *q.weights[k];
    Quantizer& aq = *q.activations[k];
    RETURN_IF_ERROR(compute(aq, absl::StrCat("layer '", w.name, "' activations")));
    RETURN_IF_ERROR(wq.Observe(w.torch_weight));
    RETURN_IF_ERROR(compute(wq, absl::StrCat("layer '", w.name, "' weights")));
    std::vector<int32_t> ints;
    RETURN_IF_ERROR(wq.QuantizeToInt(w.torch_weight, &ints));
    const QParams& wp = wq.qparams();
    const backends::DType wdtype = wq.spec().is_signed ? backends::INT8 : backends::UINT8;
    backends::WeightQuant wquant;
    wquant.set_dtype(wdtype);
    wquant.set_bits(wq.spec().bits);
    for (float s : wp.scale) wquant.add_scale(s);
    for (int32_t z : wp.zero_point) wquant.add_zero_point(z);
    std::string bytes(w.perm.size(), '\0');
    for (size_t j = 0; j < w.perm.size(); ++j) {
      const int32_t v = ints[w.perm[j]];
      bytes[j] = static_cast<char>(wdtype == backends::INT8 ? static_cast<uint8_t>(static_cast<int8_t>(v))
                                                            : static_cast<uint8_t>(v));
    }
    const int O = static_cast<int>(w.bias.size());
    std::vector<int32_t> bias(O);
    for (int o = 0; o < O; ++o) {
      const double s = static_cast<double>(cur.scale()) * static_cast<double>(wp.scale[wp.size() == 1 ? 0 : o]);
      const double v = std::nearbyint(static_cast<double>(w.bias[o]) / s);
      bias[o] = static_cast<int32_t>(std::min<double>(std::max<double>(v, INT32_MIN), INT32_MAX));
    }
    auto fill = [&](auto* op) {
      op->set_weights(bytes);
      *op->mutable_weight_quant() = wquant;
      op->mutable_bias()->Assign(bias.begin(), bias.end());
    };
    if (l->has_fully_connected()) fill(l->mutable_fully_connected());
    if (l->has_conv2d()) fill(l->mutable_conv2d());
    const QParams& ap = aq.qparams();
    backends::TensorQuant out;
    out.set_scale(ap.scale[0]);
    out.set_zero_point(ap.zero_point[0]);
    out.set_dtype(act_dtype);
    *l->mutable_output() = out;
    int32_t lo = static_cast<int32_t>(ap.quant_min), hi = static_cast<int32_t>(ap.quant_max);
    if (l->fused_activation() == backends::RELU || l->fused_activation() == backends::RELU6) {
      lo = std::max(lo, out.zero_point());
    }
    if (l->fused_activation() == backends::RELU6) {
      const double six = std::nearbyint(6.0 / static_cast<double>(out.scale())) + out.zero_point();
      hi = static_cast<int32_t>(std::min<double>(hi, six));
    }
    l->set_output_min(lo);
    l->set_output_max(hi);
    cur = out;
  }
  RETURN_IF_ERROR(backends::ComputeRequantization(&m));
  RETURN_IF_ERROR(backends::ValidateQuantizedModel(m));
  return m;
}

}  // namespace quant::ptq
