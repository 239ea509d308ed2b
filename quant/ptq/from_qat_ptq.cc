#include "quant/ptq/from_qat_ptq.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/data/dataset.h"
#include "quant/nn/loss.h"
#include "quant/qmath/qparams.h"
#include "quant/quantizers/tensor_role.h"
#include "quant/training/bn_folding.h"
#include "quant/training/integer_exact.h"
#include "quant/training/qat_scheme.h"
#include "quant/training/quantizer_transform.h"

namespace quant::ptq {
namespace {

using backends::Op;
using backends::QuantizedModel;

// Per lowered tensor: the nn node whose output quantizer (a QAT quant point) gives
// its grid, or -1. The same rules as the qat scheme's placement (IsActivationQuantPoint).
absl::StatusOr<std::vector<int>> QuantPointOfTensor(const nn::Model& model, const FloatNet& net) {
  std::vector<int> node_of(net.model.tensors_size(), -1);
  for (int j = 0; j < model.num_layers(); ++j) {
    if (!IsActivationQuantPoint(model, j)) continue;
    const int t = net.value_tensor[nn::Model::OutputOf(j)];
    if (t < 0) continue;
    if (node_of[t] >= 0) {
      return absl::InternalError(absl::StrCat("from_qat: layers '", model.layer(node_of[t]).name(), "' and '",
                                              model.layer(j).name(), "' both quantize tensor '",
                                              net.model.tensors(t).name(), "'"));
    }
    node_of[t] = j;
  }
  return node_of;
}

bool IsAveragePool(const Op& op) { return op.has_average_pool2d() || op.has_global_average_pool(); }

// The quantizer of a QAT hook (a plain QuantizerTransform, or the one inside a BN fold).
Quantizer* QuantizerOf(nn::TensorTransform* t, nn::BatchNorm** folded_bn) {
  if (folded_bn) *folded_bn = nullptr;
  if (auto* q = dynamic_cast<QuantizerTransform*>(t)) return &q->quantizer();
  if (auto* f = dynamic_cast<BnFoldTransform*>(t)) {
    if (folded_bn) *folded_bn = &f->batch_norm();
    return &f->quantizer().quantizer();
  }
  if (auto* r = dynamic_cast<IntegerRequantTransform*>(t)) return &r->output_quantizer().quantizer();
  return nullptr;
}

// An activation grid moved into the int8 container: the same values, codes shifted so
// that [quant_min, quant_max] fits [-128, 127].
struct Int8Grid {
  float scale = 0;
  int32_t zero_point = 0, lo = 0, hi = 0;
  int shift = 0;
};

absl::StatusOr<Int8Grid> ToInt8(const QParams& g, const std::string& what) {
  if (g.scale.size() != 1 || g.zero_point.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", g.scale.size(),
                                                   " scales; activations of the integer model are per-tensor"));
  }
  if (g.quant_max - g.quant_min > 255) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": a grid of ", g.quant_max - g.quant_min + 1,
                                                   " levels does not fit 8 bits"));
  }
  if (!(g.scale[0] > 0.0f) || !std::isfinite(g.scale[0])) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": scale ", g.scale[0], " is not a finite positive number"));
  }
  Int8Grid r;
  r.shift = g.quant_max > 127 ? -128 : (g.quant_min < -128 ? 128 : 0);
  r.scale = g.scale[0];
  r.zero_point = g.zero_point[0] + r.shift;
  r.lo = static_cast<int32_t>(g.quant_min) + r.shift;
  r.hi = static_cast<int32_t>(g.quant_max) + r.shift;
  if (r.lo < -128 || r.hi > 127 || r.zero_point < -128 || r.zero_point > 127) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": grid [", g.quant_min, ", ", g.quant_max, "] zero point ",
                                                   g.zero_point[0], " does not fit int8"));
  }
  return r;
}

std::string GridStr(const Int8Grid& g) {
  return absl::StrFormat("scale %.6g zp %d [%d, %d]%s", g.scale, g.zero_point, g.lo, g.hi,
                         g.shift != 0 ? absl::StrCat(" (codes shifted by ", g.shift, ")") : std::string());
}

