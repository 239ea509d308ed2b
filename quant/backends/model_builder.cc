#include "quant/backends/model_builder.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

Layer* AddLayer(QuantizedModel* m, const std::string& name, Activation act = ACTIVATION_NONE) {
  Layer* l = m->add_layers();
  l->set_name(name);
  l->set_fused_activation(act);
  return l;
}

void AddFc(QuantizedModel* m, const std::string& name, int in, int out, Activation act) {
  FullyConnected* fc = AddLayer(m, name, act)->mutable_fully_connected();
  fc->set_input_channels(in);
  fc->set_output_channels(out);
}

void AddConv(QuantizedModel* m, const std::string& name, int in, int out, int k, int pad, Activation act) {
  Conv2D* c = AddLayer(m, name, act)->mutable_conv2d();
  c->set_input_channels(in);
  c->set_output_channels(out);
  c->set_groups(1);
  c->set_kernel_h(k);
  c->set_kernel_w(k);
  c->set_stride_h(1);
  c->set_stride_w(1);
  c->set_pad_top(pad);
  c->set_pad_bottom(pad);
  c->set_pad_left(pad);
  c->set_pad_right(pad);
}

void AddMaxPool(QuantizedModel* m, const std::string& name, int k) {
  Pool2D* p = AddLayer(m, name)->mutable_max_pool2d();
  p->set_kernel_h(k);
  p->set_kernel_w(k);
  p->set_stride_h(k);
  p->set_stride_w(k);
}

template <typename Pads>
Shape WindowOut(const Pads& p, const Shape& in, int64_t channels) {
  return {(in[0] + p.pad_top() + p.pad_bottom() - p.kernel_h()) / p.stride_h() + 1,
          (in[1] + p.pad_left() + p.pad_right() - p.kernel_w()) / p.stride_w() + 1, channels};
}

// Structure-only shape inference (no quantization checks).
std::vector<Shape> StructuralShapes(const QuantizedModel& m) {
  std::vector<Shape> shapes;
  shapes.emplace_back(m.input_shape().begin(), m.input_shape().end());
  for (const Layer& l : m.layers()) {
    const Shape& in = shapes.back();
    if (l.has_fully_connected()) {
      shapes.push_back({l.fully_connected().output_channels()});
    } else if (l.has_conv2d()) {
      shapes.push_back(WindowOut(l.conv2d(), in, l.conv2d().output_channels()));
    } else if (l.has_max_pool2d()) {
      shapes.push_back(WindowOut(l.max_pool2d(), in, in[2]));
    } else {
      int64_t n = 1;
      for (int64_t d : in) n *= d;
      shapes.push_back({n});
    }
  }
  return shapes;
}

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

