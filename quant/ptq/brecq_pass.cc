#include "quant/ptq/brecq_pass.h"

#include <immintrin.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/nn/activations.h"
#include "quant/nn/adam.h"
#include "quant/nn/add.h"
#include "quant/nn/concat.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/global_avg_pool.h"
#include "quant/nn/linear.h"
#include "quant/nn/model.h"
#include "quant/nn/pooling.h"
#include "quant/ptq/adaround_pass.h"

namespace quant::ptq {
namespace {

using backends::Op;
using backends::QuantizedModel;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// splitmix64: the random bits of QDrop's masks (one draw serves 4 values), cheap enough to
// draw per activation value per step.
struct FastRng {
  uint64_t s;
  uint64_t Next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
};

// keep[i] = 1.0 with probability p, else 0.0 (8-bit resolution: one random byte per value),
// as floats so that the loops using it blend without branches (a random mask would
// mispredict half of them). The bytes are drawn first, 8 per splitmix64 call, then expanded
// in a loop the compiler vectorises.
void DropMask(FastRng* rng, double p, int64_t n, std::vector<float>* keep, std::vector<uint64_t>* words) {
  keep->resize(n);
  words->resize((n + 7) / 8);
  for (uint64_t& w : *words) w = rng->Next();
  const int threshold = static_cast<int>(std::lround(p * 256.0));
  const uint8_t* __restrict bytes = reinterpret_cast<const uint8_t*>(words->data());
  float* __restrict k = keep->data();
  // (byte - threshold) >> 31 is 1 exactly when byte < threshold: arithmetic, no branch.
  for (int64_t i = 0; i < n; ++i) k[i] = static_cast<float>(((static_cast<int32_t>(bytes[i]) - threshold) >> 31) & 1);
}

// AdaRound's soft quantizer of one weight tensor (PyTorch layout, output channel first), as the
// weight hook of the block's nn layer: W~ = s (clip(floor(W / s) + h, n - z, p - z)) per output
// channel (eq. 22 with the zero point moved into the clip).
class SoftRoundedWeight : public nn::TensorTransform {
 public:
  enum class Mode { kSoft, kLearned, kNearest };

  SoftRoundedWeight(const Tensor& w, const QParams& grid) : per_(w.numel() / w.shape()[0]) {
    const int64_t channels = w.shape()[0];
    s_.resize(channels);
    lo_.resize(channels);
    hi_.resize(channels);
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t g = grid.size() == 1 ? 0 : c;
      s_[c] = grid.scale[g];
      lo_[c] = static_cast<float>(grid.quant_min - grid.zero_point[g]);
      hi_[c] = static_cast<float>(grid.quant_max - grid.zero_point[g]);
    }
    base_.resize(w.numel());
    nearest_.resize(w.numel());
    v_.Allocate(w.shape());
    v_.name = "adaround_v";
    for (int64_t j = 0; j < w.numel(); ++j) {
      const double q = static_cast<double>(w[j]) / s_[j / per_];
      base_[j] = static_cast<float>(std::floor(q));
      nearest_[j] = static_cast<float>(std::nearbyint(q) - std::floor(q));
      v_.value[j] = static_cast<float>(AdaroundInitialV(q - std::floor(q)));
    }
  }

  std::string Describe() const override { return "AdaRound soft rounding"; }
  void set_mode(Mode m) { mode_ = m; }

  void Forward(const Tensor& in, Tensor* out, bool) override {
    out->Resize(in.shape());
    // sigmoid(V) once per step: Backward and AddRegularizer of the same step reuse it (V moves
    // only in the optimizer step after them).
    if (mode_ == Mode::kSoft) {
      sig_.resize(in.numel());
      for (int64_t j = 0; j < in.numel(); ++j) sig_[j] = Sigmoid(v_.value[j]);
    }
    for (int64_t j = 0; j < in.numel(); ++j) {
      const int64_t c = j / per_;
      const float q = std::min(std::max(base_[j] + H(j), lo_[c]), hi_[c]);
      (*out)[j] = q * s_[c];
    }
  }

  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override {
    // Only V learns: W stays the float weight the grid was chosen on.
    if (grad_in != nullptr) {
      grad_in->Resize(in.shape());
      grad_in->Fill(0.0f);
    }
    constexpr float stretch = static_cast<float>(kAdaroundZeta - kAdaroundGamma);
    constexpr float shift = static_cast<float>(kAdaroundGamma);
    for (int64_t j = 0; j < in.numel(); ++j) {
      const int64_t c = j / per_;
      const float sig = sig_[j];
      const float raw = sig * stretch + shift;
      const float h = std::min(std::max(raw, 0.0f), 1.0f);
      const float q = base_[j] + h;
      const bool live = q >= lo_[c] && q <= hi_[c] && raw > 0.0f && raw < 1.0f;
      v_.grad[j] = live ? grad_out[j] * s_[c] * stretch * sig * (1.0f - sig) : 0.0f;
    }
  }