absl::Status CheckGridKind(std::unique_ptr<Quantizer> q, const std::string& layer, TensorRole role) {
  if (auto* aware = dynamic_cast<RoleAware*>(q.get())) RETURN_IF_ERROR(aware->SetRole(role));
  absl::StatusOr<QParams> g = q->IntegerGrid();
  if (!g.ok() && g.status().code() == absl::StatusCode::kUnimplemented) {
    return absl::InvalidArgumentError(absl::StrCat("layer '", layer, "' ", TensorRoleName(role),
                                                   ": cannot become integer: ", g.status().message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PtqMethod>> FromQatPtq::Create(ParamReader& p) {
  const int64_t images = p.IntInRange("input_images", 1024, 1, 1 << 20,
                                      "training images whose min/max give the model input's 8-bit grid");
  const int64_t batch = p.IntInRange("batch_size", 256, 1, 65536, "batch size of the simulated test pass");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqMethod>(new FromQatPtq(images, batch));
}

std::string FromQatPtq::Describe() const {
  return "from_qat: the QAT-trained quantizers (frozen ranges, learned steps and clips, BN folded as QAT folded it) "
         "converted to an integer model, no re-observation";
}

absl::Status FromQatPtq::Check(nn::Model& model, const QuantConfig& quant) const {
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(model));
  for (const WeightedLayer& w : net.weighted) {
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, quant.WeightQuantizer(w.name));
    if (q == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", w.name, "': weights are float (none) in QAT; the integer model needs them quantized"));
    }
    RETURN_IF_ERROR(CheckGridKind(std::move(q), w.name, TensorRole::kWeights));
  }
  ASSIGN_OR_RETURN(std::vector<int> node_of, QuantPointOfTensor(model, net));
  for (const Op& op : net.model.ops()) {
    if (!OwnOutputQParams(op) || IsAveragePool(op)) continue;
    const int j = node_of[op.outputs(0)];
    if (j < 0) {
      return absl::InvalidArgumentError(absl::StrCat("op '", op.name(), "' (", backends::OpKind(op),
                                                     "): QAT has no quantization point on its output"));
    }
    const std::string& name = model.layer(j).name();
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, quant.ActivationQuantizer(name));
    if (q == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", name, "': its output stays float in QAT (activations: none), in the middle of the graph; the "
          "integer model quantizes every tensor"));
    }
    RETURN_IF_ERROR(CheckGridKind(std::move(q), name, TensorRole::kActivations));
  }
  return absl::OkStatus();
}

