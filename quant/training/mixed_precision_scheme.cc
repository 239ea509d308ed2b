#include "quant/training/mixed_precision_scheme.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

// fp16: half the smallest subnormal 2^-24 rounds to even (0); bf16 likewise 2^-133.
constexpr float kFp16Underflow = 0x1p-25f;
constexpr float kBf16Underflow = 0x1p-134f;

absl::StatusOr<std::unique_ptr<NumberFormat>> MakeFormat(const std::string& name) {
  ParamReader defaults(YAML::Node(YAML::NodeType::Undefined), "<mixed_precision>", "format");
  return Registry<NumberFormat>::Get().Create(name, defaults);
}

// Shared by every hook of one run.
struct State {
  std::unique_ptr<NumberFormat> format;
  float scale = 1.0f;
  float inv_scale = 1.0f;
  UnderflowCounts counts;
};

// Rounds values through the format both ways: forward outputs and backward
// gradients; counts the gradients for the underflow report.
class CastHook : public nn::TensorTransform {
 public:
  explicit CastHook(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::string Describe() const override {
    return absl::StrCat("cast to ", state_->format->properties().name);
  }
  void Forward(const Tensor& in, Tensor* out, bool training) override {
    nn::EnsureShape(out, in.shape());
    state_->format->RoundSpan(in.values(), out->values());
  }
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override {
    nn::EnsureShape(grad_in, grad_out.shape());
    state_->counts.Add(grad_out.data(), grad_out.numel(), state_->scale, state_->inv_scale);
    state_->format->RoundSpan(grad_out.values(), grad_in->values());
  }

 private:
  std::shared_ptr<State> state_;
};

}  // namespace

void UnderflowCounts::Add(const float* g, int64_t n, float scale, float inv_scale) {
  int64_t nz = 0, f16 = 0, f16s = 0, b16 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float scaled = std::fabs(g[i]);
    if (scaled == 0.0f || !std::isfinite(scaled)) continue;
    const float v = scaled * inv_scale;  // the true gradient
    ++nz;
    f16s += scaled <= kFp16Underflow;
    f16 += v <= kFp16Underflow;
    b16 += v <= kBf16Underflow;
  }
  nonzero += nz;
  fp16_unscaled += f16;
  fp16_scaled += f16s;
  bf16 += b16;
}

float UnderflowThreshold(NumberFormat& format) {
  const float t = static_cast<float>(format.properties().smallest_subnormal / 2);
  if (format.Round(t) == 0.0f &&
      format.Round(std::nextafter(t, std::numeric_limits<float>::infinity())) != 0.0f) {
    return t;
  }
  return -1.0f;  // not the nearest-even rule: callers check
}

MixedPrecisionScheme::MixedPrecisionScheme(std::string precision, TrainSettings settings,
                                           PretrainPhase pretrain, LossScaler::Options scaling)
    : precision_(std::move(precision)),
      settings_(std::move(settings)),
      pretrain_(std::move(pretrain)),
      scaling_(scaling) {}

absl::StatusOr<std::unique_ptr<TrainingScheme>> MixedPrecisionScheme::Create(ParamReader& p) {
  absl::StatusOr<TrainSettings> settings = TrainSettings::Read(p);
  absl::StatusOr<PretrainPhase> pretrain = PretrainPhase::Read(p);
  const std::string precision = p.Choice(
      "precision", "bf16", {"bf16", "fp16"},
      "the reduced precision of weights, activations and gradients (a format plugin)");
  ParamReader& ls = p.Map("loss_scale",
                          "{mode: dynamic|static|none, init_scale, growth_factor, backoff_factor, "
                          "growth_interval, max_consecutive_skips, min_scale}; default dynamic "
                          "for fp16, none for bf16");
  const LossScaler::Options scaling =
      LossScaler::Read(ls, precision == "fp16" ? LossScaler::Mode::kDynamic : LossScaler::Mode::kNone);
  if (!settings.ok()) return settings.status();
  if (!pretrain.ok()) return pretrain.status();
  RETURN_IF_ERROR(p.status());
  if (!p.describing()) {
    auto f = MakeFormat(precision);
    if (!f.ok()) {
      p.Fail("precision", absl::StrCat("format '", precision, "' is not linked into this binary: ",
                                       f.status().message()));
      return p.status();
    }
  }
  return std::unique_ptr<TrainingScheme>(new MixedPrecisionScheme(
      precision, std::move(settings).value(), std::move(pretrain).value(), scaling));
}

std::string MixedPrecisionScheme::Describe() const {
  return absl::StrCat(
      "mixed_precision ", precision_, " (float32 master weights, loss scaling ",
      LossScaler::ModeName(scaling_.mode),
      scaling_.mode == LossScaler::Mode::kNone ? ""
                                               : absl::StrCat(" from ", scaling_.init_scale),
      scaling_.mode == LossScaler::Mode::kDynamic
          ? absl::StrCat(", growth x", scaling_.growth_factor, " every ", scaling_.growth_interval,
                         ", backoff x", scaling_.backoff_factor)
          : "",
      "): ", settings_.Describe(),
      pretrain_.enabled ? absl::StrCat(", after fp32 pretraining (", pretrain_.settings.Describe(), ")")
                        : "");
}