float ApplyActivation(float v, Activation act) {
  if (act == RELU) return std::max(v, 0.0f);
  if (act == RELU6) return std::min(std::max(v, 0.0f), 6.0f);
  return v;
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

// Quantizes one layer's float weights into `op` per `opt`.
template <typename Op>
void QuantizeWeights(Op* op, int64_t fan_in, const QuantizeOptions& opt) {
  const int out = op->output_channels();
  const int bits = opt.weight_bits;
  const bool s8 = opt.weight_dtype == INT8;
  const int32_t qmin = s8 ? -(1 << (bits - 1)) : 0;
  const int32_t qmax = s8 ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  WeightQuant* wq = op->mutable_weight_quant();
  wq->Clear();
  wq->set_dtype(opt.weight_dtype);
  wq->set_bits(bits);
  const int groups = opt.per_channel ? out : 1;
  const int64_t per_group = opt.per_channel ? fan_in : fan_in * out;
  std::string bytes(static_cast<size_t>(fan_in) * out, '\0');
  for (int g = 0; g < groups; ++g) {
    const float* w = op->float_weights().data() + g * per_group;
    float lo = 0, hi = 0;
    for (int64_t i = 0; i < per_group; ++i) {
      lo = std::min(lo, w[i]);
      hi = std::max(hi, w[i]);
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
    wq->add_scale(p.scale);
    wq->add_zero_point(p.zero_point);
    for (int64_t i = 0; i < per_group; ++i) {
      const int32_t q = std::clamp<int32_t>(
          static_cast<int32_t>(std::nearbyint(w[i] / p.scale)) + p.zero_point, qmin, qmax);
      bytes[g * per_group + i] = static_cast<char>(static_cast<uint8_t>(q & 0xff));
    }
  }
  op->set_weights(bytes);
}

template <typename Op>
void QuantizeBias(Op* op, float s_in) {
  op->clear_bias();
  for (int o = 0; o < op->output_channels(); ++o) {
    const double b = op->float_bias_size() ? op->float_bias(o) : 0.0;
    const double s = static_cast<double>(s_in) * WeightScale(op->weight_quant(), o);
    op->add_bias(static_cast<int32_t>(std::clamp(std::nearbyint(b / s), -2147483648.0, 2147483647.0)));
  }
}

}  // namespace

QuantizedModel MakeFloatMlp(uint64_t seed) {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.set_source_model("mlp");
  for (int d : {28, 28, 1}) m.add_input_shape(d);
  AddLayer(&m, "flatten")->mutable_flatten();
  AddFc(&m, "fc1", 784, 256, RELU);
  AddFc(&m, "fc2", 256, 128, RELU);
  AddFc(&m, "fc3", 128, 10, ACTIVATION_NONE);
  RandomizeFloatWeights(&m, seed);
  return m;
}

QuantizedModel MakeFloatCnn(uint64_t seed) {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.set_source_model("cnn");
  for (int d : {28, 28, 1}) m.add_input_shape(d);
  AddConv(&m, "conv1", 1, 16, 3, 1, RELU);
  AddMaxPool(&m, "pool1", 2);
  AddConv(&m, "conv2", 16, 32, 3, 1, RELU);
  AddMaxPool(&m, "pool2", 2);
  AddLayer(&m, "flatten")->mutable_flatten();
  AddFc(&m, "fc1", 1568, 128, RELU);
  AddFc(&m, "fc2", 128, 10, ACTIVATION_NONE);
  RandomizeFloatWeights(&m, seed);
  return m;
}

void RandomizeFloatWeights(QuantizedModel* m, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto fill = [&rng](auto* op, int64_t fan_in) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
    std::uniform_real_distribution<float> u(-bound, bound);
    op->clear_float_weights();
    op->clear_float_bias();
    for (int64_t i = 0; i < fan_in * op->output_channels(); ++i) op->add_float_weights(u(rng));
    for (int o = 0; o < op->output_channels(); ++o) op->add_float_bias(u(rng));
  };
  for (Layer& l : *m->mutable_layers()) {
    if (l.has_fully_connected()) fill(l.mutable_fully_connected(), l.fully_connected().input_channels());
    if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      fill(l.mutable_conv2d(), int64_t{c.kernel_h()} * c.kernel_w() * (c.input_channels() / c.groups()));
    }
  }
}

std::vector<float> RandomImages(const QuantizedModel& model, int64_t batch, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  int64_t n = batch;
  for (int d : model.input_shape()) n *= d;
  std::vector<float> x(n);
  for (float& v : x) v = u(rng);
  return x;
}

absl::StatusOr<std::vector<float>> FloatForward(const QuantizedModel& model, const float* input,
                                                int64_t batch, const LayerObserver& observe) {
  const std::vector<Shape> shapes = StructuralShapes(model);
  std::vector<float> cur(input, input + batch * Numel(shapes[0]));
  for (int li = 0; li < model.layers_size(); ++li) {
    const Layer& l = model.layers(li);
    const Shape& in = shapes[li];
    const Shape& os = shapes[li + 1];
    std::vector<float> next(batch * Numel(os));
    if (l.has_fully_connected()) {
      const FullyConnected& fc = l.fully_connected();
      if (fc.float_weights_size() == 0) {
        return absl::FailedPreconditionError(absl::StrCat("layer '", l.name(), "' has no float_weights"));
      }
      const int I = fc.input_channels(), O = fc.output_channels();
      for (int64_t b = 0; b < batch; ++b) {
        for (int o = 0; o < O; ++o) {
          float acc = fc.float_bias_size() ? fc.float_bias(o) : 0.0f;
          for (int i = 0; i < I; ++i) acc += cur[b * I + i] * fc.float_weights(o * I + i);
          next[b * O + o] = ApplyActivation(acc, l.fused_activation());
        }
      }
    } else if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      if (c.float_weights_size() == 0) {
        return absl::FailedPreconditionError(absl::StrCat("layer '", l.name(), "' has no float_weights"));
      }
      const int64_t H = in[0], W = in[1], C = in[2], OH = os[0], OW = os[1], O = os[2];
      const int ig = c.input_channels() / c.groups(), og = c.output_channels() / c.groups();
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox)
            for (int64_t o = 0; o < O; ++o) {
              const int64_t g = o / og;
              float acc = c.float_bias_size() ? c.float_bias(o) : 0.0f;
              for (int ky = 0; ky < c.kernel_h(); ++ky) {
                const int64_t y = oy * c.stride_h() - c.pad_top() + ky;
                if (y < 0 || y >= H) continue;
                for (int kx = 0; kx < c.kernel_w(); ++kx) {
                  const int64_t x = ox * c.stride_w() - c.pad_left() + kx;
                  if (x < 0 || x >= W) continue;
                  for (int i = 0; i < ig; ++i) {
                    acc += cur[((b * H + y) * W + x) * C + g * ig + i] *
                           c.float_weights(((o * c.kernel_h() + ky) * c.kernel_w() + kx) * ig + i);
                  }
                }
              }
              next[((b * OH + oy) * OW + ox) * O + o] = ApplyActivation(acc, l.fused_activation());
            }
    } else if (l.has_max_pool2d()) {
      const Pool2D& p = l.max_pool2d();
      const int64_t H = in[0], W = in[1], C = in[2], OH = os[0], OW = os[1];
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t oy = 0; oy < OH; ++oy)
          for (int64_t ox = 0; ox < OW; ++ox)
            for (int64_t ch = 0; ch < C; ++ch) {
              float best = -std::numeric_limits<float>::infinity();
              for (int ky = 0; ky < p.kernel_h(); ++ky) {
                const int64_t y = oy * p.stride_h() - p.pad_top() + ky;
                if (y < 0 || y >= H) continue;
                for (int kx = 0; kx < p.kernel_w(); ++kx) {
                  const int64_t x = ox * p.stride_w() - p.pad_left() + kx;
                  if (x < 0 || x >= W) continue;
                  best = std::max(best, cur[((b * H + y) * W + x) * C + ch]);
                }
              }
              next[((b * OH + oy) * OW + ox) * C + ch] = ApplyActivation(best, l.fused_activation());
            }
    } else {
      next = cur;  // flatten: NHWC order is already the flat order
    }
    if (observe) observe(li, next.data(), static_cast<int64_t>(next.size()));
    cur.swap(next);
  }
  return cur;
}

