#include "quant/backends/model_builder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

Shape WindowOut(const Shape& in, int kh, int kw, int sh, int sw, int pt, int pb, int pl, int pr, int64_t channels) {
  return {(in[0] + pt + pb - kh) / sh + 1, (in[1] + pl + pr - kw) / sw + 1, channels};
}

struct AffineParams {
  float scale;
  int32_t zero_point;
};

// Affine qparams covering [lo, hi] (widened to include 0) on [qmin, qmax].
AffineParams ChooseAffine(float lo, float hi, int32_t qmin, int32_t qmax) {
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  float scale = (hi - lo) / static_cast<float>(qmax - qmin);
  if (!(scale > 0.0f)) scale = 1.0f;  // an all-zero tensor: any scale represents it
  const int32_t zp = static_cast<int32_t>(
      std::clamp<float>(std::nearbyint(static_cast<float>(qmin) - lo / scale), static_cast<float>(qmin),
                        static_cast<float>(qmax)));
  return {scale, zp};
}

void SetActivation(Tensor* t, DType dtype, AffineParams p) {
  t->set_dtype(dtype);
  t->clear_scale();
  t->clear_zero_point();
  t->add_scale(p.scale);
  t->add_zero_point(p.zero_point);
}

// Quantizes a weight tensor's float_data per `opt` (axis 0 = output channels).
void QuantizeWeights(Tensor* w, const QuantizeOptions& opt) {
  const int out = w->shape(0);
  const int64_t n = w->float_data_size();
  const int64_t fan_in = n / out;
  const int bits = opt.weight_bits;
  const bool s8 = opt.weight_dtype == INT8;
  const int32_t qmin = s8 ? -(1 << (bits - 1)) : 0;
  const int32_t qmax = s8 ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  w->set_dtype(opt.weight_dtype);
  w->set_bits(bits);
  w->clear_scale();
  w->clear_zero_point();
  w->set_quantized_dimension(0);
  const int groups = opt.per_channel ? out : 1;
  const int64_t per_group = opt.per_channel ? fan_in : n;
  std::string bytes(static_cast<size_t>(n), '\0');
  for (int g = 0; g < groups; ++g) {
    const float* v = w->float_data().data() + g * per_group;
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < per_group; ++i) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
    AffineParams p;
    if (opt.symmetric_weights) {
      // int8: [-qmax', qmax'] with qmax' = 2^(b-1)-1 and zero point 0; uint8: zero point 2^(b-1).
      const int32_t half = (1 << (bits - 1)) - 1;
      float scale = std::max(-lo, hi) / static_cast<float>(half);
      if (!(scale > 0.0f)) scale = 1.0f;
      p = {scale, s8 ? 0 : (1 << (bits - 1))};
    } else {
      p = ChooseAffine(lo, hi, qmin, qmax);
    }
    w->add_scale(p.scale);
    w->add_zero_point(p.zero_point);
    for (int64_t i = 0; i < per_group; ++i) {
      const int32_t q =
          std::clamp<int32_t>(static_cast<int32_t>(std::nearbyint(v[i] / p.scale)) + p.zero_point, qmin, qmax);
      bytes[g * per_group + i] = static_cast<char>(static_cast<uint8_t>(q & 0xff));
    }
  }
  w->set_data(bytes);
}

void QuantizeBias(Tensor* b, const Tensor& w, float s_in) {
  b->set_dtype(INT32);
  b->clear_int_data();
  for (int o = 0; o < b->float_data_size(); ++o) {
    const double s = static_cast<double>(s_in) * TensorScale(w, IsPerChannel(w) ? o : 0);
    b->add_int_data(static_cast<int32_t>(std::clamp(std::nearbyint(b->float_data(o) / s), -2147483648.0, 2147483647.0)));
  }
}

}  // namespace

GraphBuilder::GraphBuilder(const std::string& source_model, const Shape& input_shape) {
  m_.set_format_version(kQuantizedModelFormatVersion);
  m_.set_source_model(source_model);
  m_.add_inputs(AddTensor("input", input_shape, false));
}

int GraphBuilder::AddTensor(const std::string& name, const Shape& shape, bool constant) {
  Tensor* t = m_.add_tensors();
  t->set_name(name);
  for (int64_t d : shape) t->add_shape(static_cast<int32_t>(d));
  t->set_dtype(FLOAT32);
  if (constant) t->mutable_float_data()->Resize(static_cast<int>(Numel(shape)), 0.0f);
  shapes_.push_back(shape);
  return m_.tensors_size() - 1;
}

Op* GraphBuilder::AddOp(const std::string& name, const std::vector<int>& inputs, const Shape& out_shape,
                        Activation act, int* output) {
  *output = AddTensor(name, out_shape, false);
  Op* op = m_.add_ops();
  op->set_name(name);
  for (int t : inputs) op->add_inputs(t);
  op->add_outputs(*output);
  op->set_fused_activation(act);
  return op;
}

