#include "quant/analysis/all_but_one_metric.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::analysis {

absl::Status AllButOneMetric::Compute(const SensitivityContext& ctx, SensitivityTable* table) {
  const auto start = std::chrono::steady_clock::now();
  const int layers = static_cast<int>(ctx.net.weighted.size());
  std::vector<LayerChange> changes;
  for (int k = 0; k < layers; ++k) changes.push_back({k, false, false});  // that layer float
  std::string uniform;
  for (size_t bi = 0; bi < ctx.bits.size(); ++bi) {
    const int b = ctx.bits[bi];
    for (Target t : targets()) {
      const BaseState base_state{t != Target::kActivations, t != Target::kWeights};
      Score base;
      std::vector<Score> scores;
      RETURN_IF_ERROR(EvaluateChanges(ctx, b, base_state, changes, &base, &scores));
      const std::string key = absl::StrCat("uniform_", b, "_", TargetName(t));
      table->scalars[key + "_accuracy"] = base.accuracy;
      table->scalars[key + "_loss"] = base.loss;
      absl::StrAppend(&uniform, uniform.empty() ? "" : ", ", b, "-bit ", TargetName(t), " ",
                      absl::StrFormat("%.4f", base.accuracy));
      for (int k = 0; k < layers; ++k) {
        const std::string& layer = ctx.net.weighted[k].name;
        table->Add(layer, b, t, "all_but_one_accuracy_gain", 100.0 * (scores[k].accuracy - base.accuracy));
        table->Add(layer, b, t, "all_but_one_loss_decrease", base.loss - scores[k].loss);
      }
    }
    if (ctx.log != nullptr) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(ctx.log, "[%s] analysis all_but_one: %d bits done, %.1f s, ETA %.0f s\n", ctx.name.c_str(), b, s,
                   s / (bi + 1) * (ctx.bits.size() - bi - 1));
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  table->scalars["all_but_one_seconds"] = s;
  table->notes.push_back(
      absl::StrFormat("all_but_one: every layer quantized but one, %d layers x %zu bit widths x 3 "
                      "targets: %.1f s; the whole net quantized: %s",
                      layers, ctx.bits.size(), s, uniform));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(SensitivityMetric, "all_but_one", CreateTargetedMetric<AllButOneMetric>,
                  "accuracy and loss recovered when every layer but that one is quantized");

}  // namespace quant::analysis
