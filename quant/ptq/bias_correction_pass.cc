#include "quant/ptq/bias_correction_pass.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/quantizers/tensor_role.h"

namespace quant::ptq {
namespace {

double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }
double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI); }

// Input channels of a lowered weighted op and, per weight value of output channel o in
// the lowered layout (OHWI / [O, I]), the input channel it multiplies.
int64_t InputChannelOf(const backends::QuantizedModel& m, const WeightedLayer& w, int64_t o, int64_t j) {
  const backends::Op& op = m.ops(w.index);
  if (op.has_fully_connected()) return j;
  const int64_t O = OutputChannels(w), groups = op.conv2d().groups();
  const int64_t cg = w.torch_weight.dim(1);  // input channels per group
  return (o / (O / groups)) * cg + j % cg;
}

int64_t InputChannels(const WeightedLayer& w, const backends::Op& op) {
  return op.has_fully_connected() ? w.torch_weight.dim(1) : w.torch_weight.dim(1) * op.conv2d().groups();
}

}  // namespace

double ClippedNormalMean(double mean, double std, double upper) {
  if (!(std > 0)) return std::min(std::max(mean, 0.0), upper);
  const double a = (0.0 - mean) / std;
  if (!std::isfinite(upper)) return std * phi(a) + mean * (1.0 - Phi(a));
  const double b = (upper - mean) / std;
  // E[clip(z, 0, u)] = mean (Phi(b) - Phi(a)) + std (phi(a) - phi(b)) + u (1 - Phi(b))
  return mean * (Phi(b) - Phi(a)) + std * (phi(a) - phi(b)) + upper * (1.0 - Phi(b));
}

absl::StatusOr<std::unique_ptr<PtqPass>> BiasCorrectionPass::Create(ParamReader& p) {
  const std::string mode = p.Choice("mode", "empirical", {"empirical", "analytic"},
                                    "E[x] from the float net on the calibration images, or from BatchNorm statistics");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new BiasCorrectionPass(mode == "analytic"));
}

std::string BiasCorrectionPass::Describe() const {
  return absl::StrCat("bias_correction (", analytic_ ? "analytic" : "empirical", "): b -= (W~ - W) E[x]");
}

