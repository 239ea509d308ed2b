#include "quant/analysis/sqnr_metric.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/ptq/ptq_pass.h"

namespace quant::analysis {

absl::Status SqnrMetric::Compute(const SensitivityContext& ctx, SensitivityTable* table) {
  const auto start = std::chrono::steady_clock::now();
  const backends::QuantizedModel& m = ctx.net.model;
  const int layers = static_cast<int>(ctx.net.weighted.size());
  for (int k = 0; k < layers; ++k) {
    const ptq::WeightedLayer& w = ctx.net.weighted[k];
    const auto& f = m.tensors(w.weight_tensor).float_data();
    for (int b : ctx.bits) {
      table->Add(w.name, b, Target::kWeights, "weight_sqnr_db",
                 SqnrDb(f.data(), ctx.at_bits.at(b).weights[k].data(), f.size()));
    }
  }
  // Output SQNR: signal and noise summed over every image, per (layer, bits, target).
  const std::vector<Target>& targets = this->targets();
  const int nt = static_cast<int>(targets.size());
  const size_t nb = ctx.bits.size();
  std::vector<double> signal(layers * nb * nt, 0.0), noise(layers * nb * nt, 0.0);
  backends::QuantizedModel work = m;
  std::vector<std::vector<float>> values(m.tensors_size());
  std::vector<float> saved;
  const int input = backends::InputTensor(m);
  int64_t per = 1;
  for (int64_t d : ctx.net.nn_input_shape) per *= d;
  for (int64_t s0 = 0; s0 < ctx.images; s0 += ctx.batch_size) {
    const int64_t batch = std::min(ctx.batch_size, ctx.images - s0);
    values[input].assign(ctx.nhwc.begin() + s0 * per, ctx.nhwc.begin() + (s0 + batch) * per);
    RETURN_IF_ERROR(backends::floatk::RunGraph(m, batch, &values));
    for (int k = 0; k < layers; ++k) {
      const ptq::WeightedLayer& w = ctx.net.weighted[k];
      const int out = m.ops(w.index).outputs(0);
      saved = values[out];
      auto* dst = work.mutable_tensors(w.weight_tensor)->mutable_float_data();
      const auto& f = m.tensors(w.weight_tensor).float_data();
      for (size_t bi = 0; bi < nb; ++bi) {
        const QuantizedAtBits& qb = ctx.at_bits.at(ctx.bits[bi]);
        const auto grid = qb.grids.find(out);
        for (int t = 0; t < nt; ++t) {
          const bool qw = targets[t] != Target::kActivations, qa = targets[t] != Target::kWeights;
          const float* src = qw ? qb.weights[k].data() : f.data();
          std::copy(src, src + dst->size(), dst->mutable_data());
          backends::floatk::RunOptions run;
          run.first_op = run.last_op = w.index;
          if (qa && grid != qb.grids.end()) {
            run.after = [&](int, float* d, int64_t count) {
              ptq::FakeQuantizeOnGrid(grid->second, d, count);
              return absl::OkStatus();
            };
          }
          RETURN_IF_ERROR(backends::floatk::RunGraph(work, batch, &values, run));
          const size_t slot = (k * nb + bi) * nt + t;
          for (size_t i = 0; i < saved.size(); ++i) {
            signal[slot] += static_cast<double>(saved[i]) * saved[i];
            const double d = static_cast<double>(saved[i]) - values[out][i];
            noise[slot] += d * d;
          }
        }
      }
      std::copy(f.begin(), f.end(), dst->mutable_data());
      values[out] = saved;  // the float output again for the layers after it
    }
  }
  for (int k = 0; k < layers; ++k) {
    for (size_t bi = 0; bi < nb; ++bi) {
      for (int t = 0; t < nt; ++t) {
        const size_t slot = (k * nb + bi) * nt + t;
        table->Add(
            ctx.net.weighted[k].name, ctx.bits[bi], targets[t], "output_sqnr_db",
            noise[slot] == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(signal[slot] / noise[slot]));
      }
    }
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  table->scalars["sqnr_seconds"] = s;
  table->notes.push_back(
      absl::StrFormat("sqnr: weights, and each layer's output with the layer alone quantized on "
                      "the float inputs of %lld images: %.1f s",
                      static_cast<long long>(ctx.images), s));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(SensitivityMetric, "sqnr", CreateTargetedMetric<SqnrMetric>,
                  "quantization SQNR of each layer's weights and of its output (the layer alone quantized)");

}  // namespace quant::analysis