  // Adds lambda * d/dV sum(1 - |2h - 1|^beta) to V's gradient; returns the regulariser.
  double AddRegularizer(double lambda, double beta) {
    constexpr float stretch = static_cast<float>(kAdaroundZeta - kAdaroundGamma);
    constexpr float shift = static_cast<float>(kAdaroundGamma);
    double value = 0;
    const float lam = static_cast<float>(lambda), b = static_cast<float>(beta);
    for (int64_t j = 0; j < v_.value.numel(); ++j) {
      const float sig = sig_[j];  // this step's, from Forward
      const float raw = sig * stretch + shift;
      const float h = std::min(std::max(raw, 0.0f), 1.0f);
      const float c = 2.0f * h - 1.0f, a = std::fabs(c);
      const float pw = a > 0.0f ? std::pow(a, b - 1.0f) : 0.0f;
      value += lam * (1.0f - pw * a);
      if (raw > 0.0f && raw < 1.0f) {
        v_.grad[j] -= lam * 2.0f * b * pw * (c > 0.0f ? 1.0f : c < 0.0f ? -1.0f : 0.0f) * stretch * sig * (1.0f - sig);
      }
    }
    return value;
  }

  // The weights of the learned hard rounding (h >= 0.5), on the grid.
  void HardWeights(Tensor* w) const {
    for (int64_t j = 0; j < w->numel(); ++j) {
      const int64_t c = j / per_;
      const float h = HardH(j);
      (*w)[j] = std::min(std::max(base_[j] + h, lo_[c]), hi_[c]) * s_[c];
    }
  }
  double BinaryShare() const {
    int64_t binary = 0;
    for (int64_t j = 0; j < v_.value.numel(); ++j) {
      const float h = SoftH(j);
      binary += h < 1e-3f || h > 1.0f - 1e-3f;
    }
    return static_cast<double>(binary) / std::max<int64_t>(1, v_.value.numel());
  }
  // Share of the weights whose learned rounding differs from nearest.
  double FlippedShare() const {
    int64_t flipped = 0;
    for (int64_t j = 0; j < v_.value.numel(); ++j) flipped += HardH(j) != nearest_[j];
    return static_cast<double>(flipped) / std::max<int64_t>(1, v_.value.numel());
  }
  std::vector<nn::Parameter*> parameters() override { return {&v_}; }

 private:
  static float Sigmoid(float v) { return 1.0f / (1.0f + std::exp(-v)); }
  float SoftH(int64_t j) const {
    const float raw =
        Sigmoid(v_.value[j]) * static_cast<float>(kAdaroundZeta - kAdaroundGamma) + static_cast<float>(kAdaroundGamma);
    return std::min(std::max(raw, 0.0f), 1.0f);
  }
  float HardH(int64_t j) const { return SoftH(j) >= 0.5f ? 1.0f : 0.0f; }
  float H(int64_t j) const {
    switch (mode_) {
      case Mode::kSoft:
        return std::min(
            std::max(sig_[j] * static_cast<float>(kAdaroundZeta - kAdaroundGamma) + static_cast<float>(kAdaroundGamma),
                     0.0f),
            1.0f);
      case Mode::kLearned:
        return HardH(j);
      case Mode::kNearest:
        return nearest_[j];
    }
    return 0.0f;
  }

  int64_t per_;
  std::vector<double> s_;
  std::vector<float> lo_, hi_, base_, nearest_;
  std::vector<float> sig_;  // sigmoid(V) of the last soft Forward
  nn::Parameter v_;
  Mode mode_ = Mode::kSoft;
};

// Fake quantization of an activation on a per-tensor grid with a learnable step size (the
// gradient of s as autograd gives it through round-with-STE: LSQ's without its gradient
// scale, as the reference code of BRECQ/QDrop learns it) and QDrop's random dropping while
// training: each value is kept float with probability `drop`.
class BlockActQuant : public nn::TensorTransform {
 public:
  BlockActQuant(const QParams& grid, bool learn, double drop, uint64_t seed)
      : zp_(grid.zero_point[0]), lo_(grid.quant_min), hi_(grid.quant_max), learn_(learn), drop_(drop), rng_{seed} {
    scale_.Allocate({1});
    scale_.name = "act_scale";
    scale_.value[0] = grid.scale[0];
  }
  std::string Describe() const override { return "activation fake quantization"; }

