#include "quant/training/lowbit_scheme.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "quant/core/atomic_file.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant {

absl::StatusOr<PretrainPhase> PretrainPhase::Read(ParamReader& train) {
  PretrainPhase phase;
  phase.enabled = train.Has("pretrain");
  ParamReader& p = train.Map(
      "pretrain", "float epochs before the scheme's own: {epochs, batch_size, optimizer, schedule}");
  ASSIGN_OR_RETURN(phase.settings, TrainSettings::Read(p));
  for (const char* key : {"init_from", "save_checkpoint"}) {
    if (p.Has(key)) {
      p.Fail(key, absl::StrCat("set ", key, " in train:, not in train.pretrain"));
      return p.status();
    }
  }
  phase.settings.save_checkpoint = false;
  return phase;
}

absl::Status PretrainPhase::Run(TrainContext& context, TrainSettings& main, TrainResult* result) {
  if (!enabled) return absl::OkStatus();
  settings.init_from = main.init_from;
  main.init_from.clear();  // the pretrain phase started from it
  ASSIGN_OR_RETURN(TrainResult r, RunTrainingLoop(context, settings, "fp32 (pretrain)"));
  AppendEpochs(r, result);
  return absl::OkStatus();
}

void AppendEpochs(const TrainResult& later, TrainResult* result) {
  const int base = result->epochs.empty() ? 0 : result->epochs.back().epoch;
  for (EpochRecord e : later.epochs) {
    e.epoch += base;
    result->epochs.push_back(e);
  }
  result->final_test_accuracy = later.final_test_accuracy;
  result->checkpoint_path = later.checkpoint_path;
}

absl::Status WriteTrainMetrics(const TrainContext& context,
                               const std::map<std::string, double>& metrics) {
  const std::string prefix = context.name.empty() ? "" : absl::StrCat("[", context.name, "] ");
  if (context.progress != TrainContext::Progress::kQuiet) {
    for (const auto& [k, v] : metrics) std::fprintf(context.log, "%smetric %s = %.6g\n", prefix.c_str(), k.c_str(), v);
  }
  if (context.run_dir.empty()) return absl::OkStatus();
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [k, v] : metrics) j[k] = v;
  std::error_code ec;
  std::filesystem::create_directories(context.run_dir, ec);
  // Written like every other file of a run: whole under its final name, or not at all.
  return WriteFileAtomically(context.run_dir + "/train_metrics.json", j.dump(2) + "\n");
}

LowBitScheme::LowBitScheme(std::string name, TrainSettings settings, PretrainPhase pretrain,
                           bool keep_first_last, double clip_weights)
    : name_(std::move(name)),
      settings_(std::move(settings)),
      pretrain_(std::move(pretrain)),
      keep_first_last_(keep_first_last),
      clip_weights_(clip_weights) {}

absl::StatusOr<std::unique_ptr<TrainingScheme>> LowBitScheme::Create(ParamReader& p,
                                                                    const char* name,
                                                                    double default_clip) {
  absl::StatusOr<TrainSettings> settings = TrainSettings::Read(p);
  absl::StatusOr<PretrainPhase> pretrain = PretrainPhase::Read(p);
  const std::string first_last = p.Choice(
      "first_last", "float", {"float", "quantize"},
      "first and last layer with a weight: float (unless an override names them) or quantize");
  const double clip = p.DoubleInRange(
      "clip_weights", default_clip, 0.0, 1e6,
      "clip latent weights of quantized layers to [-c, c] after each step (0: off)");
  if (!settings.ok()) return settings.status();
  if (!pretrain.ok()) return pretrain.status();
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<TrainingScheme>(new LowBitScheme(name, std::move(settings).value(),
                                                          std::move(pretrain).value(),
                                                          first_last == "float", clip));
}

absl::StatusOr<std::unique_ptr<TrainingScheme>> LowBitScheme::CreateBinary(ParamReader& p) {
  return Create(p, "binary", 1.0);
}
absl::StatusOr<std::unique_ptr<TrainingScheme>> LowBitScheme::CreateXnor(ParamReader& p) {
  return Create(p, "xnor", 0.0);
}
absl::StatusOr<std::unique_ptr<TrainingScheme>> LowBitScheme::CreateTernary(ParamReader& p) {
  return Create(p, "ternary", 0.0);
}

std::string LowBitScheme::Describe() const {
  return absl::StrCat(name_, ": ", settings_.Describe(),
                      pretrain_.enabled ? absl::StrCat(", after fp32 pretraining (",
                                                       pretrain_.settings.Describe(), ")")
                                        : "",
                      keep_first_last_ ? ", first/last layer float" : ", all layers quantized",
                      clip_weights_ > 0 ? absl::StrCat(", latent weights clipped to +-", clip_weights_)
                                        : "");
}

