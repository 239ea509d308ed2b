#include "quant/analysis/one_layer_metric.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::analysis {

absl::Status OneLayerMetric::Compute(const SensitivityContext& ctx, SensitivityTable* table) {
  const auto start = std::chrono::steady_clock::now();
  const int layers = static_cast<int>(ctx.net.weighted.size());
  std::vector<LayerChange> changes;
  std::vector<Target> change_target;
  for (int k = 0; k < layers; ++k) {
    for (Target t : targets()) {
      changes.push_back({k, t != Target::kActivations, t != Target::kWeights});
      change_target.push_back(t);
    }
  }
  for (size_t bi = 0; bi < ctx.bits.size(); ++bi) {
    const int b = ctx.bits[bi];
    Score base;
    std::vector<Score> scores;
    RETURN_IF_ERROR(EvaluateChanges(ctx, b, BaseState{}, changes, &base, &scores));
    table->scalars["float_accuracy"] = base.accuracy;
    table->scalars["float_loss"] = base.loss;
    for (size_t i = 0; i < changes.size(); ++i) {
      const std::string& layer = ctx.net.weighted[changes[i].layer].name;
      table->Add(layer, b, change_target[i], "one_layer_accuracy_drop", 100.0 * (base.accuracy - scores[i].accuracy));
      table->Add(layer, b, change_target[i], "one_layer_loss_increase", scores[i].loss - base.loss);
    }
    if (ctx.log != nullptr) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(ctx.log,
                   "[%s] analysis one_layer: %d bits done (%zu one-layer runs over %lld images), %.1f s, ETA %.0f s\n",
                   ctx.name.c_str(), b, changes.size(), static_cast<long long>(ctx.images), s,
                   s / (bi + 1) * (ctx.bits.size() - bi - 1));
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  table->scalars["one_layer_seconds"] = s;
  table->notes.push_back(absl::StrFormat(
      "one_layer: %d layers x %zu bit widths x %zu target(s) over %lld held-out training images, each run from its "
      "layer on (the float tensors before it reused): %.1f s; float accuracy %.4f, loss %.4f",
      layers, ctx.bits.size(), targets().size(), static_cast<long long>(ctx.images), s,
      table->scalars["float_accuracy"], table->scalars["float_loss"]));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(SensitivityMetric, "one_layer", CreateTargetedMetric<OneLayerMetric>,
                  "accuracy drop and loss increase when only that layer is quantized (weights, output, both)");

}  // namespace quant::analysis
