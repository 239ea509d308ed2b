#include "quant/ptq/converter.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/status_macros.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"
#include "quant/quantizers/affine_quantizer.h"
#include "quant/training/bn_folding.h"

namespace quant::ptq {
namespace {

using backends::Op;
using backends::QuantizedModel;

int64_t Numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

std::string ShapeStr(const std::vector<int64_t>& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// [C, H, W] -> [H, W, C]; [F] unchanged.
std::vector<int64_t> Nhwc(const std::vector<int64_t>& s) {
  if (s.size() == 3) return {s[1], s[2], s[0]};
  return s;
}

bool FiniteScale(float s) { return std::isfinite(s) && s > 0.0f; }

bool IsWeighted(const std::string& type) { return type == "linear" || type == "conv2d"; }

}  // namespace

int FloatGraph::Resolve(int v) const {
  while (v > 0 && nodes[nn::Model::ProducerOf(v)].removed) v = nodes[nn::Model::ProducerOf(v)].inputs[0];
  return v;
}

std::string FloatGraph::NodeLabel(int node) const {
  return absl::StrCat("node ", node, " '", nodes[node].name, "' (", nodes[node].describe, ")");
}

// ---- extract ----

absl::StatusOr<FloatGraph> ExtractGraph(nn::Model& model, PassLog* log) {
  if (!model.built()) return absl::FailedPreconditionError("extract: the model is not built");
  FloatGraph g;
  g.source_model = model.name();
  g.output_value = model.output_value();
  for (int v = 0; v < model.num_values(); ++v) g.value_shapes.push_back(model.value_shape(v));
  int weighted = 0;
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& layer = model.layer(i);
    FloatNode n;
    n.type = layer.type();
    n.name = layer.name();
    n.describe = layer.Describe();
    n.inputs = model.inputs_of(i);
    n.layer = &layer;
    if (n.type == "linear") {
      auto& lin = static_cast<nn::Linear&>(layer);
      n.weight = lin.weight().value;
      n.bias.assign(lin.out_features(), 0.0f);
      if (lin.bias().value.numel() == lin.out_features()) {
        std::copy(lin.bias().value.data(), lin.bias().value.data() + lin.out_features(), n.bias.begin());
      }
      ++weighted;
    } else if (n.type == "conv2d") {
      auto& conv = static_cast<nn::Conv2d&>(layer);
      const int64_t O = conv.options().out_channels;
      n.weight = conv.weight().value;
      n.bias.assign(O, 0.0f);
      if (conv.bias().value.numel() == O) std::copy(conv.bias().value.data(), conv.bias().value.data() + O, n.bias.begin());
      ++weighted;
    }
    g.nodes.push_back(std::move(n));
  }
  g.groups = nn::FindFusionGroups(model);
  if (log) {
    log->push_back(absl::StrCat("extract: ", g.nodes.size(), " nodes (", weighted, " conv/linear), ", g.groups.size(),
                                " fusion groups, from model '", g.source_model, "'"));
  }
  return g;
}

// ---- fold_batch_norm ----

absl::Status FoldBatchNormPass(FloatGraph* g, PassLog* log) {
  std::vector<std::string> folded;
  std::vector<bool> in_group(g->nodes.size(), false);
  for (const nn::FusionGroup& fg : g->groups) {
    if (fg.batch_norm < 0) continue;
    in_group[fg.batch_norm] = true;
    FloatNode& anchor = g->nodes[fg.anchor];
    FloatNode& bn_node = g->nodes[fg.batch_norm];
    auto& bn = static_cast<nn::BatchNorm&>(*bn_node.layer);
    const Tensor bias({static_cast<int64_t>(anchor.bias.size())}, anchor.bias);
    // The fold QAT's conversion uses (quant/training/bn_folding.h), not a second derivation.
    const FoldedWeights f = FoldBatchNorm(anchor.weight, &bias, bn, bn.eps());
    anchor.weight = f.weight;
    anchor.bias.assign(f.bias.data(), f.bias.data() + f.bias.numel());
    bn_node.removed = true;
    folded.push_back(absl::StrCat(bn_node.name, " into ", anchor.name));
  }
  for (size_t i = 0; i < g->nodes.size(); ++i) {
    const std::string& t = g->nodes[i].type;
    if ((t == "batchnorm1d" || t == "batchnorm2d") && !in_group[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          g->NodeLabel(static_cast<int>(i)), ": no backend can run it: a BatchNorm is folded into the conv/linear "
                                             "right before it (its only consumer), and there is none"));
    }
  }
  if (log) {
    log->push_back(absl::StrCat("fold_batch_norm: ", folded.size(), " BatchNorm", folded.size() == 1 ? "" : "s",
                                " folded", folded.empty() ? "" : ": ", absl::StrJoin(folded, ", ")));
  }
  return absl::OkStatus();
}