absl::StatusOr<PtqResult> FromQatPtq::Apply(const PtqContext& ctx) {
  nn::Model& model = *ctx.model;
  bool hooked = false;
  for (int i = 0; i < model.num_layers(); ++i) {
    hooked = hooked || model.layer(i).weight_transform() != nullptr || model.layer(i).output_transform() != nullptr;
  }
  if (!hooked) {
    return absl::FailedPreconditionError(
        "ptq from_qat converts the fake quantizers a QAT training left on the model, and this model has none "
        "(train.scheme must be qat, in the same config)");
  }
  PtqResult r;
  r.method = "from_qat";
  model.set_training(false);
  // The simulation: the QAT model itself, fake-quantized, in eval mode (observers do not move).
  // It also runs every quantizer once more with the final learned values.
  {
    const DataSplit& test = ctx.dataset->test();
    BatchIterator it(test, batch_size_, /*shuffle=*/false, 0);
    it.StartEpoch(0);
    Tensor images;
    std::vector<int32_t> labels;
    int64_t correct = 0;
    while (it.Next(&images, &labels)) {
      const Tensor& logits = model.Forward(images);
      for (int64_t i = 0; i < logits.dim(0); ++i) {
        const int32_t p = static_cast<int32_t>(nn::ArgMaxRow(logits, i));
        r.simulated_predictions.push_back(p);
        correct += p == labels[i];
      }
    }
    r.test_accuracy = test.size() ? static_cast<double>(correct) / test.size() : 0.0;
  }
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(model));
  ASSIGN_OR_RETURN(std::vector<int> node_of, QuantPointOfTensor(model, net));
  QuantizedModel m = net.model;
  std::vector<std::string> notes;
  auto set_qparams = [&](int t, const Int8Grid& g) {
    backends::Tensor* tt = m.mutable_tensors(t);
    tt->set_dtype(backends::INT8);
    tt->clear_scale();
    tt->clear_zero_point();
    tt->add_scale(g.scale);
    tt->add_zero_point(g.zero_point);
  };

  // The model input: QAT's input quantizer (integer_exact), else (QAT computed on the float
  // images) an 8-bit grid over the calibration images' range.
  const int in_t = backends::InputTensor(m);
  if (Quantizer* iq = model.input_transform() ? QuantizerOf(model.input_transform(), nullptr) : nullptr) {
    absl::StatusOr<QParams> grid = iq->IntegerGrid();
    if (!grid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("the model input's quantizer: ", grid.status().message()));
    }
    ASSIGN_OR_RETURN(Int8Grid g, ToInt8(*grid, "the model input"));
    set_qparams(in_t, g);
    notes.push_back(absl::StrCat("input: QAT's input quantizer ", iq->Describe(), ": ", GridStr(g)));
  } else {
    const std::vector<float> calib = CalibrationImages(ctx.dataset->train(), input_images_, ctx.seed);
    int64_t per_image = 1;
    for (int64_t d : net.nn_input_shape) per_image *= d;
    float lo = 0.0f, hi = 0.0f;
    for (float v : calib) {
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
    QuantSpec spec;
    spec.bits = 8;
    spec.is_signed = true;
    spec.symmetric = false;
    spec.quant_min = -128;
    spec.quant_max = 127;
    float scale = 0;
    int32_t zp = 0;
    RETURN_IF_ERROR(TorchObserverQParams(spec, lo, hi, &scale, &zp));
    ASSIGN_OR_RETURN(Int8Grid g, ToInt8(QParams::PerTensor(scale, zp, -128, 127), "the model input"));
    set_qparams(in_t, g);
    const double exact_zp = -128.0 - static_cast<double>(lo) / scale;
    notes.push_back(absl::StrFormat(
        "input: not quantized in QAT; 8-bit min/max grid of %lld training images [%.6g, %.6g]: %s (the exact zero "
        "point would be %.4f)",
        static_cast<long long>(calib.size() / per_image), lo,
        hi, GridStr(g), exact_zp));
  }

  // Activations: each op's output takes its quant point's grid.
  for (int i = 0; i < m.ops_size(); ++i) {
    Op* op = m.mutable_ops(i);
    const int out = op->outputs(0);
    const backends::Tensor& x = m.tensors(op->inputs(0));
    Int8Grid g;
    const int j = node_of[out];
    if (OwnOutputQParams(*op) && j >= 0 && model.layer(j).output_transform() != nullptr) {
      Quantizer* q = QuantizerOf(model.layer(j).output_transform(), nullptr);
      if (q == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", model.layer(j).name(), "' output: its hook is not a fake quantizer"));
      }
      const std::string what = absl::StrCat("layer '", model.layer(j).name(), "' activations (", q->Describe(), ")");
      absl::StatusOr<QParams> grid = q->IntegerGrid();
      if (!grid.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": cannot become integer: ", grid.status().message()));
      }
      ASSIGN_OR_RETURN(g, ToInt8(*grid, what));
      notes.push_back(absl::StrCat(op->name(), " output (", model.layer(j).name(), "): ", q->Describe(), ": ",
                                   GridStr(g)));
    } else if (OwnOutputQParams(*op) && !IsAveragePool(*op)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "op '", op->name(), "' (", backends::OpKind(*op), "): its output has no fake quantizer in the QAT model",
          j >= 0 ? absl::StrCat(" (layer '", model.layer(j).name(), "' has none: activations: none?)") : "",
          "; the integer model quantizes every tensor"));
    } else {
      // Max pool, flatten, sigmoid/tanh without a hook, and average pools: the input's grid.
      g.scale = backends::TensorScale(x);
      g.zero_point = backends::TensorZeroPoint(x);
      g.lo = -128;
      g.hi = 127;
      if (IsAveragePool(*op)) {
        notes.push_back(absl::StrCat(op->name(), " (", backends::OpKind(*op),
                                     "): float in QAT; the integer model rounds the average to its input's grid"));
      }
    }
    set_qparams(out, g);
    SetOutputClamp(op, g.scale, g.zero_point, g.lo, g.hi);
  }

  // Weights: the quantizer once more on the BN-folded weight; codes off its integer grid.
  int64_t weight_values = 0;
  for (const WeightedLayer& w : net.weighted) {
    int node = -1;
    for (int j = 0; j < model.num_layers(); ++j) {
      if (model.layer(j).name() == w.name) node = j;
    }
    nn::Layer& layer = model.layer(node);
    nn::BatchNorm* folded_bn = nullptr;
    Quantizer* q = layer.weight_transform() ? QuantizerOf(layer.weight_transform(), &folded_bn) : nullptr;
    if (q == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("layer '", w.name, "': its weights have no fake quantizer in the "
                                                                        "QAT model (weights: none?)"));
    }
    // Did the conversion fold a BatchNorm that QAT did not fold into the quantized weight?
    bool converter_folded = false;
    for (const nn::FusionGroup& g : nn::FindFusionGroups(model)) {
      if (g.anchor == node && g.batch_norm >= 0) converter_folded = true;
    }
    if (converter_folded && folded_bn == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", w.name, "': QAT quantized its weight before the BatchNorm that follows (train.fold_bn: false); "
                             "the folded weight q(W) * gamma / sigma is not on the trained grid"));
    }
    Tensor wq;
    const bool observer = q->observer_enabled();
    q->set_observer_enabled(false);
    absl::Status fs = q->Forward(w.torch_weight, &wq);
    q->set_observer_enabled(observer);
    RETURN_IF_ERROR(fs);
    const std::string what = absl::StrCat("layer '", w.name, "' weights (", q->Describe(), ")");
    absl::StatusOr<QParams> grid_or = q->IntegerGrid();
    if (!grid_or.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": cannot become integer: ", grid_or.status().message()));
    }
    const QParams grid = *grid_or;
    const int64_t O = static_cast<int64_t>(w.bias.size());
    if (grid.size() != 1 && grid.size() != O) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": ", grid.size(), " scales; expected 1 or ", O, " (per output channel)"));
    }
    const int64_t per_channel = w.torch_weight.numel() / O;
    std::vector<int32_t> codes(w.torch_weight.numel());
    double worst = 0;
    int64_t worst_at = 0;
    for (int64_t k = 0; k < w.torch_weight.numel(); ++k) {
      const int64_t c = grid.size() == 1 ? 0 : k / per_channel;
      const double s = grid.scale[c];
      const double v = static_cast<double>(wq[k]) / s + grid.zero_point[c];
      const double code = std::nearbyint(v);
      if (std::fabs(v - code) > worst) worst = std::fabs(v - code), worst_at = k;
      codes[k] = static_cast<int32_t>(std::min<double>(std::max<double>(code, grid.quant_min), grid.quant_max));
    }
    if (worst > 1e-3) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": the fake-quantized weight ", wq[worst_at], " at index ",
                                                     worst_at, " lies ", worst, " of a step off the quantizer's integer "
                                                     "grid; it cannot be stored exactly"));
    }
    const bool is_unsigned = grid.quant_min >= 0 && grid.quant_max > 127;
    if (!is_unsigned && (grid.quant_min < -128 || grid.quant_max > 127)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": codes [", grid.quant_min, ", ", grid.quant_max, "] do not fit int8 or uint8"));
    }
    int bits = 2;
    while (bits < 8 && (is_unsigned ? grid.quant_max > (1 << bits) - 1
                                    : grid.quant_min < -(1 << (bits - 1)) || grid.quant_max > (1 << (bits - 1)) - 1)) {
      ++bits;
    }
    const backends::DType wdtype = is_unsigned ? backends::UINT8 : backends::INT8;
    weight_values += WriteWeightsAndBias(w, codes, grid, wdtype, bits, &m);
    notes.push_back(absl::StrCat(w.name, " weights: ", q->Describe(), folded_bn ? absl::StrCat(", ", folded_bn->name(),
                                                                                             " folded") : "",
                                 ": ", grid.size() == 1 ? "per-tensor" : absl::StrCat(grid.size(), " channels"),
                                 " codes [", grid.quant_min, ", ", grid.quant_max, "] in ", bits, "-bit ",
                                 backends::DTypeName(wdtype), ", scale ", absl::StrFormat("%.6g", grid.scale[0]),
                                 grid.size() > 1 ? ".." : ""));
  }
  RETURN_IF_ERROR(backends::ComputeRequantization(&m));
  RETURN_IF_ERROR(backends::ValidateQuantizedModel(m));
  r.model = std::move(m);
  r.has_integer_model = true;
  r.model_bytes = backends::IntegerModelBytes(r.model);
  ASSIGN_OR_RETURN(r.float_test_accuracy,
                   FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
  r.float_model = std::move(net.model);
  PassLog log = net.log;
  log.push_back(absl::StrCat("from_qat: ", net.weighted.size(), " weight tensors (", weight_values,
                             " values) read off their trained grids, every activation from its trained quantizer"));
  for (const std::string& line : log) {
    r.notes.push_back(line);
    if (ctx.log != nullptr) std::fprintf(ctx.log, "%s: ptq pass %s\n", ctx.name.c_str(), line.c_str());
  }
  for (std::string& n : notes) r.notes.push_back(std::move(n));
  return r;
}

QUANTLAB_REGISTER(PtqMethod, "from_qat", FromQatPtq::Create,
                  "the QAT-trained quantizers of this run (frozen ranges, learned steps/clips, folded BN) converted "
                  "to an integer model exactly, no re-observation");

}  // namespace quant::ptq
