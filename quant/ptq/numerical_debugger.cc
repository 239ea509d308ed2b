#include "quant/ptq/numerical_debugger.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/backends/backend.h"
#include "quant/core/status_macros.h"
#include "quant/ptq/converter.h"

namespace quant::ptq {
namespace {

TensorDebug Measure(const backends::QuantizedModel& model, int tensor, const std::vector<float>& x,
                    const std::vector<int32_t>& q, int32_t lo, int32_t hi) {
  TensorDebug d;
  const backends::Tensor& t = model.tensors(tensor);
  d.tensor = tensor;
  d.name = t.name();
  d.scale = backends::TensorScale(t);
  d.zero_point = backends::TensorZeroPoint(t);
  d.quant_min = lo;
  d.quant_max = hi;
  d.values = static_cast<int64_t>(std::min(x.size(), q.size()));
  const double s = d.scale;
  const double top = s * (hi - d.zero_point + 0.5), bottom = s * (lo - d.zero_point - 0.5);
  double signal = 0, noise = 0;
  int64_t clipped = 0, saturated = 0;
  for (int64_t i = 0; i < d.values; ++i) {
    const double f = x[i];
    const double e = f - s * (q[i] - d.zero_point);
    signal += f * f;
    noise += e * e;
    clipped += f > top || f < bottom;
    // A clamp end at the zero point is a fused ReLU's zero, not saturation.
    saturated += (q[i] == lo && lo != d.zero_point) || (q[i] == hi && hi != d.zero_point);
  }
  d.sqnr_db = noise > 0 ? 10.0 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
  if (d.values > 0) {
    const auto [min_it, max_it] = std::minmax_element(x.begin(), x.begin() + d.values);
    d.histogram_min = *min_it;
    d.histogram_max = *max_it;
    d.histogram.assign(TensorDebug::kHistogramBins, 0);
    const double width = (d.histogram_max - d.histogram_min) / TensorDebug::kHistogramBins;
    for (int64_t i = 0; i < d.values; ++i) {
      const int bin = width > 0 ? static_cast<int>((x[i] - d.histogram_min) / width) : 0;
      ++d.histogram[std::min(bin, TensorDebug::kHistogramBins - 1)];
    }
  }
  if (d.values > 0) {
    d.clipped = static_cast<double>(clipped) / d.values;
    d.saturated = static_cast<double>(saturated) / d.values;
  }
  return d;
}

// Two decimals, or two significant digits below 0.01 % (one differing value in 800,000 is not "0.00 %").
std::string Percent(double f) {
  return f > 0 && f < 1e-4 ? absl::StrFormat("%.2g %%", 100.0 * f) : absl::StrFormat("%.2f %%", 100.0 * f);
}

}  // namespace

absl::StatusOr<std::vector<TensorDebug>> CompareWithFloat(const backends::QuantizedModel& float_net,
                                                          const backends::QuantizedModel& model, const float* x,
                                                          int64_t batch) {
  if (float_net.ops_size() != model.ops_size() || float_net.tensors_size() != model.tensors_size()) {
    return absl::InvalidArgumentError("numerical debugger: the float net and the integer model differ in ops/tensors");
  }
  std::vector<std::vector<float>> float_out(model.ops_size());
  std::vector<float> logits;
  RETURN_IF_ERROR(FloatForward(float_net, x, batch, &logits, nullptr, [&](int op, float* y, int64_t count) {
    float_out[op].assign(y, y + count);
    return absl::OkStatus();
  }));
  ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> ref, backends::CreateBackend("reference"));
  ref->set_keep_intermediates(true);
  RETURN_IF_ERROR(ref->Prepare(model));
  backends::RunOutput out;
  RETURN_IF_ERROR(ref->Run(x, batch, &out));
  std::vector<TensorDebug> result;
  std::vector<int32_t> q;
  const int in_t = backends::InputTensor(model);
  if (ref->ReadTensor(in_t, &q)) {
    std::vector<float> xin(x, x + q.size());
    TensorDebug d = Measure(model, in_t, xin, q, backends::DTypeMin(model.tensors(in_t).dtype()),
                            backends::DTypeMax(model.tensors(in_t).dtype()));
    d.name = "input";
    result.push_back(std::move(d));
  }
  for (int i = 0; i < model.ops_size(); ++i) {
    const backends::Op& op = model.ops(i);
    if (!ref->ReadTensor(op.outputs(0), &q)) continue;
    TensorDebug d = Measure(model, op.outputs(0), float_out[i], q, op.output_min(), op.output_max());
    d.op = op.name();
    d.kind = backends::OpKind(op);
    result.push_back(std::move(d));
  }
  return result;
}