// ---- fuse_activations ----

absl::Status FuseActivationsPass(FloatGraph* g, PassLog* log) {
  std::vector<std::string> fused;
  std::vector<bool> in_group(g->nodes.size(), false);
  for (const nn::FusionGroup& fg : g->groups) {
    if (fg.activation < 0) continue;
    FloatNode& act = g->nodes[fg.activation];
    if (act.type != "relu" && act.type != "relu6") continue;  // reported below
    in_group[fg.activation] = true;
    g->nodes[fg.anchor].fused = act.type == "relu" ? backends::RELU : backends::RELU6;
    act.removed = true;
    fused.push_back(absl::StrCat(act.name, " into ", g->nodes[fg.anchor].name));
  }
  for (size_t i = 0; i < g->nodes.size(); ++i) {
    const FloatNode& n = g->nodes[i];
    if (n.type == "hardtanh") {
      return absl::InvalidArgumentError(absl::StrCat(g->NodeLabel(static_cast<int>(i)),
                                                     ": no backend can run it: only ReLU and ReLU6 are fused (as "
                                                     "output clamps)"));
    }
    if ((n.type == "relu" || n.type == "relu6") && !in_group[i]) {
      return absl::InvalidArgumentError(absl::StrCat(
          g->NodeLabel(static_cast<int>(i)), ": no backend can run it: an activation is fused into the "
                                             "conv/linear/add right before it (its only consumer), and there is none"));
    }
  }
  if (log) {
    log->push_back(absl::StrCat("fuse_activations: ", fused.size(), " fused as output clamps",
                                fused.empty() ? "" : ": ", absl::StrJoin(fused, ", ")));
  }
  return absl::OkStatus();
}

// ---- remove_identities ----

absl::Status RemoveIdentitiesPass(FloatGraph* g, PassLog* log) {
  std::vector<std::string> removed;
  for (FloatNode& n : g->nodes) {
    if (n.type == "dropout" && !n.removed) {
      n.removed = true;
      removed.push_back(n.name);
    }
  }
  if (log) {
    log->push_back(absl::StrCat("remove_identities: ", removed.size(), " removed", removed.empty() ? "" : ": ",
                                absl::StrJoin(removed, ", ")));
  }
  return absl::OkStatus();
}

// ---- lower ----