  // Both directions in AVX2 (the loops run over every activation value of 32 images at every
  // step: they were the reconstruction's bottleneck in scalar code), branch-free: the drop mask
  // is random, and branches on it would mispredict half the time.
  void Forward(const Tensor& in, Tensor* out, bool training) override {
    out->Resize(in.shape());
    dropped_ = training && drop_ > 0.0;
    if (dropped_) DropMask(&rng_, drop_, in.numel(), &keep_float_, &words_);
    const float s = Scale(), inv = 1.0f / s, zp = zp_, lo = lo_, hi = hi_;
    const float* x = in.data();
    float* y = out->data();
    const float* keep = dropped_ ? keep_float_.data() : nullptr;
    const int64_t n = in.numel();
    const __m256 vs = _mm256_set1_ps(s), vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(zp), vlo = _mm256_set1_ps(lo),
                 vhi = _mm256_set1_ps(hi);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 v = _mm256_loadu_ps(x + j);
      __m256 q =
          _mm256_add_ps(_mm256_round_ps(_mm256_mul_ps(v, vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vzp);
      q = _mm256_min_ps(_mm256_max_ps(q, vlo), vhi);
      __m256 r = _mm256_mul_ps(_mm256_sub_ps(q, vzp), vs);
      if (keep != nullptr) r = _mm256_add_ps(r, _mm256_mul_ps(_mm256_loadu_ps(keep + j), _mm256_sub_ps(v, r)));
      _mm256_storeu_ps(y + j, r);
    }
    for (; j < n; ++j) {
      y[j] = (std::min(std::max(std::nearbyint(x[j] * inv) + zp, lo), hi) - zp) * s;
      if (keep != nullptr) y[j] += keep[j] * (x[j] - y[j]);
    }
  }

  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override {
    const float s = Scale(), inv = 1.0f / s, zp = zp_, lo = lo_, hi = hi_;
    const int64_t n = in.numel();
    const float* x = in.data();
    const float* go = grad_out.data();
    if (grad_in != nullptr) grad_in->Resize(in.shape());
    float* gi = nullptr;
    if (grad_in != nullptr) gi = grad_in->data();
    const float* keep = dropped_ ? keep_float_.data() : nullptr;
    // Per value: the STE gradient (1 inside the grid, 0 outside; 1 for a value kept float), and
    // d/ds of (clamp(round(x/s) + z) - z) s: round(x/s) - x/s inside, the clamp's code outside.
    auto scalar = [&](int64_t j, double* ds) {
      const float t = x[j] * inv, r = std::nearbyint(t), code = r + zp;
      const float clamped = std::min(std::max(code, lo), hi);
      const float inside = static_cast<float>(clamped == code);
      const float quantized = keep != nullptr ? 1.0f - keep[j] : 1.0f;
      const float d = inside * (r - t) + (1.0f - inside) * (clamped - zp);
      *ds += quantized * go[j] * d;
      if (gi != nullptr) gi[j] = go[j] * (1.0f - quantized + quantized * inside);
    };
    const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(zp), vlo = _mm256_set1_ps(lo),
                 vhi = _mm256_set1_ps(hi), one = _mm256_set1_ps(1.0f);
    __m256 acc = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      const __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + j), vinv);
      const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 code = _mm256_add_ps(r, vzp);
      const __m256 clamped = _mm256_min_ps(_mm256_max_ps(code, vlo), vhi);
      const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(clamped, code, _CMP_EQ_OQ), one);
      const __m256 quantized = keep != nullptr ? _mm256_sub_ps(one, _mm256_loadu_ps(keep + j)) : one;
      const __m256 d = _mm256_add_ps(_mm256_mul_ps(inside, _mm256_sub_ps(r, t)),
                                     _mm256_mul_ps(_mm256_sub_ps(one, inside), _mm256_sub_ps(clamped, vzp)));
      const __m256 g = _mm256_loadu_ps(go + j);
      acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(quantized, g), d));
      if (gi != nullptr) {
        _mm256_storeu_ps(
            gi + j, _mm256_mul_ps(g, _mm256_add_ps(_mm256_sub_ps(one, quantized), _mm256_mul_ps(quantized, inside))));
      }
    }
    double ds = 0;
    for (; j < n; ++j) scalar(j, &ds);
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, acc);
    for (float l : lanes) ds += l;
    scale_.grad[0] = learn_ ? static_cast<float>(ds) : 0.0f;
  }
  std::vector<nn::Parameter*> parameters() override {
    if (!learn_) return {};
    return {&scale_};
  }
  float Scale() const { return std::max(scale_.value[0], 1e-12f); }

 private:
  float zp_, lo_, hi_;
  bool learn_;
  double drop_;
  FastRng rng_;
  nn::Parameter scale_;
  std::vector<float> keep_float_;
  std::vector<uint64_t> words_;
  bool dropped_ = false;
};

// A block's ops as an nn graph (NCHW), so that the nn layers' forward and backward kernels do
// the reconstruction.
class BlockNet : public nn::Model {
 public:
  explicit BlockNet(nn::GraphSpec spec) : spec_(std::move(spec)) {}
  std::string name() const override { return "block"; }

 protected:
  absl::StatusOr<nn::GraphSpec> MakeGraph(const nn::Shape&, int) override { return std::move(spec_); }

 private:
  nn::GraphSpec spec_;
};

// Per-sample NCHW shape of a lowered (NHWC / flat) activation tensor.
nn::Shape NchwShape(const backends::Tensor& t) {
  const nn::Shape s = backends::TensorShape(t);
  if (s.size() == 3) return {s[2], s[0], s[1]};
  return s;
}

