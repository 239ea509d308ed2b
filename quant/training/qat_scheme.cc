#include "quant/training/qat_scheme.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/fusion.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"
#include "quant/quantizers/tensor_role.h"

namespace quant {
namespace {

// A name no override matches: config.For(kNoLayer) is the base specs.
constexpr char kNoLayer[] = "\x01";

bool IsBatchNorm(const nn::Layer& l) { return l.type() == "batchnorm1d" || l.type() == "batchnorm2d"; }
// Ops whose output is a new tensor in the integer model, with qparams of its
// own. Pooling, flatten and dropout pass their input's qparams on.
bool IsCompute(const nn::Layer& l) {
  static const auto* kinds = new std::set<std::string>{
      "relu", "relu6", "hardtanh", "add", "concat", "hardswish", "sigmoid", "tanh"};
  return l.has_weight() || IsBatchNorm(l) || kinds->count(l.type()) > 0;
}

nn::Parameter* WeightOf(nn::Layer& l) {
  for (nn::Parameter* p : l.parameters()) {
    if (p->name == "weight") return p;
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<QuantizerTransform>> MakeHook(std::unique_ptr<Quantizer> q,
                                                             const std::string& layer,
                                                             TensorRole role) {
  if (auto* aware = dynamic_cast<RoleAware*>(q.get())) {
    absl::Status s = aware->SetRole(role);
    if (!s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("quant.", TensorRoleName(role), " (layer ",
                                                     layer, "): ", std::string(s.message())));
    }
  }
  return std::make_shared<QuantizerTransform>(std::move(q),
                                              absl::StrCat(layer, " ", TensorRoleName(role)));
}

// Ops with a known output range (sigmoid, tanh) get PyTorch 1.13's fixed
// qparams (FixedQParamsFakeQuantize: quint8, 1/256 and 0 for sigmoid, 2/256
// and 128 for tanh) when their activation spec is a plain 8-bit affine one, as
// PyTorch's default QAT qconfig does. A learned quantizer (lsq, pact, ...),
// other bits, or an observer an override names for the layer is kept as written.
absl::StatusOr<std::unique_ptr<Quantizer>> FixedOutputQuantizer(const nn::Layer& l, const QuantConfig& config) {
  float scale = 0;
  int32_t zero_point = 0;
  bool is_signed = false;
  if (!l.fixed_output_qparams(&scale, &zero_point, &is_signed)) return nullptr;
  const YAML::Node spec = config.For(l.name()).activations;
  if (!spec.IsDefined() || !spec.IsMap()) return nullptr;  // float output
  // Only a plain affine spec takes the fixed qparams: a named quantizer other
  // than affine, a chosen observer or other bits than 8 is the user's choice.
  // (QuantConfig::Read has already built and checked every spec.)
  const YAML::Node quantizer = spec["quantizer"];
  if (quantizer && !(quantizer.IsScalar() && quantizer.Scalar() == "affine")) return nullptr;
  const YAML::Node bits = spec["bits"];
  if (bits && !(bits.IsScalar() && bits.Scalar() == "8")) return nullptr;
  // The base spec's observer is the default for every layer; an override that
  // names another one for this layer is a choice.
  const YAML::Node base = config.For(kNoLayer).activations;
  auto observer = [](const YAML::Node& s) {
    return s.IsDefined() && s.IsMap() && s["observer"] && s["observer"].IsScalar() ? s["observer"].Scalar()
                                                                                   : std::string();
  };
  if (observer(spec) != observer(base)) return nullptr;
  const std::string yaml = absl::StrCat("{quantizer: affine, bits: 8, signed: ", is_signed ? "true" : "false",
                                        ", symmetric: false, observer: fixed, scale: ", absl::StrFormat("%.9g", scale),
                                        ", zero_point: ", zero_point, "}");
  return BuildQuantizerFromYaml(yaml, absl::StrCat("fixed output qparams of ", l.name(), " (", l.type(), ")"));
}

std::string Prefix(const TrainContext& c) { return c.name.empty() ? "" : absl::StrCat("[", c.name, "] "); }

}  // namespace

void FakeQuantHooks::FreezeObservers(bool frozen) {
  for (Hook& h : hooks) h.quantizer->set_observer_frozen(frozen);
}

absl::Status FakeQuantHooks::status() const {
  for (const Hook& h : hooks) {
    if (!h.quantizer->status().ok()) return h.quantizer->status();
  }
  for (const auto& r : requant) {
    if (!r->status().ok()) return r->status();
  }
  for (const auto& a : average_pools) {
    if (!a->status().ok()) return a->status();
  }
  return absl::OkStatus();
}

namespace {

// Inside a fusion group (conv -> bn -> relu, add -> relu) only the group's
// output exists in the integer model.
bool IsQuantPoint(const nn::Model& model, const std::vector<nn::FusionGroup>& groups, int i) {
  if (!IsCompute(model.layer(i))) return false;
  for (const nn::FusionGroup& g : groups) {
    if ((i == g.anchor || i == g.batch_norm || i == g.activation) && i != g.last()) return false;
  }
  return true;
}

}  // namespace

bool IsActivationQuantPoint(const nn::Model& model, int i) {
  return IsQuantPoint(model, nn::FindFusionGroups(model), i);
}

void RemoveFakeQuant(nn::Model& model) {
  model.set_input_transform(nullptr);
  for (int i = 0; i < model.num_layers(); ++i) {
    model.layer(i).set_weight_transform(nullptr);
    model.layer(i).set_output_transform(nullptr);
  }
}

// An override that sets weights specs but matches only layers without a
// weight (e.g. `match: "relu1", weights: {quantizer: lsq}`) is a mistake: say so.
absl::Status CheckWeightOverrides(nn::Model& model, const QuantConfig& config) {
  // A name no override matches resolves to the base specs.
  const QuantConfig::Resolved base = config.For(kNoLayer);
  if (!base.overrides_applied.empty()) return absl::OkStatus();
  const std::string base_weights = base.weights.IsDefined() ? YAML::Dump(base.weights) : "";
  std::vector<std::string> with_weights;
  for (int i = 0; i < model.num_layers(); ++i) {
    if (model.layer(i).has_weight()) with_weights.push_back(model.layer(i).name());
  }
  for (int o = 0; o < config.num_overrides(); ++o) {
    bool matched_weighted = false;
    std::string changed_weightless;
    for (int i = 0; i < model.num_layers(); ++i) {
      const QuantConfig::Resolved r = config.For(model.layer(i).name());
      if (std::find(r.overrides_applied.begin(), r.overrides_applied.end(), o) ==
          r.overrides_applied.end()) {
        continue;
      }
      if (model.layer(i).has_weight()) {
        matched_weighted = true;
      } else if ((r.weights.IsDefined() ? YAML::Dump(r.weights) : "") != base_weights) {
        changed_weightless = model.layer(i).name();
      }
    }
    if (!matched_weighted && !changed_weightless.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "quant.overrides[", o, "] sets weights for layer ", changed_weightless,
          ", which has no weights; the layers with weights are: ", absl::StrJoin(with_weights, ", ")));
    }
  }
  return absl::OkStatus();
}