absl::StatusOr<FloatNet> LowerPass(const FloatGraph& g, PassLog* log) {
  FloatNet net;
  QuantizedModel& m = net.model;
  m.set_format_version(backends::kQuantizedModelFormatVersion);
  m.set_source_model(g.source_model);
  net.nn_input_shape = g.value_shapes[0];
  std::vector<int> tensor_of(g.value_shapes.size(), -1);  // value id -> tensor index
  auto add_tensor = [&](const std::string& name, const std::vector<int64_t>& shape) {
    backends::Tensor* t = m.add_tensors();
    t->set_name(name);
    for (int64_t d : shape) t->add_shape(static_cast<int32_t>(d));
    t->set_dtype(backends::FLOAT32);
    return m.tensors_size() - 1;
  };
  tensor_of[0] = add_tensor("input", Nhwc(g.value_shapes[0]));
  m.add_inputs(tensor_of[0]);
  int permuted = 0;
  for (int i = 0; i < static_cast<int>(g.nodes.size()); ++i) {
    const FloatNode& n = g.nodes[i];
    const int out_value = nn::Model::OutputOf(i);
    if (n.removed) {
      tensor_of[out_value] = tensor_of[g.Resolve(n.inputs[0])];
      continue;
    }
    auto fail = [&](const std::string& why) {
      return absl::InvalidArgumentError(absl::StrCat(g.NodeLabel(i), ": no backend can run it: ", why));
    };
    std::vector<int> in_tensors;
    for (int v : n.inputs) in_tensors.push_back(tensor_of[g.Resolve(v)]);
    const std::vector<int64_t>& in_shape = g.value_shapes[g.Resolve(n.inputs[0])];
    const std::vector<int64_t>& out_shape = g.value_shapes[out_value];
    Op* op = nullptr;
    auto new_op = [&](const std::vector<int>& inputs) {
      op = m.add_ops();
      op->set_name(n.name);
      for (int t : inputs) op->add_inputs(t);
      const int y = add_tensor(n.name, Nhwc(out_shape));
      op->add_outputs(y);
      op->set_fused_activation(n.fused);
      tensor_of[out_value] = y;
      return op;
    };
    if (IsWeighted(n.type)) {
      WeightedLayer w;
      w.name = n.name;
      w.torch_weight = n.weight;
      w.bias = n.bias;
      const int64_t O = static_cast<int64_t>(n.bias.size());
      std::vector<int64_t> wshape;
      if (n.type == "linear") {
        if (in_shape.size() != 1) return fail(absl::StrCat("a linear layer on a ", ShapeStr(in_shape), " input"));
        const int64_t I = in_shape[0];
        w.perm.resize(O * I);
        for (int64_t j = 0; j < O * I; ++j) w.perm[j] = j;
        // The NCHW -> NHWC column permutation when the input is a flattened [C, H, W] (C > 1).
        const int src = g.Resolve(n.inputs[0]);
        if (src > 0 && g.nodes[nn::Model::ProducerOf(src)].type == "flatten") {
          const std::vector<int64_t>& chw = g.value_shapes[g.Resolve(g.nodes[nn::Model::ProducerOf(src)].inputs[0])];
          if (chw.size() == 3 && chw[0] > 1) {
            const int64_t C = chw[0], H = chw[1], W = chw[2];
            for (int64_t o = 0; o < O; ++o)
              for (int64_t c = 0; c < C; ++c)
                for (int64_t h = 0; h < H; ++h)
                  for (int64_t x = 0; x < W; ++x) w.perm[o * I + (h * W + x) * C + c] = o * I + c * H * W + h * W + x;
            ++permuted;
          }
        }
        wshape = {O, I};
      } else {
        if (in_shape.size() != 3) return fail(absl::StrCat("a conv on a ", ShapeStr(in_shape), " input"));
        const nn::Conv2dOptions& o = static_cast<const nn::Conv2d&>(*n.layer).options();
        const int64_t G = o.groups, Ig = in_shape[0] / G, k = o.kernel;
        w.perm.resize(O * k * k * Ig);
        for (int64_t oc = 0; oc < O; ++oc)
          for (int64_t ky = 0; ky < k; ++ky)
            for (int64_t kx = 0; kx < k; ++kx)
              for (int64_t c = 0; c < Ig; ++c) w.perm[((oc * k + ky) * k + kx) * Ig + c] = ((oc * Ig + c) * k + ky) * k + kx;
        wshape = {O, k, k, Ig};
      }
      w.weight_tensor = add_tensor(n.name + ".weight", wshape);
      w.bias_tensor = add_tensor(n.name + ".bias", {O});
      backends::Tensor* wt = m.mutable_tensors(w.weight_tensor);
      wt->mutable_float_data()->Resize(static_cast<int>(w.perm.size()), 0.0f);
      for (size_t j = 0; j < w.perm.size(); ++j) wt->set_float_data(static_cast<int>(j), n.weight.data()[w.perm[j]]);
      m.mutable_tensors(w.bias_tensor)->mutable_float_data()->Assign(n.bias.begin(), n.bias.end());
      new_op({in_tensors[0], w.weight_tensor, w.bias_tensor});
      if (n.type == "linear") {
        op->mutable_fully_connected();
      } else {
        const nn::Conv2dOptions& o = static_cast<const nn::Conv2d&>(*n.layer).options();
        backends::Conv2DOptions* c = op->mutable_conv2d();
        c->set_groups(static_cast<int32_t>(o.groups));
        c->set_kernel_h(static_cast<int32_t>(o.kernel));
        c->set_kernel_w(static_cast<int32_t>(o.kernel));
        c->set_stride_h(static_cast<int32_t>(o.stride));
        c->set_stride_w(static_cast<int32_t>(o.stride));
        c->set_pad_top(static_cast<int32_t>(o.padding));
        c->set_pad_bottom(static_cast<int32_t>(o.padding));
        c->set_pad_left(static_cast<int32_t>(o.padding));
        c->set_pad_right(static_cast<int32_t>(o.padding));
      }
      w.index = m.ops_size() - 1;
      for (const nn::FusionGroup& fg : g.groups) {
        if (fg.anchor != i || fg.batch_norm < 0) continue;
        auto& bn = static_cast<nn::BatchNorm&>(*g.nodes[fg.batch_norm].layer);
        w.bn_gamma.assign(bn.weight().value.data(), bn.weight().value.data() + O);
        w.bn_beta.assign(bn.bias().value.data(), bn.bias().value.data() + O);
      }
      net.weighted.push_back(std::move(w));
    } else if (n.type == "maxpool2d" || n.type == "avgpool2d") {
      const auto& p = static_cast<const nn::Pool2d&>(*n.layer);
      new_op({in_tensors[0]});
      backends::Pool2DOptions* o =
          p.kind() == nn::Pool2d::Kind::kMax ? op->mutable_max_pool2d() : op->mutable_average_pool2d();
      o->set_kernel_h(static_cast<int32_t>(p.kernel()));
      o->set_kernel_w(static_cast<int32_t>(p.kernel()));
      o->set_stride_h(static_cast<int32_t>(p.stride()));
      o->set_stride_w(static_cast<int32_t>(p.stride()));
    } else if (n.type == "flatten") {
      if (in_shape.size() == 3 && in_shape[0] > 1) {
        // A flattened [C, H, W] is in NCHW order in the float model and NHWC order in the
        // integer one; only a linear consumer can absorb that (its column permutation).
        for (int j = i + 1; j < static_cast<int>(g.nodes.size()); ++j) {
          const FloatNode& c = g.nodes[j];
          if (c.removed) continue;
          for (int v : c.inputs) {
            if (g.Resolve(v) == out_value && c.type != "linear") {
              return fail(absl::StrCat("its output (a flattened ", ShapeStr(in_shape), ", C > 1) feeds ", g.NodeLabel(j),
                                       "; the NHWC integer model can only permute the columns of a linear consumer"));
            }
          }
        }
        if (g.Resolve(g.output_value) == out_value) {
          return fail("a flattened [C, H, W] (C > 1) as the model output differs in NHWC order");
        }
      }
      new_op({in_tensors[0]})->mutable_flatten();
    } else if (n.type == "add") {
      new_op(in_tensors)->mutable_add()->set_left_shift(backends::kAddLeftShift);
    } else if (n.type == "concat") {
      new_op(in_tensors)->mutable_concat();  // CHW axis 0 = NHWC's last axis (and [F]'s only one)
    } else if (n.type == "global_avg_pool") {
      new_op({in_tensors[0]})->mutable_global_average_pool();
    } else if (n.type == "hardswish") {
      new_op({in_tensors[0]})->mutable_hardswish();
    } else if (n.type == "sigmoid") {
      new_op({in_tensors[0]})->mutable_sigmoid();
    } else if (n.type == "tanh") {
      new_op({in_tensors[0]})->mutable_tanh();
    } else {
      return fail(absl::StrCat("op type '", n.type, "' has no integer form in the QuantizedModel"));
    }
    FloatNet::FixedQParams f;
    bool is_signed = false;
    if (n.layer->fixed_output_qparams(&f.scale, &f.zero_point, &is_signed)) net.fixed_output[m.ops_size() - 1] = f;
  }
  m.add_outputs(tensor_of[g.Resolve(g.output_value)]);
  net.value_tensor = tensor_of;
  if (net.weighted.empty()) return absl::InvalidArgumentError("the model has no conv/linear layer to quantize");
  RETURN_IF_ERROR(backends::InferShapes(m).status());
  if (log) {
    log->push_back(absl::StrCat("lower: ", m.ops_size(), " ops, ", m.tensors_size(), " tensors (NHWC, OHWI), ",
                                permuted, " linear column permutation", permuted == 1 ? "" : "s",
                                " after a flatten"));
  }
  return net;
}