int64_t Numel(const nn::Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// One sample's NHWC values [H, W, C] into NCHW (flat tensors are copied).
void ToNchw(const float* src, const nn::Shape& nchw, float* dst) {
  if (nchw.size() != 3) {
    std::copy(src, src + Numel(nchw), dst);
    return;
  }
  const int64_t C = nchw[0], HW = nchw[1] * nchw[2];
  for (int64_t p = 0; p < HW; ++p)
    for (int64_t c = 0; c < C; ++c) dst[c * HW + p] = src[p * C + c];
}

struct BuiltBlock {
  std::unique_ptr<BlockNet> model;
  nn::Shape in_shape, out_shape;  // NCHW per sample
  std::vector<std::shared_ptr<SoftRoundedWeight>> weights;
  std::vector<int> weight_layers;  // FloatNet::weighted index of each
  std::vector<QParams> weight_grids;
  std::vector<bool> model_layout;  // the weight's columns in the lowered net's order (see Pending)
  std::vector<std::shared_ptr<BlockActQuant>> acts;
  std::vector<int> act_tensors;
};

// The block's ops as nn layers with the net's current float weights, AdaRound hooks on every
// weight with a grid and, with act_quant, fake quantization on every activation grid of `grids`.
absl::StatusOr<BuiltBlock> BuildBlock(const FloatNet& net, const ReconstructionBlock& b, const QuantConfig& quant,
                                      const std::map<int, QParams>& grids, const BlockReconstructionOptions& o,
                                      uint64_t seed) {
  const QuantizedModel& m = net.model;
  BuiltBlock out;
  nn::GraphSpec spec;
  std::map<int, std::string> value_of = {{b.input_tensor, "input"}};
  std::map<int, int> weighted_of;  // op index -> FloatNet::weighted index
  for (size_t k = 0; k < net.weighted.size(); ++k) weighted_of[net.weighted[k].index] = static_cast<int>(k);
  struct Pending {
    nn::Layer* layer;
    int weighted;
    // A linear reading the block's input takes the lowered net's column order (after a flatten
    // of [H, W, C] that is NHWC order, WeightedLayer::perm); inside the block, nn::Flatten gives
    // NCHW order, which is torch_weight's.
    bool model_layout;
  };
  std::vector<Pending> weighted_layers;
  std::vector<std::pair<std::string, int>> act_points;  // node name, tensor
  for (int i = b.first; i <= b.last; ++i) {
    const Op& op = m.ops(i);
    const std::string node = absl::StrCat("op", i);
    std::vector<std::string> inputs;
    for (int t : op.inputs()) {
      if (backends::IsConstant(m.tensors(t))) continue;
      auto v = value_of.find(t);
      if (v == value_of.end()) {
        return absl::InternalError(
            absl::StrCat("block '", b.name, "': op '", op.name(), "' reads tensor ", t, " from outside the block"));
      }
      inputs.push_back(v->second);
    }
    auto unsupported = [&](const std::string& why) {
      return absl::UnimplementedError(absl::StrCat("op '", op.name(), "' ", why));
    };
    std::unique_ptr<nn::Layer> layer;
    if (op.has_conv2d()) {
      const backends::Conv2DOptions& c = op.conv2d();
      if (c.kernel_h() != c.kernel_w() || c.stride_h() != c.stride_w() || c.pad_top() != c.pad_bottom() ||
          c.pad_left() != c.pad_right() || c.pad_top() != c.pad_left()) {
        return unsupported("(a conv with a non-square kernel, stride or padding) has no nn form here");
      }
      const WeightedLayer& w = net.weighted[weighted_of.at(i)];
      nn::Conv2dOptions co;
      co.out_channels = w.torch_weight.shape()[0];
      co.kernel = c.kernel_h();
      co.stride = c.stride_h();
      co.padding = c.pad_top();
      co.groups = std::max(1, c.groups());
      layer = std::make_unique<nn::Conv2d>(node, co);
    } else if (op.has_fully_connected()) {
      const WeightedLayer& w = net.weighted[weighted_of.at(i)];
      layer = std::make_unique<nn::Linear>(node, w.torch_weight.shape()[1], w.torch_weight.shape()[0]);
    } else if (op.has_add()) {
      layer = std::make_unique<nn::Add>(node);
    } else if (op.has_concat()) {
      layer = std::make_unique<nn::Concat>(node);
    } else if (op.has_max_pool2d() || op.has_average_pool2d()) {
      const backends::Pool2DOptions& p = op.has_max_pool2d() ? op.max_pool2d() : op.average_pool2d();
      if (p.kernel_h() != p.kernel_w() || p.stride_h() != p.stride_w() || p.pad_top() || p.pad_bottom() ||
          p.pad_left() || p.pad_right()) {
        return unsupported("(a padded or non-square pool) has no nn form here");
      }
      layer = std::make_unique<nn::Pool2d>(node, op.has_max_pool2d() ? nn::Pool2d::Kind::kMax : nn::Pool2d::Kind::kAvg,
                                           p.kernel_h(), p.stride_h());
    } else if (op.has_global_average_pool()) {
      layer = std::make_unique<nn::GlobalAvgPool>(node);
    } else if (op.has_flatten()) {
      layer = std::make_unique<nn::Flatten>(node);
    } else if (op.has_hardswish()) {
      layer = std::make_unique<nn::Hardswish>(node);
    } else {
      return unsupported("(sigmoid, tanh or reshape) has no differentiable block form here");
    }
    if (weighted_of.count(i)) {
      weighted_layers.push_back(
          {layer.get(), weighted_of.at(i), op.has_fully_connected() && op.inputs(0) == b.input_tensor});
    }
    spec.Add(std::move(layer), inputs);
    std::string last = node;
    if (op.fused_activation() == backends::RELU || op.fused_activation() == backends::RELU6) {
      last = node + "_act";
      spec.Add(std::make_unique<nn::Clamp>(
                   last, op.fused_activation() == backends::RELU ? nn::Clamp::Kind::kReLU : nn::Clamp::Kind::kReLU6),
               {node});
    } else if (op.fused_activation() != backends::ACTIVATION_NONE) {
      return unsupported("has a fused activation other than ReLU/ReLU6");
    }
    value_of[op.outputs(0)] = last;
    if (o.act_quant && grids.count(op.outputs(0))) act_points.push_back({last, op.outputs(0)});
  }
  out.in_shape = NchwShape(m.tensors(b.input_tensor));
  out.out_shape = NchwShape(m.tensors(b.output_tensor));
  spec.output = value_of.at(b.output_tensor);
  if (out.out_shape.size() != 1) {
    spec.Add(std::make_unique<nn::Flatten>("block_output"), {spec.output});
    spec.output = "block_output";
  }
  out.model = std::make_unique<BlockNet>(std::move(spec));
  RETURN_IF_ERROR(out.model->Build(out.in_shape, static_cast<int>(Numel(out.out_shape)), 0));
  for (const Pending& p : weighted_layers) {
    const WeightedLayer& w = net.weighted[p.weighted];
    nn::Parameter& weight = p.layer->type() == "conv2d" ? static_cast<nn::Conv2d*>(p.layer)->weight()
                                                        : static_cast<nn::Linear*>(p.layer)->weight();
    nn::Parameter& bias = p.layer->type() == "conv2d" ? static_cast<nn::Conv2d*>(p.layer)->bias()
                                                      : static_cast<nn::Linear*>(p.layer)->bias();
    if (weight.value.numel() != w.torch_weight.numel() || bias.value.numel() != static_cast<int64_t>(w.bias.size())) {
      return absl::InternalError(absl::StrCat("block '", b.name, "': layer '", w.name, "' has ", weight.value.numel(),
                                              " weights in its nn form and ", w.torch_weight.numel(), " in the net"));
    }
    for (int64_t j = 0; j < w.torch_weight.numel(); ++j) {
      weight.value[j] = w.torch_weight[p.model_layout ? w.perm[j] : j];
    }
    std::copy(w.bias.begin(), w.bias.end(), bias.value.data());
    ASSIGN_OR_RETURN(std::optional<QParams> grid, WeightGridOf(quant, w, o.pass));
    if (!grid) continue;  // float weights stay float
    // Per output channel, so the same grid in either column order.
    auto soft = std::make_shared<SoftRoundedWeight>(weight.value, *grid);
    p.layer->set_weight_transform(soft);
    out.weights.push_back(soft);
    out.weight_layers.push_back(p.weighted);
    out.weight_grids.push_back(*grid);
    out.model_layout.push_back(p.model_layout);
  }
  for (size_t k = 0; k < act_points.size(); ++k) {
    auto act = std::make_shared<BlockActQuant>(grids.at(act_points[k].second), o.learn_act_scale, o.drop_prob,
                                               seed * 7919 + k + 1);
    out.model->FindLayer(act_points[k].first)->set_output_transform(act);
    out.acts.push_back(act);
    out.act_tensors.push_back(act_points[k].second);
  }
  return out;
}

// Per-sample NCHW values of tensors `want` over the calibration images, running ops [0, last_op]
// of `model`. With `grids`, the input and the outputs of ops before `quantized_before` are
// fake-quantized on their grids (the net quantized so far).
absl::Status Collect(const QuantizedModel& model, const PtqPassContext& ctx, int last_op, const std::vector<int>& want,
                     const std::map<int, QParams>* grids, int quantized_before, std::vector<std::vector<float>>* out) {
  const int in_t = backends::InputTensor(model);
  const int64_t per_image = backends::Numel(backends::TensorShape(model.tensors(in_t)));
  out->assign(want.size(), {});
  std::vector<nn::Shape> shapes;
  for (int t : want) shapes.push_back(NchwShape(model.tensors(t)));
  for (size_t k = 0; k < want.size(); ++k) (*out)[k].resize(ctx.images * Numel(shapes[k]));
  backends::floatk::RunOptions opt;
  opt.last_op = last_op;
  if (grids != nullptr) {
    opt.after = [&](int op, float* y, int64_t count) {
      if (op >= quantized_before) return absl::OkStatus();
      auto g = grids->find(model.ops(op).outputs(0));
      if (g != grids->end()) FakeQuantizeOnGrid(g->second, y, count);
      return absl::OkStatus();
    };
  }
  constexpr int64_t kBatch = 128;
  std::vector<std::vector<float>> values;
  for (int64_t start = 0; start < ctx.images; start += kBatch) {
    const int64_t b = std::min(kBatch, ctx.images - start);
    values.assign(model.tensors_size(), {});
    values[in_t].assign(ctx.calibration + start * per_image, ctx.calibration + (start + b) * per_image);
    if (grids != nullptr && grids->count(in_t)) FakeQuantizeOnGrid(grids->at(in_t), values[in_t].data(), b * per_image);
    RETURN_IF_ERROR(backends::floatk::RunGraph(model, b, &values, opt));
    for (size_t k = 0; k < want.size(); ++k) {
      const int64_t per = Numel(shapes[k]);
      const std::vector<float>& v = values[want[k]];
      if (static_cast<int64_t>(v.size()) != b * per) {
        return absl::InternalError(absl::StrCat("tensor ", want[k], " has no value after op ", last_op));
      }
      for (int64_t i = 0; i < b; ++i) ToNchw(v.data() + i * per, shapes[k], (*out)[k].data() + (start + i) * per);
    }
  }
  return absl::OkStatus();
}

// The name prefix that groups ops into one block ("ir3" of "ir3_dw").
std::string Prefix(const std::string& name) { return name.substr(0, name.find('_')); }

}  // namespace