int GraphBuilder::FullyConnected(const std::string& name, int x, int out_features, Activation act) {
  const int w = AddTensor(name + ".weight", {out_features, shapes_[x][0]}, true);
  const int b = AddTensor(name + ".bias", {out_features}, true);
  int y;
  AddOp(name, {x, w, b}, {out_features}, act, &y)->mutable_fully_connected();
  return y;
}

int GraphBuilder::Conv2D(const std::string& name, int x, int out_channels, int groups, int kh, int kw, int stride,
                         std::array<int, 4> pads, Activation act) {
  const Shape in = shapes_[x];
  const int w = AddTensor(name + ".weight", {out_channels, kh, kw, in[2] / groups}, true);
  const int b = AddTensor(name + ".bias", {out_channels}, true);
  int y;
  Conv2DOptions* c = AddOp(name, {x, w, b},
                           WindowOut(in, kh, kw, stride, stride, pads[0], pads[1], pads[2], pads[3], out_channels), act,
                           &y)
                         ->mutable_conv2d();
  c->set_groups(groups);
  c->set_kernel_h(kh);
  c->set_kernel_w(kw);
  c->set_stride_h(stride);
  c->set_stride_w(stride);
  c->set_pad_top(pads[0]);
  c->set_pad_bottom(pads[1]);
  c->set_pad_left(pads[2]);
  c->set_pad_right(pads[3]);
  return y;
}

int GraphBuilder::MaxPool2D(const std::string& name, int x, int kernel, int stride, int pad) {
  const Shape in = shapes_[x];
  int y;
  Pool2DOptions* p =
      AddOp(name, {x}, WindowOut(in, kernel, kernel, stride, stride, pad, pad, pad, pad, in[2]), ACTIVATION_NONE, &y)
          ->mutable_max_pool2d();
  p->set_kernel_h(kernel);
  p->set_kernel_w(kernel);
  p->set_stride_h(stride);
  p->set_stride_w(stride);
  p->set_pad_top(pad);
  p->set_pad_bottom(pad);
  p->set_pad_left(pad);
  p->set_pad_right(pad);
  return y;
}

int GraphBuilder::AveragePool2D(const std::string& name, int x, int kernel, int stride) {
  const Shape in = shapes_[x];
  int y;
  Pool2DOptions* p =
      AddOp(name, {x}, WindowOut(in, kernel, kernel, stride, stride, 0, 0, 0, 0, in[2]), ACTIVATION_NONE, &y)
          ->mutable_average_pool2d();
  p->set_kernel_h(kernel);
  p->set_kernel_w(kernel);
  p->set_stride_h(stride);
  p->set_stride_w(stride);
  return y;
}

int GraphBuilder::GlobalAveragePool(const std::string& name, int x) {
  int y;
  AddOp(name, {x}, {shapes_[x][2]}, ACTIVATION_NONE, &y)->mutable_global_average_pool();
  return y;
}

int GraphBuilder::Add(const std::string& name, int a, int b, Activation act) {
  int y;
  AddOp(name, {a, b}, shapes_[a], act, &y)->mutable_add()->set_left_shift(kAddLeftShift);
  return y;
}

int GraphBuilder::Concat(const std::string& name, const std::vector<int>& xs) {
  Shape s = shapes_[xs[0]];
  for (size_t k = 1; k < xs.size(); ++k) s.back() += shapes_[xs[k]].back();
  int y;
  AddOp(name, xs, s, ACTIVATION_NONE, &y)->mutable_concat();
  return y;
}

int GraphBuilder::Lookup(const std::string& name, Op::OptionsCase kind, int x) {
  int y;
  Op* op = AddOp(name, {x}, shapes_[x], ACTIVATION_NONE, &y);
  if (kind == Op::kHardswish) op->mutable_hardswish();
  if (kind == Op::kSigmoid) op->mutable_sigmoid();
  if (kind == Op::kTanh) op->mutable_tanh();
  return y;
}

int GraphBuilder::Flatten(const std::string& name, int x) {
  int y;
  AddOp(name, {x}, {Numel(shapes_[x])}, ACTIVATION_NONE, &y)->mutable_flatten();
  return y;
}

QuantizedModel GraphBuilder::Finish(int output) {
  QuantizedModel m = m_;
  m.clear_outputs();
  m.add_outputs(output);
  return m;
}

QuantizedModel MakeFloatMlp(uint64_t seed) {
  GraphBuilder g("mlp", {28, 28, 1});
  int x = g.Flatten("flatten", g.input());
  x = g.FullyConnected("fc1", x, 256, RELU);
  x = g.FullyConnected("fc2", x, 128, RELU);
  x = g.FullyConnected("fc3", x, 10);
  QuantizedModel m = g.Finish(x);
  RandomizeFloatWeights(&m, seed);
  return m;
}