absl::StatusOr<TrainResult> MixedPrecisionScheme::Train(TrainContext& ctx) {
  if (ctx.model == nullptr || !ctx.model->built()) {
    return absl::FailedPreconditionError("training needs a built model");
  }
  TrainResult result;
  RETURN_IF_ERROR(pretrain_.Run(ctx, settings_, &result));

  auto state = std::make_shared<State>();
  ASSIGN_OR_RETURN(state->format, MakeFormat(precision_));
  if (UnderflowThreshold(*state->format) != (precision_ == "fp16" ? kFp16Underflow : kBf16Underflow)) {
    return absl::InternalError(absl::StrCat("format ", precision_,
                                            ": its underflow threshold is not the expected one"));
  }
  nn::Model& model = *ctx.model;
  std::vector<nn::Parameter*> params = model.Parameters();
  for (int i = 0; i < model.num_layers(); ++i) {
    nn::Layer& l = model.layer(i);
    if (l.weight_transform() != nullptr || l.output_transform() != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "mixed_precision: layer ", l.name(), " already has a hook (combine with another scheme "
                                               "is not supported)"));
    }
    if (l.has_weight()) l.set_weight_transform(std::make_shared<CastHook>(state));
    l.set_output_transform(std::make_shared<CastHook>(state));
  }
  LossScaler scaler(scaling_);
  state->scale = scaler.scale();
  state->inv_scale = scaler.inv_scale();

  TrainHooks hooks;
  hooks.before_backward = [&](Tensor* dlogits) {
    if (state->scale != 1.0f) {
      float* d = dlogits->data();
      for (int64_t i = 0; i < dlogits->numel(); ++i) d[i] *= state->scale;
    }
    return absl::OkStatus();
  };
  hooks.after_backward = [&](int64_t step, bool* apply) -> absl::Status {
    bool found_inf = false;
    for (nn::Parameter* p : params) {
      const float* g = p->grad.data();
      for (int64_t i = 0; i < p->grad.numel() && !found_inf; ++i) found_inf = !std::isfinite(g[i]);
      if (found_inf) break;
    }
    const float inv = state->inv_scale;
    ASSIGN_OR_RETURN(*apply, scaler.Update(step, found_inf));
    if (*apply && inv != 1.0f) {
      for (nn::Parameter* p : params) {
        float* g = p->grad.data();
        for (int64_t i = 0; i < p->grad.numel(); ++i) g[i] *= inv;
      }
    }
    state->scale = scaler.scale();
    state->inv_scale = scaler.inv_scale();
    return absl::OkStatus();
  };
  const std::string name = absl::StrCat("mixed_precision ", precision_);
  absl::StatusOr<TrainResult> r = RunTrainingLoop(ctx, settings_, name, &hooks);
  if (!r.ok()) {
    if (scaling_.mode == LossScaler::Mode::kNone ||
        r.status().message().find("loss-scale history") != std::string::npos) {
      return r.status();
    }
    return absl::Status(r.status().code(),
                        absl::StrCat(r.status().message(), "; loss-scale history: ", scaler.History()));
  }
  AppendEpochs(*r, &result);
  const UnderflowCounts& c = state->counts;
  const double nz = std::max<int64_t>(c.nonzero, 1);
  std::map<std::string, double> metrics = {
      {"grad_values_nonzero", static_cast<double>(c.nonzero)},
      {"underflow_fp16_unscaled", c.fp16_unscaled / nz},
      {"underflow_bf16", c.bf16 / nz},
      {"skipped_steps", static_cast<double>(scaler.skipped_steps())},
  };
  if (scaling_.mode != LossScaler::Mode::kNone) {
    metrics["underflow_fp16_scaled"] = c.fp16_scaled / nz;
    metrics["loss_scale_final"] = scaler.scale();
    metrics["loss_scale_min"] = scaler.min_seen();
    metrics["loss_scale_max"] = scaler.max_seen();
  }
  if (pretrain_.enabled && !result.epochs.empty()) {
    const size_t pre = result.epochs.size() - r->epochs.size();
    if (pre > 0) metrics["pretrain_test_accuracy"] = result.epochs[pre - 1].test_accuracy;
  }
  RETURN_IF_ERROR(WriteTrainMetrics(ctx, metrics));
  result.metrics = std::move(metrics);
  if (ctx.progress != TrainContext::Progress::kQuiet && scaling_.mode != LossScaler::Mode::kNone) {
    std::fprintf(ctx.log, "%sloss-scale history: %s\n",
                 ctx.name.empty() ? "" : absl::StrCat("[", ctx.name, "] ").c_str(),
                 scaler.History().c_str());
  }
  return result;
}

QUANTLAB_REGISTER(TrainingScheme, "mixed_precision", MixedPrecisionScheme::Create,
                  "float32 master weights, bf16/fp16 forward and backward values, dynamic loss "
                  "scaling for fp16; reports gradient underflow");

}  // namespace quant