namespace {

// The quantizer inside a QAT hook (plain, BN-folding or integer-exact), or null.
Quantizer* HookQuantizer(nn::TensorTransform* t) {
  if (auto* q = dynamic_cast<QuantizerTransform*>(t)) return &q->quantizer();
  if (auto* f = dynamic_cast<BnFoldTransform*>(t)) return &f->quantizer().quantizer();
  if (auto* r = dynamic_cast<IntegerRequantTransform*>(t)) return &r->output_quantizer().quantizer();
  return nullptr;
}

bool PassesGridOn(const std::string& type) {
  return type == "maxpool2d" || type == "avgpool2d" || type == "global_avg_pool" || type == "flatten" ||
         type == "dropout";
}

// integer_exact: the input quantizer, then each conv/linear group's output stage and each
// average pool replaced by the integer model's arithmetic (integer_exact.h).
absl::Status MakeIntegerExact(nn::Model& model, const QuantConfig& config, bool fold_bn,
                              const std::vector<nn::FusionGroup>& groups, FakeQuantHooks* out) {
  // 1. The model input: an 8-bit min/max grid, or the activation spec an override gives "input".
  std::unique_ptr<Quantizer> iq;
  if (!config.For("input").overrides_applied.empty()) {
    ASSIGN_OR_RETURN(iq, config.ActivationQuantizer("input"));
  }
  if (iq == nullptr) {
    ASSIGN_OR_RETURN(iq, BuildQuantizerFromYaml("{quantizer: affine, bits: 8, signed: true, observer: minmax}",
                                                "the model input's quantizer (integer_exact)"));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<QuantizerTransform> input, MakeHook(std::move(iq), "input", TensorRole::kActivations));
  model.set_input_transform(input);
  out->plan.push_back(absl::StrCat("input: ", input->Describe()));
  out->hooks.push_back(FakeQuantHooks::Hook{-1, "input", false, input, nullptr});
  // The grid of every value: its quant point's quantizer, passed on by pools, flatten, dropout.
  std::vector<Quantizer*> grid(model.num_values(), nullptr);
  grid[nn::Model::kInputValue] = &input->quantizer();
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& l = model.layer(i);
    if (Quantizer* q = l.output_transform() ? HookQuantizer(l.output_transform()) : nullptr) {
      grid[nn::Model::OutputOf(i)] = q;
    } else if (PassesGridOn(l.type())) {
      grid[nn::Model::OutputOf(i)] = grid[model.inputs_of(i)[0]];
    }
  }
  // 2. conv/linear output stages.
  for (const nn::FusionGroup& g : groups) {
    nn::Layer& anchor = model.layer(g.anchor);
    if (!anchor.has_weight()) continue;
    nn::Layer& last = model.layer(g.last());
    auto* oq = dynamic_cast<QuantizerTransform*>(last.output_transform());
    Quantizer* wq = anchor.weight_transform() ? HookQuantizer(anchor.weight_transform()) : nullptr;
    if (oq == nullptr || wq == nullptr) {
      out->plan.push_back(absl::StrCat(anchor.name(), ": float weights or output, no integer-exact output stage"));
      continue;
    }
    if (g.batch_norm >= 0 && !fold_bn) {
      return absl::InvalidArgumentError(absl::StrCat("train.integer_exact: ", anchor.name(),
                                                     " has a BatchNorm that fold_bn: false leaves unfolded; the "
                                                     "integer model folds it (set fold_bn: true)"));
    }
    IntegerRequantTransform::Source src;
    src.layer = anchor.name();
    src.input = grid[model.inputs_of(g.anchor)[0]];
    if (src.input == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "train.integer_exact: the input of ", anchor.name(),
          " is on no quantization grid (it comes from a float op); the integer model needs every tensor quantized"));
    }
    src.weights = wq;
    for (nn::Parameter* p : anchor.parameters()) {
      if (p->name == "bias") src.bias = p;
    }
    if (g.batch_norm >= 0) src.batch_norm = static_cast<nn::BatchNorm*>(&model.layer(g.batch_norm));
    if (g.activation >= 0) {
      const std::string& t = model.layer(g.activation).type();
      src.clamp = t == "relu" ? IntegerRequantTransform::Clamp::kRelu
                  : t == "relu6" ? IntegerRequantTransform::Clamp::kRelu6
                                 : IntegerRequantTransform::Clamp::kNone;
    }
    std::shared_ptr<QuantizerTransform> plain;
    for (FakeQuantHooks::Hook& h : out->hooks) {
      if (!h.weights && h.layer == g.last()) plain = h.quantizer;
    }
    auto r = std::make_shared<IntegerRequantTransform>(plain, src);
    last.set_output_transform(r);
    out->requant.push_back(r);
    out->plan.push_back(absl::StrCat(last.name(), " output: ", r->Describe()));
  }
  // 3. average pools (QAT leaves them unquantized; the integer model rounds them to the input's grid).
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& l = model.layer(i);
    if ((l.type() != "avgpool2d" && l.type() != "global_avg_pool") || l.output_transform() != nullptr) continue;
    Quantizer* in = grid[model.inputs_of(i)[0]];
    if (in == nullptr) continue;
    int64_t window = 0;
    if (l.type() == "avgpool2d") {
      const int64_t k = static_cast<const nn::Pool2d&>(l).kernel();
      window = k * k;
    } else {
      const nn::Shape& x = model.value_shape(model.inputs_of(i)[0]);
      window = x.size() == 3 ? x[1] * x[2] : 1;
    }
    auto a = std::make_shared<AveragePoolTransform>(l.name(), in, window);
    l.set_output_transform(a);
    out->average_pools.push_back(a);
    out->plan.push_back(absl::StrCat(l.name(), " output: ", a->Describe()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<FakeQuantHooks> InsertFakeQuant(nn::Model& model, const QuantConfig& config,
                                               bool fold_bn, bool integer_exact) {
  RETURN_IF_ERROR(CheckWeightOverrides(model, config));
  FakeQuantHooks out;
  const std::vector<nn::FusionGroup> groups = nn::FindFusionGroups(model);  // once, for every node
  std::vector<int> bn_of(model.num_layers(), -1);  // the BatchNorm fused after each conv/linear
  for (const nn::FusionGroup& g : groups) bn_of[g.anchor] = g.batch_norm;
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& l = model.layer(i);
    if (l.has_weight()) {
      ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, config.WeightQuantizer(l.name()));
      if (q != nullptr) {
        ASSIGN_OR_RETURN(std::shared_ptr<QuantizerTransform> t,
                         MakeHook(std::move(q), l.name(), TensorRole::kWeights));
        FakeQuantHooks::Hook h{i, l.name(), true, t, nullptr};
        std::shared_ptr<nn::TensorTransform> hook = t;
        if (fold_bn && bn_of[i] >= 0) {
          h.folded_bn = static_cast<nn::BatchNorm*>(&model.layer(bn_of[i]));
          hook = std::make_shared<BnFoldTransform>(h.folded_bn, t);
        }
        nn::Parameter* w = WeightOf(l);
        if (w == nullptr) {
          return absl::InternalError(absl::StrCat("layer ", l.name(), " has no parameter 'weight'"));
        }
        // Once on the weight: observers see it, step sizes initialise, shapes are checked.
        Tensor scratch(w->value.shape());
        hook->Forward(w->value, &scratch, /*training=*/true);
        RETURN_IF_ERROR(t->status());
        l.set_weight_transform(hook);
        out.plan.push_back(absl::StrCat(l.name(), " weights: ",
                                        h.folded_bn ? absl::StrCat("fold ", h.folded_bn->name(), ", ")
                                                    : "",
                                        t->Describe()));
        out.hooks.push_back(std::move(h));
      }
    }
    if (IsQuantPoint(model, groups, i)) {
      ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, FixedOutputQuantizer(l, config));
      if (q == nullptr) {
        ASSIGN_OR_RETURN(q, config.ActivationQuantizer(l.name()));
      }
      if (q != nullptr) {
        ASSIGN_OR_RETURN(std::shared_ptr<QuantizerTransform> t,
                         MakeHook(std::move(q), l.name(), TensorRole::kActivations));
        l.set_output_transform(t);
        out.plan.push_back(absl::StrCat(l.name(), " output: ", t->Describe()));
        out.hooks.push_back(FakeQuantHooks::Hook{i, l.name(), false, t, nullptr});
      }
    }
  }
  if (integer_exact) RETURN_IF_ERROR(MakeIntegerExact(model, config, fold_bn, groups, &out));
  return out;
}

