#include "quant/analysis/hessian_trace_metric.h"

#include <chrono>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/nn/loss.h"

namespace quant::analysis {

absl::StatusOr<std::vector<TraceEstimate>> HutchinsonTrace(const std::vector<int64_t>& block_sizes, int samples,
                                                           uint64_t seed, const BlockOperator& apply,
                                                           const std::function<void(int)>& progress) {
  if (samples < 2) return absl::InvalidArgumentError("Hutchinson's estimator needs at least 2 samples for its error");
  std::mt19937_64 rng(seed ^ 0x4857c5a1d2e3f607ull);
  const size_t nb = block_sizes.size();
  std::vector<double> sum(nb, 0.0), sum2(nb, 0.0);
  std::vector<std::vector<float>> v(nb);
  std::vector<std::vector<double>> hv;
  for (int s = 0; s < samples; ++s) {
    for (size_t k = 0; k < nb; ++k) {
      v[k].resize(block_sizes[k]);
      // 64 Rademacher signs per draw of the generator.
      for (int64_t i = 0; i < block_sizes[k]; i += 64) {
        uint64_t bits = rng();
        for (int64_t j = i; j < std::min<int64_t>(i + 64, block_sizes[k]); ++j, bits >>= 1) {
          v[k][j] = (bits & 1) ? 1.0f : -1.0f;
        }
      }
    }
    RETURN_IF_ERROR(apply(v, &hv));
    for (size_t k = 0; k < nb; ++k) {
      double dot = 0;
      for (int64_t i = 0; i < block_sizes[k]; ++i) dot += v[k][i] * hv[k][i];
      sum[k] += dot;
      sum2[k] += dot * dot;
    }
    if (progress) progress(s + 1);
  }
  std::vector<TraceEstimate> out(nb);
  for (size_t k = 0; k < nb; ++k) {
    out[k].samples = samples;
    out[k].mean = sum[k] / samples;
    const double var = std::max(0.0, (sum2[k] - samples * out[k].mean * out[k].mean) / (samples - 1));
    out[k].stddev = std::sqrt(var);
    out[k].stderr_of_mean = out[k].stddev / std::sqrt(static_cast<double>(samples));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SensitivityMetric>> HessianTraceMetric::Create(ParamReader& p) {
  const int64_t samples = p.IntInRange("samples", 32, 2, 100000, "Rademacher draws of Hutchinson's estimator");
  const int64_t images = p.IntInRange("images", 512, 1, 1 << 24,
                                      "held-out training images the loss is averaged over (at most analysis.images)");
  const double step = p.DoubleInRange("step", 1e-2, 1e-6, 1.0,
                                      "finite-difference step of the Hessian-vector product, relative to each "
                                      "layer's RMS weight");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<SensitivityMetric>(new HessianTraceMetric(static_cast<int>(samples), images, step));
}

std::string HessianTraceMetric::Describe() const {
  return absl::StrFormat("hessian_trace (%d samples, %lld images, step %g)", samples_, static_cast<long long>(images_),
                         step_);
}

absl::Status HessianTraceMetric::Compute(const SensitivityContext& ctx, SensitivityTable* table) {
  const auto start = std::chrono::steady_clock::now();
  nn::Model& model = *ctx.model;
  model.set_training(false);
  model.set_keep_values(true);
  const int layers = static_cast<int>(ctx.net.weighted.size());
  // The nn weight of each layer, and per element 1/d where folded = d * nn weight per
  // output channel (BN folding): the trace is taken w.r.t. the folded weights, which the
  // quantizer rounds, by probing the nn weights with D^-1 v.
  std::vector<nn::Parameter*> params(layers, nullptr);
  std::vector<std::vector<float>> inv_d(layers);
  std::vector<double> eps(layers);
  std::vector<int64_t> sizes(layers);
  auto named = model.NamedParameters();
  for (int k = 0; k < layers; ++k) {
    const ptq::WeightedLayer& w = ctx.net.weighted[k];
    for (auto& [name, p] : named) {
      if (name == w.name + ".weight") params[k] = p;
    }
    if (params[k] == nullptr || params[k]->value.numel() != w.torch_weight.numel()) {
      return absl::FailedPreconditionError(
          absl::StrCat("hessian_trace: layer '", w.name, "' has no nn weight of ", w.torch_weight.numel(), " values"));
    }
    const int64_t n = w.torch_weight.numel(), channels = static_cast<int64_t>(w.bias.size()), per = n / channels;
    sizes[k] = n;
    inv_d[k].resize(n);
    double sq = 0;
    for (int64_t c = 0; c < channels; ++c) {
      double num = 0, den = 0;
      for (int64_t j = c * per; j < (c + 1) * per; ++j) {
        num += static_cast<double>(w.torch_weight[j]) * params[k]->value[j];
        den += static_cast<double>(params[k]->value[j]) * params[k]->value[j];
      }
      const double d = den > 0 ? num / den : 1.0;
      for (int64_t j = c * per; j < (c + 1) * per; ++j) inv_d[k][j] = std::abs(d) > 1e-12 ? 1.0 / d : 0.0;
    }
    for (int64_t j = 0; j < n; ++j) sq += static_cast<double>(w.torch_weight[j]) * w.torch_weight[j];
    eps[k] = step_ * std::max(std::sqrt(sq / n), 1e-8);
  }
  const int64_t images = std::min(images_, ctx.images);
  const int64_t per_image = ctx.nchw.numel() / ctx.nchw.dim(0);
  nn::SoftmaxCrossEntropy loss;
  Tensor dlogits;
  // The mean-loss gradient of every layer's nn weight over the images, in double.
  auto gradient = [&](std::vector<std::vector<double>>* g) {
    g->assign(layers, {});
    for (int k = 0; k < layers; ++k) (*g)[k].assign(sizes[k], 0.0);
    for (int64_t s0 = 0; s0 < images; s0 += ctx.batch_size) {
      const int64_t b = std::min(ctx.batch_size, images - s0);
      std::vector<int64_t> shape = ctx.nchw.shape();
      shape[0] = b;
      Tensor x(shape);
      std::copy(ctx.nchw.data() + s0 * per_image, ctx.nchw.data() + (s0 + b) * per_image, x.data());
      std::vector<int32_t> labels(ctx.labels.begin() + s0, ctx.labels.begin() + s0 + b);
      const Tensor& logits = model.Forward(x);
      loss.Forward(logits, labels, nullptr);
      loss.Backward(&dlogits);
      model.Backward(x, dlogits);
      const double weight = static_cast<double>(b) / images;
      for (int k = 0; k < layers; ++k) {
        for (int64_t j = 0; j < sizes[k]; ++j) (*g)[k][j] += weight * params[k]->grad[j];
      }
    }
  };
  std::vector<std::vector<float>> saved(layers);
  for (int k = 0; k < layers; ++k) saved[k].assign(params[k]->value.data(), params[k]->value.data() + sizes[k]);
  std::vector<std::vector<double>> g_plus, g_minus;
  auto apply = [&](const std::vector<std::vector<float>>& v, std::vector<std::vector<double>>* hv) -> absl::Status {
    for (double sign : {1.0, -1.0}) {
      for (int k = 0; k < layers; ++k) {
        for (int64_t j = 0; j < sizes[k]; ++j) {
          params[k]->value[j] = static_cast<float>(saved[k][j] + sign * eps[k] * v[k][j] * inv_d[k][j]);
        }
      }
      gradient(sign > 0 ? &g_plus : &g_minus);
    }
    for (int k = 0; k < layers; ++k) std::copy(saved[k].begin(), saved[k].end(), params[k]->value.data());
    hv->assign(layers, {});
    for (int k = 0; k < layers; ++k) {
      (*hv)[k].resize(sizes[k]);
      for (int64_t j = 0; j < sizes[k]; ++j) {
        (*hv)[k][j] = (g_plus[k][j] - g_minus[k][j]) / (2.0 * eps[k]) * inv_d[k][j];
      }
    }
    return absl::OkStatus();
  };
  auto progress = [&](int s) {
    if (ctx.log == nullptr || (s % 8 != 0 && s != samples_)) return;
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(ctx.log, "[%s] analysis hessian_trace: sample %d/%d, %.1f s, ETA %.0f s\n", ctx.name.c_str(), s,
                 samples_, t, t / s * (samples_ - s));
  };
  auto traces = HutchinsonTrace(sizes, samples_, ctx.seed, apply, progress);
  for (int k = 0; k < layers; ++k) std::copy(saved[k].begin(), saved[k].end(), params[k]->value.data());
  model.set_keep_values(false);
  if (!traces.ok()) return traces.status();
  for (int k = 0; k < layers; ++k) {
    const ptq::WeightedLayer& w = ctx.net.weighted[k];
    const TraceEstimate& e = (*traces)[k];
    table->AddIndependent(w.name, "hessian_trace", e.mean);
    table->AddIndependent(w.name, "hessian_trace_stderr", e.stderr_of_mean);
    table->AddIndependent(w.name, "hessian_trace_per_weight", e.mean / sizes[k]);
    const auto& f = ctx.net.model.tensors(w.weight_tensor).float_data();
    for (int b : ctx.bits) {
      const std::vector<float>& q = ctx.at_bits.at(b).weights[k];
      double sq = 0;
      for (int i = 0; i < f.size(); ++i) sq += (static_cast<double>(q[i]) - f[i]) * (static_cast<double>(q[i]) - f[i]);
      table->Add(w.name, b, Target::kWeights, "hawq_omega", e.mean / sizes[k] * sq);
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  table->scalars["hessian_trace_seconds"] = s;
  table->notes.push_back(
      absl::StrFormat("hessian_trace: Hutchinson, %d Rademacher samples, loss over %lld images, "
                      "central-difference step %g x RMS weight: %.1f s",
                      samples_, static_cast<long long>(images), step_, s));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(SensitivityMetric, "hessian_trace", HessianTraceMetric::Create,
                  "Hutchinson estimate of each layer's Hessian trace (HAWQ-V2) and Omega = tr/n * ||Q(W) - W||^2");

}  // namespace quant::analysis
