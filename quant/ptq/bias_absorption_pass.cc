#include "quant/ptq/bias_absorption_pass.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::ptq {

absl::StatusOr<std::unique_ptr<PtqPass>> BiasAbsorptionPass::Create(ParamReader& p) {
  const double sigmas = p.DoubleInRange("sigmas", 3.0, 0.0, 100.0,
                                        "c = max(0, beta - sigmas * |gamma|) is absorbed (the paper: 3)");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new BiasAbsorptionPass(sigmas));
}

std::string BiasAbsorptionPass::Describe() const {
  return absl::StrCat("bias_absorption: high-bias absorption (Nagel et al. 2019), c = max(0, beta - ", sigmas_,
                      " |gamma|)");
}

absl::Status BiasAbsorptionPass::Run(PtqPassContext& ctx) {
  FloatNet& net = *ctx.net;
  std::vector<std::string> skipped, done;
  for (const LayerPair& p : FindLayerPairs(net, &skipped)) {
    WeightedLayer& w1 = net.weighted[p.first];
    WeightedLayer& w2 = net.weighted[p.second];
    const std::string pair = absl::StrCat(w1.name, " -> ", w2.name);
    if (w1.bn_gamma.empty()) {
      skipped.push_back(absl::StrCat(pair, ": no BatchNorm after ", w1.name, " (its statistics define c)"));
      continue;
    }
    if (net.model.ops(w1.index).fused_activation() != backends::RELU) {
      skipped.push_back(absl::StrCat(pair, ": the activation between them is not ReLU"));
      continue;
    }
    const int64_t per2 = ValuesPerOutputChannel(w2);
    int channels = 0;
    double total = 0;
    for (int64_t c = 0; c < OutputChannels(w1); ++c) {
      const double absorb = std::max(0.0, static_cast<double>(w1.bn_beta[c]) - sigmas_ * std::fabs(w1.bn_gamma[c]));
      if (absorb <= 0) continue;
      ++channels;
      total += absorb;
      w1.bias[c] -= static_cast<float>(absorb);
      w1.bn_beta[c] -= static_cast<float>(absorb);
      for (int64_t j : InputChannelIndices(w2, c, p.depthwise_second)) {
        w2.bias[j / per2] += static_cast<float>(absorb * w2.torch_weight[j]);
      }
    }
    SyncWeightedLayer(&net, p.first);
    SyncWeightedLayer(&net, p.second);
    done.push_back(absl::StrFormat("%s: %d of %lld channels, mean c %.3g", pair, channels,
                                   static_cast<long long>(OutputChannels(w1)), channels ? total / channels : 0.0));
  }
  ctx.notes->push_back(absl::StrCat("bias_absorption: ", done.size(), " pair", done.size() == 1 ? "" : "s",
                                    done.empty() ? "" : ": ", absl::StrJoin(done, ", ")));
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat("bias_absorption: skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(PtqPass, "bias_absorption", BiasAbsorptionPass::Create,
                  "high-bias absorption into the next layer (Nagel et al. 2019)");

}  // namespace quant::ptq