std::string DebugSummary(const std::vector<TensorDebug>& tensors, const std::vector<BackendEvaluation>& evals) {
  std::vector<std::string> parts, exact;
  for (const BackendEvaluation& e : evals) {
    if (!e.integer_outputs || e.backend == "reference" || e.per_op.empty()) continue;
    if (e.first_departure < 0) {
      exact.push_back(e.backend);
      continue;
    }
    const OpAgreement& o = e.per_op[e.first_departure];
    const AgreementCounts& c = o.counts;
    const double off1 = c.compared ? static_cast<double>(c.off_by_one) / c.compared : 0.0;
    const double larger = c.compared ? static_cast<double>(c.larger) / c.compared : 0.0;
    parts.push_back(absl::StrCat(parts.empty() ? "first divergence: " : "", e.backend, " at ", o.op, " (", o.kind, "), ", Percent(off1),
                                 " of outputs off by one",
                                 c.larger ? absl::StrCat(", ", Percent(larger), " by more (up to ", c.max_abs_steps,
                                                         " steps)")
                                          : ""));
  }
  if (!exact.empty()) parts.push_back(absl::StrCat("reference == ", absl::StrJoin(exact, " == "), " everywhere"));
  if (parts.empty()) parts.push_back("no integer backend compared with the reference");
  const TensorDebug* low = nullptr;
  const TensorDebug* clip = nullptr;
  for (const TensorDebug& t : tensors) {
    if (low == nullptr || t.sqnr_db < low->sqnr_db) low = &t;
    if (clip == nullptr || t.clipped > clip->clipped) clip = &t;
  }
  if (low != nullptr) parts.push_back(absl::StrFormat("lowest SQNR: %s %.1f dB", low->name, low->sqnr_db));
  if (clip != nullptr && clip->clipped > 0) {
    parts.push_back(absl::StrCat("most clipped: ", clip->name, " ", Percent(clip->clipped)));
  }
  return absl::StrJoin(parts, "; ");
}

std::vector<std::string> DebugTable(const std::vector<TensorDebug>& tensors,
                                    const std::vector<BackendEvaluation>& evals) {
  std::vector<const BackendEvaluation*> cols;
  for (const BackendEvaluation& e : evals) {
    if (e.integer_outputs && e.backend != "reference" && !e.per_op.empty()) cols.push_back(&e);
  }
  std::vector<std::string> lines;
  std::string head = absl::StrFormat("%-14s %-16s %10s %5s %11s %8s %8s %8s", "tensor", "kind", "scale", "zp",
                                     "clamp", "SQNR dB", "clipped", "satur.");
  for (const BackendEvaluation* e : cols) absl::StrAppend(&head, absl::StrFormat("  %-22s", e->backend + " = / +-1 / max"));
  lines.push_back(head);
  for (const TensorDebug& t : tensors) {
    std::string line = absl::StrFormat("%-14s %-16s %10.4g %5d %11s %8.1f %7.2f%% %7.2f%%", t.name,
                                       t.kind.empty() ? "(input)" : t.kind, t.scale, t.zero_point,
                                       absl::StrCat("[", t.quant_min, ",", t.quant_max, "]"), t.sqnr_db,
                                       100.0 * t.clipped, 100.0 * t.saturated);
    for (const BackendEvaluation* e : cols) {
      const OpAgreement* o = nullptr;
      for (const OpAgreement& a : e->per_op) {
        if (a.op == t.op && !t.op.empty()) o = &a;
      }
      if (o == nullptr || o->counts.compared == 0) {
        absl::StrAppend(&line, absl::StrFormat("  %-22s", "-"));
        continue;
      }
      const AgreementCounts& c = o->counts;
      absl::StrAppend(&line, absl::StrFormat("  %6.2f%% %6.2f%% %4lld  ", 100.0 * c.identical / c.compared,
                                             100.0 * c.off_by_one / c.compared,
                                             static_cast<long long>(c.max_abs_steps)));
    }
    lines.push_back(line);
  }
  return lines;
}

}  // namespace quant::ptq