absl::StatusOr<std::vector<std::string>> LowBitScheme::InstallHooks(
    nn::Model& model, const QuantConfig& quant,
    std::vector<std::shared_ptr<QuantizerTransform>>* installed) {
  std::vector<int> weighted;
  for (int i = 0; i < model.num_layers(); ++i) {
    if (model.layer(i).has_weight()) weighted.push_back(i);
  }
  std::vector<std::string> plan;
  clipped_.clear();
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& layer = model.layer(i);
    const std::string& name = layer.name();
    const bool named = !quant.For(name).overrides_applied.empty();
    const bool is_first = !weighted.empty() && i == weighted.front();
    const bool is_last = !weighted.empty() && i == weighted.back();
    const bool keep = keep_first_last_ && !named;
    if (layer.has_weight() && !(keep && (is_first || is_last))) {
      ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, quant.WeightQuantizer(name));
      if (q != nullptr) {
        if (!q->parameters().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "layer ", name, ": weights: ", q->Describe(), " has learned parameters; scheme '",
              name_, "' takes quantizers without them (use the qat scheme)"));
        }
        plan.push_back(absl::StrCat(name, " weights: ", q->Describe()));
        installed->push_back(std::make_shared<QuantizerTransform>(std::move(q), name + " weights"));
        layer.set_weight_transform(installed->back());
        if (clip_weights_ > 0) {
          for (nn::Parameter* p : layer.parameters()) {
            if (p->name == "weight") clipped_.push_back(p);
          }
        }
      }
    }
    const bool output_quantizable = layer.has_weight() ? !(keep && is_last) : named;
    if (output_quantizable) {
      ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, quant.ActivationQuantizer(name));
      if (q != nullptr) {
        if (!q->parameters().empty()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "layer ", name, ": activations: ", q->Describe(),
              " has learned parameters; scheme '", name_,
              "' takes quantizers without them (use the qat scheme)"));
        }
        plan.push_back(absl::StrCat(name, " output: ", q->Describe()));
        installed->push_back(std::make_shared<QuantizerTransform>(std::move(q), name + " output"));
        layer.set_output_transform(installed->back());
      }
    }
  }
  if (plan.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "scheme '", name_, "': the quant: section quantizes no layer of model ", model.name(),
        keep_first_last_ ? " (the first and last layers stay float: first_last: float)" : ""));
  }
  return plan;
}

absl::StatusOr<TrainResult> LowBitScheme::Train(TrainContext& ctx) {
  if (ctx.quant == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("scheme '", name_, "' needs a quant: section (weights/activations specs)"));
  }
  if (ctx.model == nullptr || !ctx.model->built()) {
    return absl::FailedPreconditionError("training needs a built model");
  }
  TrainResult result;
  RETURN_IF_ERROR(pretrain_.Run(ctx, settings_, &result));
  const double pretrain_accuracy = result.final_test_accuracy;
  std::vector<std::shared_ptr<QuantizerTransform>> installed;
  ASSIGN_OR_RETURN(std::vector<std::string> plan, InstallHooks(*ctx.model, *ctx.quant, &installed));
  // A hook cannot return its quantizer's error; the first one stops training.
  auto first_error = [&installed]() -> absl::Status {
    for (const auto& t : installed) RETURN_IF_ERROR(t->status());
    return absl::OkStatus();
  };
  const std::string prefix = ctx.name.empty() ? "" : absl::StrCat("[", ctx.name, "] ");
  if (ctx.progress != TrainContext::Progress::kQuiet) {
    for (const std::string& line : plan) {
      std::fprintf(ctx.log, "%s%s: %s\n", prefix.c_str(), name_.c_str(), line.c_str());
    }
  }
  const float c = static_cast<float>(clip_weights_);
  TrainHooks hooks;
  hooks.after_backward = [&](int64_t, bool*) { return first_error(); };
  hooks.after_step = [&](int64_t) {
    for (nn::Parameter* p : clipped_) {
      float* w = p->value.data();
      for (int64_t i = 0; i < p->value.numel(); ++i) w[i] = std::clamp(w[i], -c, c);
    }
    return first_error();
  };
  ASSIGN_OR_RETURN(TrainResult r, RunTrainingLoop(ctx, settings_, name_, &hooks));
  RETURN_IF_ERROR(first_error());  // raised during the last evaluation
  AppendEpochs(r, &result);
  std::map<std::string, double> metrics = {{"quantized_hooks", static_cast<double>(plan.size())}};
  if (pretrain_.enabled) metrics["pretrain_test_accuracy"] = pretrain_accuracy;
  RETURN_IF_ERROR(WriteTrainMetrics(ctx, metrics));
  result.metrics = std::move(metrics);
  return result;
}

QUANTLAB_REGISTER(TrainingScheme, "binary", LowBitScheme::CreateBinary,
                  "binary network (BinaryNet): the quant: section's binary quantizers, first/last "
                  "layer float, latent weights clipped to [-1, 1]");
QUANTLAB_REGISTER(TrainingScheme, "xnor", LowBitScheme::CreateXnor,
                  "XNOR-Net: the quant: section's xnor quantizers, first/last layer float");
QUANTLAB_REGISTER(TrainingScheme, "ternary", LowBitScheme::CreateTernary,
                  "ternary weight network (TWN): the quant: section's ternary quantizers, "
                  "first/last layer float");

}  // namespace quant