absl::StatusOr<QuantizedModel> QuantizeMinMax(const QuantizedModel& float_model, const float* calibration,
                                              int64_t n, const QuantizeOptions& opt) {
  if (opt.weight_bits < 2 || opt.weight_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat("weight_bits ", opt.weight_bits, " outside [2, 8]"));
  }
  QuantizedModel m = float_model;
  const int L = m.layers_size();
  std::vector<float> lo(L, 0.0f), hi(L, 0.0f);
  ASSIGN_OR_RETURN(std::vector<float> unused,
                   FloatForward(m, calibration, n, [&](int li, const float* v, int64_t count) {
                     for (int64_t i = 0; i < count; ++i) {
                       lo[li] = std::min(lo[li], v[i]);
                       hi[li] = std::max(hi[li], v[i]);
                     }
                   }));
  (void)unused;
  const int32_t qmin = DTypeMin(opt.activation_dtype), qmax = DTypeMax(opt.activation_dtype);
  float in_lo = 0, in_hi = 0;
  for (int64_t i = 0; i < n * Numel(StructuralShapes(m)[0]); ++i) {
    in_lo = std::min(in_lo, calibration[i]);
    in_hi = std::max(in_hi, calibration[i]);
  }
  AffineParams in = ChooseAffine(in_lo, in_hi, qmin, qmax);
  m.mutable_input()->set_scale(in.scale);
  m.mutable_input()->set_zero_point(in.zero_point);
  m.mutable_input()->set_dtype(opt.activation_dtype);
  for (int li = 0; li < L; ++li) {
    Layer* l = m.mutable_layers(li);
    AffineParams out = in;  // pooling/flatten keep their input's qparams
    if (l->has_fully_connected() || l->has_conv2d()) out = ChooseAffine(lo[li], hi[li], qmin, qmax);
    l->mutable_output()->set_scale(out.scale);
    l->mutable_output()->set_zero_point(out.zero_point);
    l->mutable_output()->set_dtype(opt.activation_dtype);
    int32_t omin = qmin, omax = qmax;
    if (l->fused_activation() == RELU || l->fused_activation() == RELU6) omin = std::max(qmin, out.zero_point);
    if (l->fused_activation() == RELU6) {
      omax = std::min<int32_t>(qmax, out.zero_point + static_cast<int32_t>(std::nearbyint(6.0f / out.scale)));
    }
    l->set_output_min(omin);
    l->set_output_max(omax);
    if (l->has_fully_connected()) {
      FullyConnected* fc = l->mutable_fully_connected();
      QuantizeWeights(fc, fc->input_channels(), opt);
      QuantizeBias(fc, in.scale);
      if (!opt.keep_float) { fc->clear_float_weights(); fc->clear_float_bias(); }
    } else if (l->has_conv2d()) {
      Conv2D* c = l->mutable_conv2d();
      QuantizeWeights(c, int64_t{c->kernel_h()} * c->kernel_w() * (c->input_channels() / c->groups()), opt);
      QuantizeBias(c, in.scale);
      if (!opt.keep_float) { c->clear_float_weights(); c->clear_float_bias(); }
    }
    in = out;
  }
  RETURN_IF_ERROR(ComputeRequantization(&m));
  RETURN_IF_ERROR(ValidateQuantizedModel(m));
  return m;
}

}  // namespace quant::backends