absl::Status BiasCorrectionPass::Run(PtqPassContext& ctx) {
  FloatNet& net = *ctx.net;
  const backends::QuantizedModel& m = net.model;
  const int n = static_cast<int>(net.weighted.size());
  // Empirical E[x] for every layer, in one pass of the float executor (needed by
  // `empirical`, and by `analytic` for inputs without BatchNorm statistics).
  std::vector<std::vector<double>> sums(n);
  std::vector<int64_t> counts(n, 0);
  const bool have_data = ctx.calibration != nullptr && ctx.images > 0;
  if (have_data) {
    int64_t per = 1;
    for (int64_t d : net.nn_input_shape) per *= d;
    std::vector<float> logits;
    constexpr int64_t kBatch = 256;
    for (int64_t start = 0; start < ctx.images; start += kBatch) {
      const int64_t b = std::min(kBatch, ctx.images - start);
      RETURN_IF_ERROR(FloatForward(m, ctx.calibration + start * per, b, &logits,
                                   [&](int k, float* x, int64_t count) {
                                     const int64_t c = InputChannels(net.weighted[k], m.ops(net.weighted[k].index));
                                     if (sums[k].empty()) sums[k].assign(c, 0.0);
                                     for (int64_t i = 0; i < count; ++i) sums[k][i % c] += x[i];
                                     counts[k] += count / c;
                                     return absl::OkStatus();
                                   }));
    }
  } else if (!analytic_) {
    return absl::FailedPreconditionError("bias_correction (empirical) needs calibration images; use mode: analytic");
  }
  std::vector<int> producer(m.tensors_size(), -1);
  for (int i = 0; i < m.ops_size(); ++i) producer[m.ops(i).outputs(0)] = i;
  std::vector<int> weighted_of(m.ops_size(), -1);
  for (int k = 0; k < n; ++k) weighted_of[net.weighted[k].index] = k;

  std::vector<std::string> corrected, fell_back, skipped;
  for (int k = 0; k < n; ++k) {
    WeightedLayer& w = net.weighted[k];
    const backends::Op& op = m.ops(w.index);
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, ctx.quant->WeightQuantizer(w.name));
    if (q == nullptr) {
      skipped.push_back(absl::StrCat(w.name, " (float weights)"));
      continue;
    }
    if (auto* aware = dynamic_cast<RoleAware*>(q.get())) RETURN_IF_ERROR(aware->SetRole(TensorRole::kWeights));
    RETURN_IF_ERROR(q->Observe(w.torch_weight));
    RETURN_IF_ERROR(q->ComputeQParams());
    Tensor wq;
    RETURN_IF_ERROR(q->Forward(w.torch_weight, &wq));
    // E[x] per input channel.
    const int64_t C = InputChannels(w, op);
    std::vector<double> mean(C, 0.0);
    bool analytic_done = false;
    if (analytic_) {
      int t = op.inputs(0);
      while (producer[t] >= 0 && (m.ops(producer[t]).has_average_pool2d() ||
                                  m.ops(producer[t]).has_global_average_pool())) {
        t = m.ops(producer[t]).inputs(0);  // an average keeps the mean
      }
      const int j = producer[t] >= 0 ? weighted_of[producer[t]] : -1;
      if (j >= 0 && !net.weighted[j].bn_gamma.empty() && OutputChannels(net.weighted[j]) == C) {
        const WeightedLayer& src = net.weighted[j];
        const backends::Activation act = m.ops(src.index).fused_activation();
        for (int64_t c = 0; c < C; ++c) {
          const double mu = src.bn_beta[c], sd = std::fabs(src.bn_gamma[c]);
          mean[c] = act == backends::RELU ? ClippedNormalMean(mu, sd, std::numeric_limits<double>::infinity())
                    : act == backends::RELU6 ? ClippedNormalMean(mu, sd, 6.0)
                                             : mu;
        }
        analytic_done = true;
      }
    }
    if (!analytic_done) {
      if (!have_data || counts[k] == 0) {
        skipped.push_back(absl::StrCat(w.name, " (no BatchNorm statistics for its input and no calibration data)"));
        continue;
      }
      for (int64_t c = 0; c < C; ++c) mean[c] = sums[k][c] / static_cast<double>(counts[k]);
      if (analytic_) fell_back.push_back(w.name);
    }
    // b -= eps E[x], over the lowered layout (so the channel of every tap is explicit).
    const int64_t O = OutputChannels(w), per = ValuesPerOutputChannel(w);
    double largest = 0, total = 0;
    for (int64_t o = 0; o < O; ++o) {
      double shift = 0;
      for (int64_t j = 0; j < per; ++j) {
        const int64_t torch_index = w.perm[o * per + j];
        const double eps = static_cast<double>(wq[torch_index]) - w.torch_weight[torch_index];
        shift += eps * mean[InputChannelOf(m, w, o, j)];
      }
      w.bias[o] -= static_cast<float>(shift);
      largest = std::max(largest, std::fabs(shift));
      total += std::fabs(shift);
    }
    SyncWeightedLayer(&net, k);
    corrected.push_back(absl::StrFormat("%s (mean |shift| %.3g, max %.3g)", w.name, total / O, largest));
  }
  ctx.notes->push_back(absl::StrCat("bias_correction (", analytic_ ? "analytic" : "empirical", "): ",
                                    corrected.size(), " layers: ", absl::StrJoin(corrected, ", ")));
  if (!fell_back.empty()) {
    ctx.notes->push_back(absl::StrCat("bias_correction: empirical E[x] (no BatchNorm statistics for the input) for ",
                                      absl::StrJoin(fell_back, ", ")));
  }
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat("bias_correction: skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(PtqPass, "bias_correction", BiasCorrectionPass::Create,
                  "corrects the bias for the expected output shift of quantized weights (Nagel et al. 2019)");

}  // namespace quant::ptq