void SyncWeightedLayer(FloatNet* net, int k) {
  const WeightedLayer& w = net->weighted[k];
  backends::Tensor* wt = net->model.mutable_tensors(w.weight_tensor);
  for (size_t j = 0; j < w.perm.size(); ++j) wt->set_float_data(static_cast<int>(j), w.torch_weight.data()[w.perm[j]]);
  net->model.mutable_tensors(w.bias_tensor)->mutable_float_data()->Assign(w.bias.begin(), w.bias.end());
}

absl::StatusOr<FloatNet> ExtractFloatNet(nn::Model& model) {
  PassLog log;
  ASSIGN_OR_RETURN(FloatGraph g, ExtractGraph(model, &log));
  RETURN_IF_ERROR(FoldBatchNormPass(&g, &log));
  RETURN_IF_ERROR(FuseActivationsPass(&g, &log));
  RETURN_IF_ERROR(RemoveIdentitiesPass(&g, &log));
  ASSIGN_OR_RETURN(FloatNet net, LowerPass(g, &log));
  net.log = std::move(log);
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
  backends::floatk::RunOptions opt;
  if (before) {
    std::vector<int> weighted_of(net.ops_size(), -1);
    int k = 0;
    for (int i = 0; i < net.ops_size(); ++i) {
      if (backends::WeightTensor(net.ops(i)) >= 0) weighted_of[i] = k++;
    }
    opt.before = [before, weighted_of](int op, float* x, int64_t n) {
      return weighted_of[op] < 0 ? absl::OkStatus() : before(weighted_of[op], x, n);
    };
  }
  opt.after = after;
  return backends::floatk::Forward(net, input, batch, logits, opt);
}