std::vector<ReconstructionBlock> FindBlocks(const FloatNet& net, bool layer_wise) {
  const QuantizedModel& m = net.model;
  const int ops = m.ops_size();
  std::map<int, int> weighted_of;
  for (size_t k = 0; k < net.weighted.size(); ++k) weighted_of[net.weighted[k].index] = static_cast<int>(k);
  std::vector<ReconstructionBlock> blocks;
  if (layer_wise) {
    for (int i = 0; i < ops; ++i) {
      if (!weighted_of.count(i)) continue;
      ReconstructionBlock b;
      b.first = b.last = i;
      b.input_tensor = m.ops(i).inputs(0);
      b.output_tensor = m.ops(i).outputs(0);
      b.weighted = {weighted_of.at(i)};
      b.name = m.ops(i).name();
      blocks.push_back(b);
    }
    return blocks;
  }
  // producer[t]: the op writing tensor t (-1: the model input); last_use[t]: the last op reading it
  // (ops for the model output). A cut after op j is where exactly one tensor is live.
  std::vector<int> producer(m.tensors_size(), -2), last_use(m.tensors_size(), -1);
  producer[backends::InputTensor(m)] = -1;
  for (int i = 0; i < ops; ++i) {
    producer[m.ops(i).outputs(0)] = i;
    for (int t : m.ops(i).inputs()) last_use[t] = std::max(last_use[t], i);
  }
  last_use[backends::OutputTensor(m)] = ops;
  std::vector<ReconstructionBlock> segments;
  int start = 0, in = backends::InputTensor(m);
  for (int j = 0; j < ops; ++j) {
    int live = 0, live_tensor = -1;
    for (int t = 0; t < m.tensors_size(); ++t) {
      if (producer[t] >= -1 && producer[t] <= j && last_use[t] > j) ++live, live_tensor = t;
    }
    if (live != 1) continue;
    ReconstructionBlock s;
    s.first = start;
    s.last = j;
    s.input_tensor = in;
    s.output_tensor = live_tensor;
    for (int i = start; i <= j; ++i)
      if (weighted_of.count(i)) s.weighted.push_back(weighted_of.at(i));
    segments.push_back(s);
    start = j + 1;
    in = live_tensor;
  }
  // Consecutive segments whose ops share one name prefix are one block.
  auto key = [&](const ReconstructionBlock& s) {
    const std::string p = Prefix(m.ops(s.first).name());
    for (int i = s.first; i <= s.last; ++i)
      if (Prefix(m.ops(i).name()) != p) return std::string();
    return p;
  };
  for (const ReconstructionBlock& s : segments) {
    if (!blocks.empty() && !key(s).empty() && key(s) == key(blocks.back())) {
      ReconstructionBlock& b = blocks.back();
      b.last = s.last;
      b.output_tensor = s.output_tensor;
      b.weighted.insert(b.weighted.end(), s.weighted.begin(), s.weighted.end());
    } else {
      blocks.push_back(s);
    }
  }
  for (ReconstructionBlock& b : blocks) {
    const std::string k = key(b);
    b.name = !k.empty()          ? k
             : b.first == b.last ? m.ops(b.first).name()
                                 : absl::StrCat(m.ops(b.first).name(), "..", m.ops(b.last).name());
  }
  return blocks;
}

