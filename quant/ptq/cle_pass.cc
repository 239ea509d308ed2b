#include "quant/ptq/cle_pass.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::ptq {
namespace {

// max/min over channels of the per-channel ranges: how unequal a layer's channels are.
double Spread(const std::vector<double>& r) {
  double lo = 0, hi = 0;
  bool first = true;
  for (double v : r) {
    if (v <= 0) continue;
    lo = first ? v : std::min(lo, v);
    hi = first ? v : std::max(hi, v);
    first = false;
  }
  return first ? 1.0 : hi / lo;
}

std::vector<double> OutputRanges(const WeightedLayer& w) {
  const int64_t per = ValuesPerOutputChannel(w);
  std::vector<double> r(OutputChannels(w), 0.0);
  for (int64_t c = 0; c < OutputChannels(w); ++c) {
    for (int64_t j = 0; j < per; ++j) r[c] = std::max(r[c], static_cast<double>(std::fabs(w.torch_weight[c * per + j])));
  }
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PtqPass>> ClePass::Create(ParamReader& p) {
  Options o;
  o.iterations = static_cast<int>(p.IntInRange("iterations", 100, 1, 100000, "sweeps over all pairs at most"));
  o.tolerance = p.DoubleInRange("tolerance", 1e-6, 0.0, 1.0, "stop when every scale is within 1 +- tolerance");
  o.replace_relu6 = p.Bool("replace_relu6", true,
                           "replace a ReLU6 between equalized layers by ReLU (the paper, AIMET); false: skip such pairs");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new ClePass(o));
}

std::string ClePass::Describe() const {
  return absl::StrCat("cle: cross-layer equalization (Nagel et al. 2019), up to ", o_.iterations,
                      " sweeps, tolerance ", o_.tolerance);
}

absl::Status ClePass::Run(PtqPassContext& ctx) {
  FloatNet& net = *ctx.net;
  std::vector<std::string> skipped;
  std::vector<LayerPair> pairs = FindLayerPairs(net, &skipped);
  // ReLU6 between the two layers: replaced by ReLU, or the pair skipped.
  std::vector<std::string> replaced;
  std::vector<LayerPair> usable;
  for (const LayerPair& p : pairs) {
    backends::Op* op = net.model.mutable_ops(net.weighted[p.first].index);
    if (op->fused_activation() == backends::RELU6) {
      if (!o_.replace_relu6) {
        skipped.push_back(absl::StrCat(net.weighted[p.first].name, " -> ", net.weighted[p.second].name,
                                       ": a ReLU6 between them (replace_relu6: false)"));
        continue;
      }
      op->set_fused_activation(backends::RELU);
      replaced.push_back(op->name());
    }
    usable.push_back(p);
  }
  std::vector<double> spread_before;
  for (const LayerPair& p : usable) spread_before.push_back(Spread(OutputRanges(net.weighted[p.first])));
  int sweeps = 0;
  double moved = 0;
  for (; sweeps < o_.iterations; ++sweeps) {
    moved = 0;
    for (const LayerPair& p : usable) {
      WeightedLayer& w1 = net.weighted[p.first];
      WeightedLayer& w2 = net.weighted[p.second];
      const int64_t per1 = ValuesPerOutputChannel(w1);
      const std::vector<double> r1 = OutputRanges(w1);
      for (int64_t c = 0; c < OutputChannels(w1); ++c) {
        const std::vector<int64_t> in2 = InputChannelIndices(w2, c, p.depthwise_second);
        double r2 = 0;
        for (int64_t j : in2) r2 = std::max(r2, static_cast<double>(std::fabs(w2.torch_weight[j])));
        if (r1[c] <= 0 || r2 <= 0) continue;  // a dead channel: nothing to balance
        const double s = std::sqrt(r1[c] / r2);
        moved = std::max(moved, std::fabs(s - 1.0));
        const float inv = static_cast<float>(1.0 / s), sf = static_cast<float>(s);
        for (int64_t j = c * per1; j < (c + 1) * per1; ++j) w1.torch_weight.data()[j] *= inv;
        w1.bias[c] *= inv;
        if (!w1.bn_gamma.empty()) w1.bn_gamma[c] *= inv, w1.bn_beta[c] *= inv;
        for (int64_t j : in2) w2.torch_weight.data()[j] *= sf;
      }
    }
    if (moved <= o_.tolerance) {
      ++sweeps;
      break;
    }
  }
  std::vector<std::string> per_pair;
  for (size_t i = 0; i < usable.size(); ++i) {
    const LayerPair& p = usable[i];
    SyncWeightedLayer(&net, p.first);
    SyncWeightedLayer(&net, p.second);
    per_pair.push_back(absl::StrFormat("%s -> %s (channel range spread %.3g -> %.3g)", net.weighted[p.first].name,
                                       net.weighted[p.second].name, spread_before[i],
                                       Spread(OutputRanges(net.weighted[p.first]))));
  }
  ctx.notes->push_back(absl::StrCat(
      "cle: ", usable.size(), " pair", usable.size() == 1 ? "" : "s", " equalized in ", sweeps, " sweep",
      sweeps == 1 ? "" : "s", " (last largest scale change ", absl::StrFormat("%.2g", moved), ")",
      usable.empty() ? "" : ": ", absl::StrJoin(per_pair, ", ")));
  if (!replaced.empty()) {
    ctx.notes->push_back(absl::StrCat("cle: ReLU6 replaced by ReLU after ", absl::StrJoin(replaced, ", ")));
  }
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat("cle: skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(PtqPass, "cle", ClePass::Create,
                  "cross-layer equalization of consecutive conv/linear pairs (Nagel et al. 2019)");

}  // namespace quant::ptq
