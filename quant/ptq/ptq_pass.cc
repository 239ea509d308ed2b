#include "quant/ptq/ptq_pass.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/quantizers/tensor_role.h"
#include "yaml-cpp/yaml.h"

namespace quant::ptq {
namespace {

using backends::Op;

// The ops that read tensor t (activations only).
std::vector<int> Consumers(const backends::QuantizedModel& m, int t) {
  std::vector<int> out;
  for (int i = 0; i < m.ops_size(); ++i) {
    for (int x : m.ops(i).inputs()) {
      if (x == t) {
        out.push_back(i);
        break;
      }
    }
  }
  return out;
}

bool IsModelOutput(const backends::QuantizedModel& m, int t) {
  for (int o : m.outputs()) {
    if (o == t) return true;
  }
  return false;
}

// Per-channel ops a pair may pass through: they commute with a positive per-channel
// scale (max pool) or are linear per channel (average pools).
bool PerChannel(const Op& op) {
  return op.has_max_pool2d() || op.has_average_pool2d() || op.has_global_average_pool();
}

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<PtqPass>>> ReadPasses(ParamReader& ptq) {
  std::vector<std::unique_ptr<PtqPass>> out;
  const YAML::Node list = ptq.Node("passes", "PTQ passes run in order before quantization: [cle, bias_absorption, "
                                             "bias_correction, ...] or {name: ..., params}");
  if (!list.IsDefined() || list.IsNull()) return out;
  return Registry<PtqPass>::Get().CreateList(ptq, list, "passes", "PTQ pass names");
}

absl::Status ForEachInputRows(const backends::QuantizedModel& m, const WeightedLayer& w, const float* images, int64_t n,
                              int64_t per_image,
                              const std::function<void(int64_t group, const float* rows, int64_t count)>& rows_fn,
                              const std::map<int, QParams>* grids) {
  const Op& op = m.ops(w.index);
  const int64_t K = ValuesPerOutputChannel(w);
  const bool conv = op.has_conv2d();
  const int64_t groups = conv ? op.conv2d().groups() : 1;
  const std::vector<int64_t> in_shape = backends::TensorShape(m.tensors(op.inputs(0)));  // [H, W, C] or [F]
  const std::vector<int64_t> out_shape = backends::TensorShape(m.tensors(op.outputs(0)));
  const int64_t C = in_shape.back(), cg = C / groups;
  const int64_t ih = conv ? in_shape[0] : 1, iw = conv ? in_shape[1] : 1;
  const int64_t oh = conv ? out_shape[0] : 1, ow = conv ? out_shape[1] : 1;
  const int kh = conv ? op.conv2d().kernel_h() : 1, kw = conv ? op.conv2d().kernel_w() : 1;
  const int sh = conv ? op.conv2d().stride_h() : 1, sw = conv ? op.conv2d().stride_w() : 1;
  const int pt = conv ? op.conv2d().pad_top() : 0, pl = conv ? op.conv2d().pad_left() : 0;
  int target = -1, k = 0;
  for (int i = 0; i < m.ops_size(); ++i) {
    if (backends::WeightTensor(m.ops(i)) < 0) continue;
    if (i == w.index) target = k;
    ++k;
  }
  std::vector<float> rows;
  std::vector<float> logits;
  constexpr int64_t kBatch = 128;
  Hook quantize;
  std::vector<float> quantized_images;
  const int in_t = backends::InputTensor(m);
  if (grids != nullptr) {
    quantize = [&](int i, float* y, int64_t count) {
      if (auto g = grids->find(m.ops(i).outputs(0)); g != grids->end()) FakeQuantizeOnGrid(g->second, y, count);
      return absl::OkStatus();
    };
  }
  for (int64_t s0 = 0; s0 < n; s0 += kBatch) {
    const int64_t b = std::min(kBatch, n - s0);
    const float* batch = images + s0 * per_image;
    if (grids != nullptr && grids->count(in_t)) {
      quantized_images.assign(batch, batch + b * per_image);
      FakeQuantizeOnGrid(grids->at(in_t), quantized_images.data(), b * per_image);
      batch = quantized_images.data();
    }
    RETURN_IF_ERROR(FloatForward(
        m, batch, b, &logits,
        [&](int layer, float* x, int64_t) {
          if (layer != target) return absl::OkStatus();
          const int64_t count = b * oh * ow;
          rows.resize(count * K);
          for (int64_t g = 0; g < groups; ++g) {
            for (int64_t s = 0; s < b; ++s)
              for (int64_t y = 0; y < oh; ++y)
                for (int64_t xo = 0; xo < ow; ++xo) {
                  float* row = rows.data() + ((s * oh + y) * ow + xo) * K;
                  for (int ky = 0; ky < kh; ++ky)
                    for (int kx = 0; kx < kw; ++kx) {
                      const int64_t iy = y * sh - pt + ky, ix = xo * sw - pl + kx;
                      const bool inside = iy >= 0 && iy < ih && ix >= 0 && ix < iw;
                      const float* src = x + ((s * ih + (inside ? iy : 0)) * iw + (inside ? ix : 0)) * C + g * cg;
                      float* dst = row + (ky * kw + kx) * cg;
                      for (int64_t c = 0; c < cg; ++c) dst[c] = inside ? src[c] : 0.0f;
                    }
                }
            rows_fn(g, rows.data(), count);
          }
          return absl::OkStatus();
        },
        quantize));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<int, QParams>> CalibratedActivationGrids(const PtqPassContext& ctx) {
  ASSIGN_OR_RETURN(StaticQuantizers q, MakeStaticQuantizers(*ctx.net, *ctx.quant));
  RETURN_IF_ERROR(QuantizeStatic(*ctx.net, q, ctx.calibration, ctx.images).status());
  std::map<int, QParams> grids;
  grids[backends::InputTensor(ctx.net->model)] = q.input->qparams();
  for (int i = 0; i < ctx.net->model.ops_size(); ++i) {
    if (q.activations[i] != nullptr) grids[ctx.net->model.ops(i).outputs(0)] = q.activations[i]->qparams();
  }
  return grids;
}

void FakeQuantizeOnGrid(const QParams& g, float* x, int64_t n) {
  const float s = g.scale[0], inv = 1.0f / s;
  const float zp = static_cast<float>(g.zero_point[0]);
  const float lo = static_cast<float>(g.quant_min), hi = static_cast<float>(g.quant_max);
  for (int64_t i = 0; i < n; ++i) x[i] = (std::min(std::max(std::nearbyint(x[i] * inv) + zp, lo), hi) - zp) * s;
}

absl::StatusOr<std::optional<QParams>> WeightGridOf(const QuantConfig& quant, const WeightedLayer& w,
                                                    const std::string& pass) {
  ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> quantizer, quant.WeightQuantizer(w.name));
  if (quantizer == nullptr) return std::optional<QParams>();
  if (auto* aware = dynamic_cast<RoleAware*>(quantizer.get())) RETURN_IF_ERROR(aware->SetRole(TensorRole::kWeights));
  RETURN_IF_ERROR(quantizer->Observe(w.torch_weight));
  RETURN_IF_ERROR(quantizer->ComputeQParams());
  ASSIGN_OR_RETURN(QParams grid, quantizer->IntegerGrid());
  if (grid.granularity == Granularity::kPerBlock) {
    return absl::InvalidArgumentError(
        absl::StrCat(pass, ": layer '", w.name, "': per_block weights are not supported"));
  }
  return std::optional<QParams>(std::move(grid));
}

int64_t OutputChannels(const WeightedLayer& w) { return static_cast<int64_t>(w.bias.size()); }

int64_t ValuesPerOutputChannel(const WeightedLayer& w) { return w.torch_weight.numel() / OutputChannels(w); }

std::vector<int64_t> InputChannelIndices(const WeightedLayer& w, int64_t c, bool depthwise) {
  std::vector<int64_t> out;
  const int64_t per = ValuesPerOutputChannel(w);
  if (depthwise) {  // [C, 1, k, k]: input channel c is output channel c's kernel
    for (int64_t j = 0; j < per; ++j) out.push_back(c * per + j);
    return out;
  }
  // [O, I] (linear, taps = 1) or [O, C, kh, kw] (conv, groups 1).
  const int64_t taps = w.torch_weight.rank() == 4 ? w.torch_weight.dim(2) * w.torch_weight.dim(3) : 1;
  const int64_t in_channels = per / taps;
  for (int64_t o = 0; o < OutputChannels(w); ++o) {
    for (int64_t t = 0; t < taps; ++t) out.push_back((o * in_channels + c) * taps + t);
  }
  return out;
}

std::vector<LayerPair> FindLayerPairs(const FloatNet& net, std::vector<std::string>* skipped) {
  const backends::QuantizedModel& m = net.model;
  std::vector<int> weighted_of(m.ops_size(), -1);
  for (size_t k = 0; k < net.weighted.size(); ++k) weighted_of[net.weighted[k].index] = static_cast<int>(k);
  std::vector<LayerPair> pairs;
  for (size_t k = 0; k < net.weighted.size(); ++k) {
    const WeightedLayer& first = net.weighted[k];
    const Op& op = m.ops(first.index);
    auto skip = [&](const std::string& why) {
      if (skipped) skipped->push_back(absl::StrCat(first.name, ": ", why));
    };
    int t = op.outputs(0);
    std::string via;
    int next = -1;
    for (;;) {
      if (IsModelOutput(m, t)) break;
      const std::vector<int> c = Consumers(m, t);
      if (c.size() != 1) {
        std::string names;
        for (int i : c) absl::StrAppend(&names, names.empty() ? "" : ", ", m.ops(i).name());
        skip(absl::StrCat("its output feeds ", c.size(), " ops (", names, "), not one layer"));
        break;
      }
      const Op& consumer = m.ops(c[0]);
      if (PerChannel(consumer)) {
        absl::StrAppend(&via, " via ", consumer.name());
        t = consumer.outputs(0);
        continue;
      }
      if (weighted_of[c[0]] < 0 || consumer.inputs(0) != t) {
        skip(absl::StrCat("feeds ", consumer.name(), " (", backends::OpKind(consumer),
                          "), which a per-channel scale does not pass through"));
        break;
      }
      next = weighted_of[c[0]];
      break;
    }
    if (next < 0) continue;
    const WeightedLayer& second = net.weighted[next];
    const Op& sop = m.ops(second.index);
    LayerPair p{static_cast<int>(k), next, false};
    if (sop.has_conv2d() && sop.conv2d().groups() > 1) {
      if (sop.conv2d().groups() != OutputChannels(second) || OutputChannels(second) != OutputChannels(first)) {
        skip(absl::StrCat("feeds ", second.name, ", a grouped (not depthwise) conv"));
        continue;
      }
      p.depthwise_second = true;
    } else if (sop.has_fully_connected() && second.torch_weight.dim(1) != OutputChannels(first)) {
      skip(absl::StrCat("feeds ", second.name, " through a flatten (", second.torch_weight.dim(1), " features from ",
                        OutputChannels(first), " channels)"));
      continue;
    }
    pairs.push_back(p);
  }
  return pairs;
}

}  // namespace quant::ptq