absl::Status ReconstructBlocks(PtqPassContext& ctx, const BlockReconstructionOptions& o) {
  if (ctx.calibration == nullptr || ctx.images <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(o.pass, " needs calibration images"));
  }
  if (ctx.quant == nullptr) return absl::FailedPreconditionError(absl::StrCat(o.pass, " needs the quant: section"));
  FloatNet& net = *ctx.net;
  const QuantizedModel original = net.model;  // the float net: targets and float inputs
  const auto start = Clock::now();
  // The activation grids the conversion would calibrate on the float net.
  std::map<int, QParams> grids;
  if (o.act_quant) {
    ASSIGN_OR_RETURN(grids, CalibratedActivationGrids(ctx));
  }
  const std::vector<ReconstructionBlock> blocks = FindBlocks(net, o.layer_wise);
  int with_weights = 0;
  for (const ReconstructionBlock& b : blocks) with_weights += !b.weighted.empty();
  const bool live = ctx.log != nullptr && isatty(fileno(ctx.log));
  const std::string prefix = ctx.name.empty() ? "" : absl::StrCat("[", ctx.name, "] ");
  std::vector<std::string> done, skipped;
  double scale_change = 0;
  int scales = 0, block_no = 0;
  for (size_t bi = 0; bi < blocks.size(); ++bi) {
    const ReconstructionBlock& b = blocks[bi];
    if (b.weighted.empty()) continue;  // nothing to round (a pool): its grid stays as calibrated
    ++block_no;
    const auto block_start = Clock::now();
    const uint64_t seed = ctx.seed * 1000003 + bi;
    absl::StatusOr<BuiltBlock> built = BuildBlock(net, b, *ctx.quant, grids, o, seed);
    if (absl::IsUnimplemented(built.status())) {
      skipped.push_back(absl::StrCat("block '", b.name, "': ", built.status().message()));
      continue;
    }
    RETURN_IF_ERROR(built.status());
    BuiltBlock& blk = *built;
    if (blk.weights.empty()) {
      skipped.push_back(absl::StrCat("block '", b.name, "' (float weights)"));
      continue;
    }
    // Float input and target from the float net; the input the rounded (and quantized) net gives.
    std::vector<std::vector<float>> fp, qin;
    RETURN_IF_ERROR(Collect(original, ctx, b.last, {b.input_tensor, b.output_tensor}, nullptr, 0, &fp));
    RETURN_IF_ERROR(Collect(net.model, ctx, std::max(0, b.first - 1), {b.input_tensor}, o.act_quant ? &grids : nullptr,
                            b.first, &qin));
    const std::vector<float>& x_fp = fp[0];
    const std::vector<float>& target = fp[1];
    const std::vector<float>& x_q = qin[0];
    const int64_t n = ctx.images, in_per = Numel(blk.in_shape), out_per = Numel(blk.out_shape);
    // lp_loss: squared error summed over channels, averaged over images and positions.
    const int64_t positions = blk.out_shape.size() == 3 ? blk.out_shape[1] * blk.out_shape[2] : 1;
    nn::Model& model = *blk.model;
    auto block_loss = [&](SoftRoundedWeight::Mode mode) {
      for (auto& w : blk.weights) w->set_mode(mode);
      model.set_training(false);
      double sum = 0;
      for (int64_t s0 = 0; s0 < n; s0 += 256) {
        const int64_t bsz = std::min<int64_t>(256, n - s0);
        nn::Shape shape = {bsz};
        shape.insert(shape.end(), blk.in_shape.begin(), blk.in_shape.end());
        Tensor x(shape, std::vector<float>(x_q.begin() + s0 * in_per, x_q.begin() + (s0 + bsz) * in_per));
        const Tensor& y = model.Forward(x);
        for (int64_t j = 0; j < bsz * out_per; ++j) {
          const double d = y[j] - target[s0 * out_per + j];
          sum += d * d;
        }
      }
      return sum / static_cast<double>(n * positions);
    };
    std::vector<float> initial_scales;
    for (auto& a : blk.acts) initial_scales.push_back(a->Scale());
    const double loss_nearest = block_loss(SoftRoundedWeight::Mode::kNearest);
    // Adam on V (and on the step sizes, cosine-annealed).
    std::vector<nn::Parameter*> v_params, s_params;
    for (auto& w : blk.weights)
      for (nn::Parameter* p : w->parameters()) v_params.push_back(p);
    for (auto& a : blk.acts)
      for (nn::Parameter* p : a->parameters()) s_params.push_back(p);
    nn::Adam::Options ao;
    ao.lr = o.lr;
    nn::Adam adam_v(ao);
    adam_v.Attach(v_params);
    ao.lr = o.act_lr;
    nn::Adam adam_s(ao);
    adam_s.Attach(s_params);
    for (auto& w : blk.weights) w->set_mode(SoftRoundedWeight::Mode::kSoft);
    model.set_training(true);
    const int64_t batch = std::min<int64_t>(o.batch_images, n);
    nn::Shape shape = {batch};
    shape.insert(shape.end(), blk.in_shape.begin(), blk.in_shape.end());
    Tensor xb(shape), dy({batch, out_per});
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    std::mt19937_64 rng(seed);
    FastRng drop_rng{seed ^ 0x5bd1e995ULL};
    std::vector<float> keep_float;
    std::vector<uint64_t> words;
    const int warm = static_cast<int>(o.warm_start * o.iterations);
    double rec_avg = 0, reg_last = 0;
    auto last_print = Clock::now();
    const auto loop_start = Clock::now();
    for (int it = 0; it < o.iterations; ++it) {
      for (int64_t k = 0; k < batch; ++k) {  // 32 distinct images (a partial shuffle)
        std::uniform_int_distribution<int64_t> pick(k, n - 1);
        std::swap(order[k], order[pick(rng)]);
        const float* q = x_q.data() + order[k] * in_per;
        float* dst = xb.data() + k * in_per;
        if (o.drop_prob > 0.0) {
          DropMask(&drop_rng, o.drop_prob, in_per, &keep_float, &words);
          const float* f = x_fp.data() + order[k] * in_per;
          for (int64_t j = 0; j < in_per; ++j) dst[j] = q[j] + keep_float[j] * (f[j] - q[j]);
        } else {
          std::copy(q, q + in_per, dst);
        }
      }
      const Tensor& y = model.Forward(xb);
      double rec = 0;
      const float g = 2.0f / static_cast<float>(batch * positions);
      for (int64_t k = 0; k < batch; ++k) {
        const float* t = target.data() + order[k] * out_per;
        for (int64_t j = 0; j < out_per; ++j) {
          const float d = y[k * out_per + j] - t[j];
          rec += static_cast<double>(d) * d;
          dy[k * out_per + j] = g * d;
        }
      }
      rec /= static_cast<double>(batch * positions);
      rec_avg = it == 0 ? rec : 0.99 * rec_avg + 0.01 * rec;
      model.Backward(xb, dy);
      if (it >= warm) {
        // beta falls linearly from beta_start to beta_end after the warm start (LinearTempDecay).
        const double frac = o.iterations > warm ? static_cast<double>(it - warm) / (o.iterations - warm) : 1.0;
        const double beta = o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - frac);
        reg_last = 0;
        for (auto& w : blk.weights) reg_last += w->AddRegularizer(o.lambda, beta);
      }
      adam_v.Step(o.lr);
      if (!s_params.empty()) adam_s.Step(o.act_lr * 0.5 * (1.0 + std::cos(M_PI * it / o.iterations)));
      if (live && Seconds(last_print, Clock::now()) >= 1.0) {
        last_print = Clock::now();
        const double per_step = Seconds(loop_start, last_print) / (it + 1);
        std::fprintf(ctx.log, "\r%s%s block %d/%d '%s': step %d/%d  reconstruction %.4g  round %.4g  ETA %.0fs   ",
                     prefix.c_str(), o.pass.c_str(), block_no, with_weights, b.name.c_str(), it + 1, o.iterations,
                     rec_avg, reg_last, per_step * (o.iterations - it - 1));
        std::fflush(ctx.log);
      }
    }
    const double loss_learned = block_loss(SoftRoundedWeight::Mode::kLearned);
    // The learned rounding and step sizes into the net.
    std::vector<std::string> layers;
    double binary = 0, flipped = 0;
    for (size_t k = 0; k < blk.weights.size(); ++k) {
      WeightedLayer& w = net.weighted[blk.weight_layers[k]];
      Tensor hard(w.torch_weight.shape());
      blk.weights[k]->HardWeights(&hard);
      for (int64_t j = 0; j < hard.numel(); ++j) w.torch_weight[blk.model_layout[k] ? w.perm[j] : j] = hard[j];
      SyncWeightedLayer(&net, blk.weight_layers[k]);
      w.weight_grid = blk.weight_grids[k];
      binary += blk.weights[k]->BinaryShare() / blk.weights.size();
      flipped += blk.weights[k]->FlippedShare() / blk.weights.size();
      layers.push_back(w.name);
    }
    for (size_t k = 0; k < blk.acts.size(); ++k) {
      grids[blk.act_tensors[k]].scale[0] = blk.acts[k]->Scale();
      scale_change += std::fabs(blk.acts[k]->Scale() / initial_scales[k] - 1.0);
      ++scales;
    }
    const double seconds = Seconds(block_start, Clock::now());
    done.push_back(absl::StrFormat(
        "%s [%s] (reconstruction loss nearest %.4g -> %s %.4g, %.1f %% of h binary, "
        "%.1f %% rounded other than nearest, %.1f s)",
        b.name, absl::StrJoin(layers, ", "), loss_nearest, o.pass, loss_learned, 100 * binary, 100 * flipped, seconds));
    if (ctx.log != nullptr) {
      std::fprintf(ctx.log, "%s%s%s block %d/%d '%s' (%zu layers): reconstruction loss nearest %.4g -> %.4g, %.1f s\n",
                   live ? "\r" : "", prefix.c_str(), o.pass.c_str(), block_no, with_weights, b.name.c_str(),
                   layers.size(), loss_nearest, loss_learned, seconds);
      std::fflush(ctx.log);
    }
  }
  if (o.act_quant) net.activation_grid = grids;  // the conversion uses exactly these grids
  const double seconds = Seconds(start, Clock::now());
  ctx.notes->push_back(absl::StrFormat(
      "%s: %zu blocks on %lld images, %d steps each (batches of %d images%s), in %.1f s: %s", o.pass, done.size(),
      static_cast<long long>(ctx.images), o.iterations, o.batch_images,
      o.act_quant ? absl::StrFormat(", activations quantized%s%s",
                                    o.drop_prob > 0 ? absl::StrFormat(", dropped with p %.2f", o.drop_prob) : "",
                                    o.learn_act_scale ? ", step sizes learned" : "")
                  : ", activations float",
      seconds, absl::StrJoin(done, "; ")));
  if (scales > 0) {
    ctx.notes->push_back(
        absl::StrFormat("%s: %d activation grids pinned for the conversion; learned step sizes moved "
                        "by %.2f %% on average",
                        o.pass, static_cast<int>(grids.size()), 100 * scale_change / scales));
  }
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat(o.pass, ": skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

absl::Status ReadBlockReconstructionOptions(ParamReader& p, BlockReconstructionOptions* o) {
  o->iterations = static_cast<int>(
      p.IntInRange("iterations", o->iterations, 1, 10000000, "Adam steps per block (the paper: 20000)"));
  o->batch_images =
      static_cast<int>(p.IntInRange("batch_images", o->batch_images, 1, 1 << 20, "images per step (the paper: 32)"));
  o->lr = p.DoubleInRange("lr", o->lr, 1e-8, 10.0, "Adam learning rate of the rounding variables");
  o->act_lr = p.DoubleInRange("act_lr", o->act_lr, 0.0, 10.0,
                              "Adam learning rate of the activation step sizes (act_quant), cosine-annealed to 0");
  o->lambda = p.DoubleInRange("lambda", o->lambda, 0.0, 1e6, "weight of the rounding regulariser");
  o->warm_start = p.DoubleInRange("warm_start", o->warm_start, 0.0, 1.0, "share of the steps without the regulariser");
  const std::string blocks = p.Choice("blocks", "auto", {"auto", "layer"},
                                      "auto: residual / inverted residual blocks (single-entry single-exit op ranges "
                                      "grouped by name prefix); layer: each weighted layer alone");
  o->layer_wise = blocks == "layer";
  return p.status();
}

absl::StatusOr<std::unique_ptr<PtqPass>> BrecqPass::Create(ParamReader& p) {
  BlockReconstructionOptions o;
  RETURN_IF_ERROR(ReadBlockReconstructionOptions(p, &o));
  o.act_quant =
      p.Bool("act_quant", false, "quantize the block's activations while reconstructing and learn their step sizes");
  o.learn_act_scale = p.Bool("learn_act_scale", true, "with act_quant: learn the activation step sizes");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new BrecqPass(o));
}

std::string BrecqPass::Describe() const {
  if (o_.pass == "qdrop") {
    return absl::StrCat("qdrop (Wei et al. 2022): ", o_.iterations, " Adam steps per ",
                        o_.layer_wise ? "layer" : "block", ", batches of ", o_.batch_images,
                        " images, activations quantized and dropped with p ", o_.drop_prob);
  }
  return absl::StrCat("brecq (Li et al. 2021): ", o_.iterations, " Adam steps per ", o_.layer_wise ? "layer" : "block",
                      ", batches of ", o_.batch_images, " images, lambda ", o_.lambda,
                      o_.act_quant ? ", activations quantized" : ", activations float");
}

QUANTLAB_REGISTER(PtqPass, "brecq", BrecqPass::Create,
                  "AdaRound's learned rounding reconstructed per residual / inverted residual block (Li et al. 2021)");

}  // namespace quant::ptq