absl::StatusOr<std::unique_ptr<TrainingScheme>> QatScheme::Create(ParamReader& p) {
  absl::StatusOr<TrainSettings> settings = TrainSettings::Read(p);
  Options o;
  o.freeze_observers_after_epoch = static_cast<int>(p.IntInRange(
      "freeze_observers_after_epoch", -1, -1, 100000,
      "observers stop updating qparams after this many QAT epochs; -1: never"));
  o.freeze_observers_after_step = p.IntInRange(
      "freeze_observers_after_step", -1, -1, int64_t{1} << 40,
      "observers stop updating after this many QAT optimizer steps; -1: never");
  o.freeze_bn_after_epoch = static_cast<int>(p.IntInRange(
      "freeze_bn_after_epoch", -1, -1, 100000,
      "BatchNorm running statistics frozen (and used) after this many QAT epochs; -1: never"));
  o.fold_bn = p.Bool("fold_bn", true, "fold BatchNorm into the preceding conv/linear weight before "
                     "its fake quantization (Jacob et al. 2018)");
  o.integer_exact = p.Bool("integer_exact", false,
                           "simulate the integer model's arithmetic: quantized input, int32 bias, the reference's "
                           "fixed-point requantization and average pools (default: PyTorch's float fake quantization)");
  std::optional<TrainSettings> pretrain;
  if (p.Has("pretrain") || p.describing()) {
    ParamReader& pre = p.Map("pretrain", "float training stage before QAT: {epochs, optimizer, schedule, ...}");
    absl::StatusOr<TrainSettings> s = TrainSettings::Read(pre);
    if (!s.ok()) return s.status();
    if (!p.describing()) pretrain = std::move(s).value();
  }
  if (!settings.ok()) return settings.status();
  RETURN_IF_ERROR(p.status());
  if (pretrain && !settings->init_from.empty()) {
    p.Fail("init_from", "give either init_from (a trained float checkpoint) or pretrain (train one "
                        "first), not both; a checkpoint for the float stage goes in pretrain.init_from");
    return p.status();
  }
  if (pretrain) pretrain->save_checkpoint = false;
  return std::unique_ptr<TrainingScheme>(
      new QatScheme(std::move(settings).value(), std::move(pretrain), o));
}