// ---- choose_qparams / quantize_weights ----

bool OwnOutputQParams(const Op& op) {
  return !op.has_max_pool2d() && !op.has_flatten() && !op.has_reshape() && !op.has_sigmoid() && !op.has_tanh();
}

namespace {

absl::Status CheckAffine(const std::string& layer, const char* role, const Quantizer& q) {
  if (dynamic_cast<const AffineQuantizer*>(&q) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "layer '", layer, "': ", role, " quantizer ", q.Describe(),
        " is not an affine quantizer; static PTQ converts to an integer model and needs an integer grid with a scale "
        "and zero point (quantizer: affine or one derived from it); use ptq.method weight_only/dynamic or QAT for "
        "other number formats"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<StaticQuantizers> MakeStaticQuantizers(const FloatNet& net, const QuantConfig& config) {
  StaticQuantizers q;
  auto check_activation = [&](const std::string& name, const std::unique_ptr<Quantizer>& a) -> absl::Status {
    if (a == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': activations are float (none); a static integer model quantizes every activation"));
    }
    RETURN_IF_ERROR(CheckAffine(name, "activation", *a));
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
  q.is_signed = q.input->spec().is_signed;
  for (const WeightedLayer& w : net.weighted) {
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> wq, config.WeightQuantizer(w.name));
    if (wq == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", w.name, "': weights are float (none); a static integer model needs them quantized"));
    }
    RETURN_IF_ERROR(CheckAffine(w.name, "weight", *wq));
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
    q.weights.push_back(std::move(wq));
  }
  for (const Op& op : net.model.ops()) {
    std::unique_ptr<Quantizer> aq;
    if (OwnOutputQParams(op)) {
      ASSIGN_OR_RETURN(aq, config.ActivationQuantizer(op.name()));
      RETURN_IF_ERROR(check_activation(op.name(), aq));
    }
    q.activations.push_back(std::move(aq));
  }
  return q;
}

void SetOutputClamp(Op* op, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
  // A fused ReLU clamps at the zero point (real 0), a ReLU6 also at round(6 / s) + zp.
  if (op->fused_activation() == backends::RELU || op->fused_activation() == backends::RELU6)
    lo = std::max(lo, zero_point);
  if (op->fused_activation() == backends::RELU6) {
    const double six = std::nearbyint(6.0 / static_cast<double>(scale)) + zero_point;
    hi = static_cast<int32_t>(std::min<double>(hi, six));
  }
  op->set_output_min(lo);
  op->set_output_max(hi);
}

int64_t WriteWeightsAndBias(const WeightedLayer& w, const std::vector<int32_t>& codes, const QParams& grid,
                            backends::DType dtype, int bits, QuantizedModel* m) {
  backends::Tensor* wt = m->mutable_tensors(w.weight_tensor);
  wt->set_dtype(dtype);
  wt->set_bits(bits);
  wt->set_quantized_dimension(0);
  wt->clear_scale();
  wt->clear_zero_point();
  for (float s : grid.scale) wt->add_scale(s);
  for (int32_t z : grid.zero_point) wt->add_zero_point(z);
  std::string bytes(w.perm.size(), '\0');
  for (size_t j = 0; j < w.perm.size(); ++j) {
    const int32_t v = codes[w.perm[j]];
    bytes[j] = static_cast<char>(dtype == backends::INT8 ? static_cast<uint8_t>(static_cast<int8_t>(v))
                                                         : static_cast<uint8_t>(v));
  }
  wt->set_data(bytes);
  const double s_in = backends::TensorScale(m->tensors(m->ops(w.index).inputs(0)));
  backends::Tensor* bt = m->mutable_tensors(w.bias_tensor);
  bt->set_dtype(backends::INT32);
  bt->clear_int_data();
  for (size_t o = 0; o < w.bias.size(); ++o) {
    const double s = s_in * static_cast<double>(grid.scale[grid.size() == 1 ? 0 : o]);
    const double v = std::nearbyint(static_cast<double>(w.bias[o]) / s);
    bt->add_int_data(static_cast<int32_t>(std::min<double>(std::max<double>(v, INT32_MIN), INT32_MAX)));
  }
  return static_cast<int64_t>(bytes.size());
}

absl::StatusOr<QuantizedModel> QuantizeStatic(const FloatNet& net, StaticQuantizers& q, const float* calibration,
                                              int64_t n, int64_t batch_size, PassLog* log) {
  if (n <= 0) return absl::InvalidArgumentError("static PTQ needs at least one calibration image");
  const QuantizedModel& fm = net.model;
  const int in_t = backends::InputTensor(fm);
  const int64_t per = Numel(backends::TensorShape(fm.tensors(in_t)));
  // choose_qparams: the float model's activations (after fused ReLU/ReLU6), as PyTorch's observers see them.
  std::vector<float> logits;
  int observed_ops = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    const int64_t b = std::min(batch_size, n - start);
    const float* x = calibration + start * per;
    if (absl::Status s = q.input->Observe(Tensor({b * per}, std::vector<float>(x, x + b * per))); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("layer 'input' activations, calibration images ", start, "..",
                                                     start + b - 1, ": ", std::string(s.message())));
    }
    RETURN_IF_ERROR(FloatForward(fm, x, b, &logits, nullptr, [&](int i, float* y, int64_t count) {
      if (q.activations[i] == nullptr) return absl::OkStatus();
      absl::Status s = q.activations[i]->Observe(Tensor({count}, std::vector<float>(y, y + count)));
      if (s.ok()) return s;
      return absl::InvalidArgumentError(absl::StrCat("layer '", fm.ops(i).name(), "' activations, calibration images ",
                                                     start, "..", start + b - 1, ": ", std::string(s.message())));
    }));
  }
  auto compute = [](Quantizer& qz, const std::string& what) -> absl::Status {
    absl::Status s = qz.ComputeQParams();
    if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", std::string(s.message())));
    if (qz.qparams().scale.empty()) return absl::InvalidArgumentError(absl::StrCat(what, ": no affine qparams"));
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
  // A grid a pass fixed (net.activation_grid) replaces the observed one.
  int pinned = 0;
  auto grid_of = [&](int tensor, const QParams& observed) -> const QParams& {
    auto g = net.activation_grid.find(tensor);
    if (g == net.activation_grid.end()) return observed;
    ++pinned;
    return g->second;
  };
  QuantizedModel m = fm;
  const backends::DType act_dtype = q.is_signed ? backends::INT8 : backends::UINT8;
  auto set_qparams = [&](int t, float scale, int32_t zp) {
    backends::Tensor* tt = m.mutable_tensors(t);
    tt->set_dtype(act_dtype);
    tt->clear_scale();
    tt->clear_zero_point();
    tt->add_scale(scale);
    tt->add_zero_point(zp);
  };
  {
    const QParams& iq = grid_of(in_t, q.input->qparams());
    set_qparams(in_t, iq.scale[0], iq.zero_point[0]);
  }
  int fixed = 0;
  for (int i = 0; i < m.ops_size(); ++i) {
    Op* op = m.mutable_ops(i);
    const backends::Tensor& x = m.tensors(op->inputs(0));
    int32_t lo = backends::DTypeMin(act_dtype), hi = backends::DTypeMax(act_dtype);
    float s_out;
    int32_t zp_out;
    if (q.activations[i] != nullptr) {
      RETURN_IF_ERROR(compute(*q.activations[i], absl::StrCat("layer '", op->name(), "' activations")));
      const QParams& ap = grid_of(op->outputs(0), q.activations[i]->qparams());
      s_out = ap.scale[0];
      zp_out = ap.zero_point[0];
      lo = static_cast<int32_t>(ap.quant_min);
      hi = static_cast<int32_t>(ap.quant_max);
      ++observed_ops;
    } else if (auto f = net.fixed_output.find(i); f != net.fixed_output.end()) {
      // The op's fixed output qparams (PyTorch's quint8 ones, moved to int8 when the model is signed): TFLite's too.
      s_out = f->second.scale;
      zp_out = f->second.zero_point;
      if (q.is_signed) zp_out -= 128;
      ++fixed;
    } else {  // max pool / flatten / reshape: integers pass through with the input's qparams
      s_out = backends::TensorScale(x);
      zp_out = backends::TensorZeroPoint(x);
    }
    set_qparams(op->outputs(0), s_out, zp_out);
    SetOutputClamp(op, s_out, zp_out, lo, hi);
  }
  if (log) {
    log->push_back(absl::StrCat("choose_qparams: ", observed_ops + 1, " tensors calibrated on ", n, " images (input + ",
                                observed_ops, " op outputs), ", fixed,
                                " fixed (sigmoid/tanh), the rest keep their input's",
                                pinned > 0 ? absl::StrCat("; ", pinned, " of them on the grids a pass fixed") : ""));
  }
  // quantize_weights.
  int64_t weight_values = 0;
  for (size_t k = 0; k < net.weighted.size(); ++k) {
    const WeightedLayer& w = net.weighted[k];
    Quantizer& wq = *q.weights[k];
    const backends::DType wdtype = wq.spec().is_signed ? backends::INT8 : backends::UINT8;
    std::vector<int32_t> ints;
    if (w.weight_grid) {
      // A pass chose these codes (gptq, adaround): read them off its grid, exactly.
      const QParams& g = *w.weight_grid;
      const int64_t per = w.torch_weight.numel() / static_cast<int64_t>(w.bias.size());
      ints.resize(w.torch_weight.numel());
      for (int64_t j = 0; j < w.torch_weight.numel(); ++j) {
        const int64_t c = g.size() == 1 ? 0 : j / per;
        const double v = std::nearbyint(static_cast<double>(w.torch_weight[j]) / g.scale[c]) + g.zero_point[c];
        ints[j] = static_cast<int32_t>(std::min<double>(std::max<double>(v, g.quant_min), g.quant_max));
      }
      weight_values += WriteWeightsAndBias(w, ints, g, wdtype, wq.spec().bits, &m);
      continue;
    }
    RETURN_IF_ERROR(wq.Observe(w.torch_weight));
    RETURN_IF_ERROR(compute(wq, absl::StrCat("layer '", w.name, "' weights")));
    RETURN_IF_ERROR(wq.QuantizeToInt(w.torch_weight, &ints));
    weight_values += WriteWeightsAndBias(w, ints, wq.qparams(), wdtype, wq.spec().bits, &m);
  }
  RETURN_IF_ERROR(backends::ComputeRequantization(&m));
  RETURN_IF_ERROR(backends::ValidateQuantizedModel(m));
  if (log) {
    log->push_back(absl::StrCat("quantize_weights: ", net.weighted.size(), " weight tensors (", weight_values,
                                " values) and int32 biases; requantization multipliers and lookup tables computed"));
  }
  return m;
}

}  // namespace quant::ptq