QuantizedModel MakeFloatCnn(uint64_t seed) {
  GraphBuilder g("cnn", {28, 28, 1});
  int x = g.Conv2D("conv1", g.input(), 16, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
  x = g.MaxPool2D("pool1", x, 2, 2);
  x = g.Conv2D("conv2", x, 32, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
  x = g.MaxPool2D("pool2", x, 2, 2);
  x = g.Flatten("flatten", x);
  x = g.FullyConnected("fc1", x, 128, RELU);
  x = g.FullyConnected("fc2", x, 10);
  QuantizedModel m = g.Finish(x);
  RandomizeFloatWeights(&m, seed);
  return m;
}

void RandomizeFloatWeights(QuantizedModel* m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (const Op& op : m->ops()) {
    const int wt = WeightTensor(op);
    if (wt < 0) continue;
    Tensor* w = m->mutable_tensors(wt);
    const int64_t fan_in = Numel(TensorShape(*w)) / w->shape(0);
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    std::uniform_real_distribution<float> u(-bound, bound);
    for (float& v : *w->mutable_float_data()) v = u(rng);
    if (BiasTensor(op) >= 0) {
      for (float& v : *m->mutable_tensors(BiasTensor(op))->mutable_float_data()) v = u(rng);
    }
  }
}

std::vector<float> RandomImages(const QuantizedModel& model, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> x(batch * Numel(TensorShape(model.tensors(InputTensor(model)))));
  for (float& v : x) v = u(rng);
  return x;
}

absl::StatusOr<std::vector<float>> FloatForward(const QuantizedModel& model, const float* input, int64_t batch,
                                                const LayerObserver& observe) {
  floatk::RunOptions opt;
  if (observe) {
    opt.after = [&](int op, float* v, int64_t n) {
      observe(op, v, n);
      return absl::OkStatus();
    };
  }
  std::vector<float> out;
  RETURN_IF_ERROR(floatk::Forward(model, input, batch, &out, opt));
  return out;
}

absl::StatusOr<QuantizedModel> QuantizeMinMax(const QuantizedModel& float_model, const float* calibration, int64_t n,
                                              const QuantizeOptions& opt) {
  if (opt.weight_bits < 2 || opt.weight_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("weight_bits ", opt.weight_bits, " outside [2, 8]"));
  }
  QuantizedModel m = float_model;
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(m));
  const int N = m.ops_size();
  std::vector<float> lo(N, 0.0f), hi(N, 0.0f);
  ASSIGN_OR_RETURN(std::vector<float> unused, FloatForward(m, calibration, n, [&](int i, const float* v, int64_t count) {
                     for (int64_t k = 0; k < count; ++k) {
                       lo[i] = std::min(lo[i], v[k]);
                       hi[i] = std::max(hi[i], v[k]);
                     }
                   }));
  (void)unused;
  const int32_t qmin = DTypeMin(opt.activation_dtype), qmax = DTypeMax(opt.activation_dtype);
  float in_lo = 0, in_hi = 0;
  const int in = InputTensor(m);
  for (int64_t i = 0; i < n * Numel(shapes[in]); ++i) {
    in_lo = std::min(in_lo, calibration[i]);
    in_hi = std::max(in_hi, calibration[i]);
  }
  SetActivation(m.mutable_tensors(in), opt.activation_dtype, ChooseAffine(in_lo, in_hi, qmin, qmax));
  for (int i = 0; i < N; ++i) {
    Op* op = m.mutable_ops(i);
    const Tensor& x = m.tensors(op->inputs(0));
    AffineParams out{TensorScale(x), TensorZeroPoint(x)};  // max pool / flatten / reshape keep their input's
    if (!op->has_max_pool2d() && !op->has_flatten() && !op->has_reshape()) out = ChooseAffine(lo[i], hi[i], qmin, qmax);
    // TFLite's fixed output qparams of sigmoid ([0, 1)) and tanh ([-1, 1)).
    if (op->has_sigmoid()) out = {1.0f / 256, qmin};
    if (op->has_tanh()) out = {1.0f / 128, opt.activation_dtype == INT8 ? 0 : 128};
    SetActivation(m.mutable_tensors(op->outputs(0)), opt.activation_dtype, out);
    int32_t omin = qmin, omax = qmax;
    if (op->fused_activation() == RELU || op->fused_activation() == RELU6) omin = std::max(qmin, out.zero_point);
    if (op->fused_activation() == RELU6) {
      omax = std::min<int32_t>(qmax, out.zero_point + static_cast<int32_t>(std::nearbyint(6.0f / out.scale)));
    }
    op->set_output_min(omin);
    op->set_output_max(omax);
    const int wt = WeightTensor(*op);
    if (wt < 0) continue;
    Tensor* w = m.mutable_tensors(wt);
    QuantizeWeights(w, opt);
    if (BiasTensor(*op) >= 0) QuantizeBias(m.mutable_tensors(BiasTensor(*op)), *w, TensorScale(x));
  }
  if (!opt.keep_float) {
    for (Tensor& t : *m.mutable_tensors()) {
      if (t.dtype() != FLOAT32) t.clear_float_data();
    }
  }
  RETURN_IF_ERROR(ComputeRequantization(&m));
  RETURN_IF_ERROR(ValidateQuantizedModel(m));
  return m;
}

}  // namespace quant::backends