std::string QatScheme::Describe() const {
  std::string s = "qat: ";
  if (pretrain_) absl::StrAppend(&s, "float pretrain (", pretrain_->Describe(), ") then ");
  absl::StrAppend(&s, settings_.Describe());
  if (o_.freeze_observers_after_epoch >= 0) {
    absl::StrAppend(&s, ", observers frozen after epoch ", o_.freeze_observers_after_epoch);
  }
  if (o_.freeze_observers_after_step >= 0) {
    absl::StrAppend(&s, ", observers frozen after step ", o_.freeze_observers_after_step);
  }
  if (o_.freeze_bn_after_epoch >= 0) {
    absl::StrAppend(&s, ", BN statistics frozen after epoch ", o_.freeze_bn_after_epoch);
  }
  if (!o_.fold_bn) absl::StrAppend(&s, ", no BN folding");
  if (o_.integer_exact) absl::StrAppend(&s, ", integer-exact simulation");
  return s;
}

absl::StatusOr<TrainResult> QatScheme::Train(TrainContext& ctx) {
  if (ctx.quant == nullptr) {
    return absl::FailedPreconditionError("scheme qat needs the `quant:` section");
  }
  if (ctx.model == nullptr || !ctx.model->built()) {
    return absl::FailedPreconditionError("training needs a loaded dataset and a built model");
  }
  nn::Model& model = *ctx.model;
  const std::string prefix = Prefix(ctx);
  TrainResult result;
  if (pretrain_) {
    ASSIGN_OR_RETURN(TrainResult pre, RunTrainingLoop(ctx, *pretrain_, "fp32"));
    result.epochs = pre.epochs;
  }

  // init_from: a float checkpoint (loaded before the hooks exist) or a QAT
  // one (with the quantizers' learned values: loaded after).
  bool loaded = settings_.init_from.empty();
  absl::Status float_load;
  if (!loaded) {
    RemoveFakeQuant(model);
    float_load = nn::LoadCheckpoint(settings_.init_from, &model);
    loaded = float_load.ok();
    if (float_load.code() == absl::StatusCode::kNotFound) return float_load;
  }
  ASSIGN_OR_RETURN(FakeQuantHooks hooks, InsertFakeQuant(model, *ctx.quant, o_.fold_bn, o_.integer_exact));
  if (!loaded) {
    absl::Status qat_load = nn::LoadCheckpoint(settings_.init_from, &model);
    if (!qat_load.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "train.init_from: ", std::string(float_load.message()), " (as a QAT checkpoint: ",
          std::string(qat_load.message()), ")"));
    }
  }
  if (!settings_.init_from.empty()) {
    std::fprintf(ctx.log, "%sstarting from %s\n", prefix.c_str(), settings_.init_from.c_str());
  }
  if (ctx.progress != TrainContext::Progress::kQuiet) {
    for (const std::string& line : hooks.plan) std::fprintf(ctx.log, "%sqat: %s\n", prefix.c_str(), line.c_str());
  }

  std::vector<nn::BatchNorm*> bns;
  for (int i = 0; i < model.num_layers(); ++i) {
    if (IsBatchNorm(model.layer(i))) bns.push_back(static_cast<nn::BatchNorm*>(&model.layer(i)));
  }
  bool bn_frozen = false;
  bool observers_frozen = false;
  auto freeze_observers = [&](const std::string& why) {
    if (observers_frozen) return;
    observers_frozen = true;
    hooks.FreezeObservers(true);
    if (ctx.progress != TrainContext::Progress::kQuiet) {
      std::fprintf(ctx.log, "%sqat: observers frozen %s\n", prefix.c_str(), why.c_str());
    }
  };
  TrainHooks loop_hooks;
  loop_hooks.epoch_begin = [&](int epoch) -> absl::Status {
    if (o_.freeze_observers_after_epoch >= 0 && epoch >= o_.freeze_observers_after_epoch) {
      freeze_observers(absl::StrCat("from QAT epoch ", epoch + 1));
    }
    if (o_.freeze_bn_after_epoch >= 0 && epoch >= o_.freeze_bn_after_epoch && !bn_frozen) {
      bn_frozen = true;
      if (ctx.progress != TrainContext::Progress::kQuiet && !bns.empty()) {
        std::fprintf(ctx.log, "%sqat: BatchNorm statistics frozen from QAT epoch %d\n",
                     prefix.c_str(), epoch + 1);
      }
    }
    return absl::OkStatus();
  };
  loop_hooks.step_begin = [&](int64_t step) -> absl::Status {
    RETURN_IF_ERROR(hooks.status());
    if (o_.freeze_observers_after_step >= 0 && step >= o_.freeze_observers_after_step) {
      freeze_observers(absl::StrCat("from QAT step ", step + 1));
    }
    // Evaluation puts every layer back in training mode afterwards: re-apply.
    if (bn_frozen) {
      for (nn::BatchNorm* bn : bns) bn->set_training(false);
    }
    return absl::OkStatus();
  };

  const std::string init_from = settings_.init_from;
  settings_.init_from.clear();  // loaded above
  absl::StatusOr<TrainResult> qat = RunTrainingLoop(ctx, settings_, "qat", &loop_hooks);
  settings_.init_from = init_from;
  if (!qat.ok()) return qat.status();
  RETURN_IF_ERROR(hooks.status());
  const int offset = static_cast<int>(result.epochs.size());
  for (EpochRecord e : qat->epochs) {
    e.epoch += offset;
    result.epochs.push_back(e);
  }
  result.final_test_accuracy = qat->final_test_accuracy;
  result.checkpoint_path = qat->checkpoint_path;
  return result;
}

QUANTLAB_REGISTER(TrainingScheme, "qat", QatScheme::Create,
                  "quantization-aware training: fake quantizers from quant: (per-layer overrides), "
                  "STE, observer freezing, BN folding; optional float pretrain stage");

}  // namespace quant
