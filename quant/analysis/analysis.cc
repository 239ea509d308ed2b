#include "quant/analysis/analysis.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/analysis/latency_table.h"
#include "quant/backends/backend.h"
#include "quant/backends/quantized_model.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/quantizers/quant_config.h"

namespace quant::analysis {
namespace {

// Objective -> the metric plugin that computes it, and the targets it has.
struct ObjectiveInfo {
  const char* metric_plugin;
  bool activations;  // has an activations target
};
const std::map<std::string, ObjectiveInfo>& Objectives() {
  static const auto* m = new std::map<std::string, ObjectiveInfo>{
      {"one_layer_loss_increase", {"one_layer", true}},
      {"one_layer_accuracy_drop", {"one_layer", true}},
      {"all_but_one_loss_decrease", {"all_but_one", true}},
      {"all_but_one_accuracy_gain", {"all_but_one", true}},
      {"hawq_omega", {"hessian_trace", false}},
  };
  return *m;
}

std::vector<int> ToInts(const std::vector<int64_t>& v) { return std::vector<int>(v.begin(), v.end()); }

std::string EscapeRegex(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string AnalysisSpec::Describe() const {
  std::vector<std::string> names;
  for (const auto& m : metrics) names.push_back(m->Describe());
  std::vector<std::string> pass_names;
  for (const auto& p : passes) pass_names.push_back(p->Describe());
  std::string out =
      absl::StrCat("sensitivity of every conv/linear at ", absl::StrJoin(bits, "/"), " bits",
                   passes.empty() ? "" : absl::StrCat(" (weights by ", absl::StrJoin(pass_names, ", "), ")"), ": ",
                   absl::StrJoin(names, ", "), " on ", images, " held-out training images");
  if (allocate.has_value()) {
    const AllocateSpec& a = *allocate;
    std::string budget = a.size_bytes  ? absl::StrFormat("size <= %.0f bytes", *a.size_bytes)
                         : a.size_bits ? absl::StrFormat("size <= that of uniform %g-bit weights", *a.size_bits)
                         : a.bops      ? absl::StrFormat("BOPs <= %.4g", *a.bops)
                         : a.bops_bits ? absl::StrFormat("BOPs <= those of uniform %g-bit weights", *a.bops_bits)
                         : a.latency_ms
                             ? absl::StrFormat("batch-1 latency on %s <= %g ms", a.latency_backend, *a.latency_ms)
                             : absl::StrFormat("batch-1 latency on %s <= that of uniform %g-bit weights",
                                               a.latency_backend, *a.latency_bits);
    absl::StrAppend(&out, "; then allocate weight bits {", absl::StrJoin(a.weight_bits, ", "), "}",
                    a.activation_bits.empty()
                        ? ""
                        : absl::StrCat(" and activation bits {", absl::StrJoin(a.activation_bits, ", "), "}"),
                    " minimising the sum of ", a.objective, " under ", budget, " (integer linear program, GLPK)",
                    a.apply ? "; this run quantizes with the allocation" : "");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<AnalysisSpec>> ReadAnalysis(ParamReader& r) {
  auto spec = std::make_unique<AnalysisSpec>();
  spec->bits = ToInts(r.IntList("bits", {2, 3, 4, 8}, "candidate bit widths the metrics measure"));
  spec->images = r.IntInRange("images", 1024, 1, 1 << 24, "held-out training images the metrics are measured on");
  spec->calibration_images = r.IntInRange("calibration_images", 1024, 1, 1 << 24,
                                          "training images that calibrate the activation grids at each bit width");
  spec->batch_size = r.IntInRange("batch_size", 256, 1, 65536, "images per forward pass");
  for (int b : spec->bits) {
    if (b < 2 || b > 8)
      r.Fail("bits", absl::StrCat("bit width ", b, " is outside 2..8 (the integer conversion's range)"));
  }
  if (spec->bits.empty()) r.Fail("bits", "lists no bit width");
  auto metrics = ReadMetrics(r);
  if (!metrics.ok()) return metrics.status();
  spec->metrics = std::move(metrics).value();
  auto passes = ptq::ReadPasses(r);
  if (!passes.ok()) return passes.status();
  spec->passes = std::move(passes).value();
  if (r.Has("allocate")) {
    ParamReader& a = r.Map("allocate", "mixed-precision bit allocation under a budget");
    AllocateSpec al;
    al.weight_bits = ToInts(a.IntList("weights", {}, "candidate weight bits per layer (default: analysis.bits)"));
    if (al.weight_bits.empty()) al.weight_bits = spec->bits;
    al.activation_bits =
        ToInts(a.IntList("activations", {}, "candidate output-activation bits per layer (default: as quant: says)"));
    al.objective = a.Choice("objective", "one_layer_loss_increase",
                            {"one_layer_loss_increase", "one_layer_accuracy_drop", "all_but_one_loss_decrease",
                             "all_but_one_accuracy_gain", "hawq_omega"},
                            "the per-layer sensitivity summed and minimised");
    al.apply = a.Bool("apply", true, "quantize this run (its ptq: / train:) with the allocation");
    al.time_limit_seconds = a.DoubleInRange("time_limit_seconds", 60, 0.1, 3600, "GLPK's time limit");
    ParamReader& budget =
        a.Map("budget",
              "one of {size_bytes: N}, {size_bits: b}, {bops: N}, {bops_bits: b}, {latency_ms: t}, {latency_bits: b}");
    int given = 0;
    auto read = [&](const char* key, const char* help, std::optional<double>* out) {
      if (!budget.Has(key)) return;
      *out = budget.DoubleInRange(key, 0, 0, 1e18, help);
      ++given;
    };
    read("size_bytes", "packed model size in bytes", &al.size_bytes);
    read("size_bits", "the packed size of the model with every weight at this many bits", &al.size_bits);
    read("bops", "bit operations per image (MACs x weight bits x input activation bits)", &al.bops);
    read("bops_bits", "the BOPs of the model with every weight at this many bits", &al.bops_bits);
    read("latency_ms", "batch-1 latency in milliseconds on latency.backend, from the per-layer table measured here",
         &al.latency_ms);
    read("latency_bits", "the measured latency of the model with every weight at this many bits", &al.latency_bits);
    if (given != 1) {
      a.Fail("budget", absl::StrCat("give exactly one of size_bytes, size_bits, bops, bops_bits, latency_ms, "
                                    "latency_bits (",
                                    given, " given)"));
    }
    al.budget_kind = (al.bops || al.bops_bits)            ? AllocationProblem::Budget::kBops
                     : (al.latency_ms || al.latency_bits) ? AllocationProblem::Budget::kLatency
                                                          : AllocationProblem::Budget::kSizeBytes;
    ParamReader& latency = a.Map("latency", "the per-layer latency table: {backend: xnnpack, repeats: 200}");
    al.latency_backend = latency.String("backend", "xnnpack", "integer backend the latency table is measured on");
    al.latency_repeats = static_cast<int>(
        latency.IntInRange("repeats", 200, 5, 1000000, "timed batch-1 runs per candidate model (medians count)"));
    if (a.Has("latency") && al.budget_kind != AllocationProblem::Budget::kLatency) {
      a.Fail("latency", "the latency table is measured for latency budgets only (latency_ms or latency_bits)");
    }
    if (!latency.describing() && al.budget_kind == AllocationProblem::Budget::kLatency &&
        !Registry<backends::Backend>::Get().Contains(al.latency_backend)) {
      latency.Fail("backend", absl::StrCat("unknown backend '", al.latency_backend, "'; registered: ",
                                           absl::StrJoin(Registry<backends::Backend>::Get().Names(), ", ")));
    }
    if (al.budget_kind == AllocationProblem::Budget::kBops && al.activation_bits.size() > 1) {
      a.Fail("activations", "a BOPs budget needs one activation bit width (BOPs multiply weight and input bits)");
    }
    for (int b : al.weight_bits) {
      if (std::find(spec->bits.begin(), spec->bits.end(), b) == spec->bits.end()) {
        a.Fail("weights", absl::StrCat("candidate ", b, " bits is not in analysis.bits [",
                                       absl::StrJoin(spec->bits, ", "), "], so no sensitivity is measured for it"));
      }
    }
    const ObjectiveInfo& info = Objectives().at(al.objective);
    if (al.activation_bits.size() > 1) {
      if (!info.activations) {
        a.Fail("activations", absl::StrCat("objective ", al.objective,
                                           " measures weights only; allocate one "
                                           "activation bit width or choose a one_layer/all_but_one objective"));
      }
      for (int b : al.activation_bits) {
        if (std::find(spec->bits.begin(), spec->bits.end(), b) == spec->bits.end()) {
          a.Fail("activations", absl::StrCat("candidate ", b, " bits is not in analysis.bits"));
        }
      }
    }
    for (int b : al.activation_bits) {
      if (b < 2 || b > 8) a.Fail("activations", absl::StrCat("bit width ", b, " is outside 2..8"));
    }
    const SensitivityMetric* computing = nullptr;
    for (const auto& m : spec->metrics) {
      if (m->Describe().rfind(info.metric_plugin, 0) == 0) computing = m.get();
    }
    if (computing == nullptr) {
      a.Fail("objective", absl::StrCat("objective ", al.objective, " is computed by the metric '", info.metric_plugin,
                                       "', which analysis.metrics does not list"));
    } else {
      if (!computing->Covers(Target::kWeights)) {
        a.Fail("objective", absl::StrCat("the allocation needs ", al.objective, " with the weights target; ",
                                         computing->Describe(), " does not measure it"));
      }
      if (al.activation_bits.size() > 1 && !computing->Covers(Target::kActivations)) {
        a.Fail("activations",
               absl::StrCat("allocating activation bits needs ", al.objective, " with the activations target; ",
                            computing->Describe(), " does not measure it"));
      }
    }
    spec->allocate = std::move(al);
  }
  if (absl::Status s = r.status(); !s.ok()) return s;
  return spec;
}

YAML::Node QuantWithAllocation(const YAML::Node& quant, const std::vector<LayerAllocation>& allocation,
                               bool activations) {
  YAML::Node out = YAML::Clone(quant);
  YAML::Node overrides = out["overrides"];
  if (!overrides.IsSequence()) {
    overrides = YAML::Node(YAML::NodeType::Sequence);
  }
  for (const LayerAllocation& l : allocation) {
    YAML::Node o(YAML::NodeType::Map);
    o["match"] = EscapeRegex(l.layer);
    YAML::Node w(YAML::NodeType::Map);
    w["bits"] = l.weight_bits;
    o["weights"] = w;
    if (activations) {
      YAML::Node a(YAML::NodeType::Map);
      a["bits"] = l.activation_bits;
      o["activations"] = a;
    }
    overrides.push_back(o);
  }
  out["overrides"] = overrides;
  return out;
}

absl::StatusOr<AnalysisResult> RunAnalysis(AnalysisSpec& spec, const AnalysisInputs& in) {
  const auto start = std::chrono::steady_clock::now();
  AnalysisResult result;
  PrepareOptions po;
  po.bits = spec.bits;
  po.images = spec.images;
  po.calibration_images = spec.calibration_images;
  po.batch_size = spec.batch_size;
  po.seed = in.seed;
  po.log = in.log;
  po.name = in.name;
  for (const auto& pass : spec.passes) po.passes.push_back(pass.get());
  if (in.log != nullptr) {
    std::fprintf(in.log, "[%s] analysis: converting at %s bits ...\n", in.name.c_str(),
                 absl::StrJoin(spec.bits, "/").c_str());
  }
  ASSIGN_OR_RETURN(SensitivityContext ctx, PrepareSensitivity(*in.model, in.quant, in.file, *in.dataset, po));
  SensitivityTable& table = result.table;
  for (const ptq::WeightedLayer& w : ctx.net.weighted) table.layers.push_back(w.name);
  table.bits = spec.bits;
  for (auto& metric : spec.metrics) {
    if (absl::Status s = metric->Compute(ctx, &table); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("analysis metric ", metric->Describe(), ": ", s.message()));
    }
  }
  // Does the Hessian ranking agree with the measured one? Spearman's rho over the layers,
  // per bit width, of HAWQ's Omega and of the one-layer loss increase (weights).
  for (int b : spec.bits) {
    std::vector<double> omega, measured;
    for (const std::string& layer : table.layers) {
      const auto o = table.Find(layer, b, "weights", "hawq_omega");
      const auto m = table.Find(layer, b, "weights", "one_layer_loss_increase");
      if (!o.has_value() || !m.has_value()) break;
      omega.push_back(*o);
      measured.push_back(*m);
    }
    if (omega.size() != table.layers.size() || omega.size() < 3) continue;
    const double rho = SpearmanCorrelation(omega, measured);
    table.scalars[absl::StrCat("spearman_hawq_omega_vs_one_layer_", b)] = rho;
    table.notes.push_back(absl::StrFormat(
        "ranking at %d-bit weights: Spearman rho %.3f between hessian_trace's Omega and the one-layer loss increase "
        "over %zu layers",
        b, rho, omega.size()));
  }
  for (const std::string& n : table.notes) result.notes.push_back(n);

  if (spec.allocate.has_value()) {
    const AllocateSpec& al = *spec.allocate;
    const backends::QuantizedModel& uniform = ctx.at_bits.at(spec.bits[0]).integer_model;
    const int layers = static_cast<int>(ctx.net.weighted.size());
    std::vector<int64_t> values(layers), macs(layers);
    int64_t weights_at_first = 0;
    for (int k = 0; k < layers; ++k) {
      const ptq::WeightedLayer& w = ctx.net.weighted[k];
      values[k] = w.torch_weight.numel();
      const auto& shape = ctx.net.model.tensors(ctx.net.model.ops(w.index).outputs(0)).shape();
      macs[k] = values[k] * (shape.size() == 3 ? static_cast<int64_t>(shape[0]) * shape[1] : 1);
      weights_at_first += (values[k] * spec.bits[0] + 7) / 8;
    }
    AllocationProblem p;
    p.fixed_size_bytes = backends::PackedModelBytes(uniform) - weights_at_first;
    p.budget_kind = al.budget_kind;
    p.time_limit_seconds = al.time_limit_seconds;
    const int input_bits = in.quant["activations"].IsMap() && in.quant["activations"]["bits"].IsDefined()
                               ? in.quant["activations"]["bits"].as<int>()
                               : 8;
    const std::vector<int> act = al.activation_bits.empty() ? std::vector<int>{input_bits} : al.activation_bits;
    for (int k = 0; k < layers; ++k) {
      const std::string& name = ctx.net.weighted[k].name;
      p.layers.push_back(name);
      std::vector<AllocationChoice> choices;
      for (int wb : al.weight_bits) {
        for (int ab : act) {
          AllocationChoice c;
          c.weight_bits = wb;
          c.activation_bits = ab;
          std::optional<double> cw = table.Find(name, wb, "weights", al.objective);
          if (!cw.has_value()) {
            return absl::InternalError(
                absl::StrCat("allocation: no ", al.objective, " for ", name, " at ", wb, " bits"));
          }
          c.cost = *cw;
          if (al.activation_bits.size() > 1) {
            std::optional<double> ca = table.Find(name, ab, "activations", al.objective);
            if (!ca.has_value()) {
              return absl::InternalError(
                  absl::StrCat("allocation: no ", al.objective, " for ", name, "'s output at ", ab, " bits"));
            }
            c.cost += *ca;
          }
          c.size_bytes = (values[k] * wb + 7) / 8;
          c.bops = static_cast<double>(macs[k]) * wb * input_bits;
          choices.push_back(c);
        }
      }
      p.choices.push_back(std::move(choices));
    }
    if (al.budget_kind == AllocationProblem::Budget::kLatency) {
      // The per-layer table: each candidate's model (weights at wb, the rest as the quant
      // section says) timed on the backend; the layers' own medians, and the rest of the run.
      std::vector<double> fixed;
      std::map<int, std::vector<double>> op_time;
      std::vector<backends::QuantizedModel> models;
      for (int wb : al.weight_bits) {
        YAML::Node section = QuantSectionAtBits(in.quant, wb, /*activations=*/false);
        ParamReader reader(section, in.file, "quant");
        ASSIGN_OR_RETURN(std::unique_ptr<QuantConfig> config, QuantConfig::Read(reader));
        ASSIGN_OR_RETURN(ptq::StaticQuantizers q, ptq::MakeStaticQuantizers(ctx.net, *config));
        ASSIGN_OR_RETURN(backends::QuantizedModel m, ptq::QuantizeStatic(ctx.net, q, ctx.calibration.data(),
                                                                         ctx.calibration_images, spec.batch_size));
        models.push_back(std::move(m));
      }
      std::vector<const backends::QuantizedModel*> pointers;
      for (const backends::QuantizedModel& m : models) pointers.push_back(&m);
      ASSIGN_OR_RETURN(std::vector<LatencyProfile> profiles,
                       MeasureLatencies(pointers, al.latency_backend, ctx.nhwc.data(),
                                        std::min<int64_t>(ctx.images, 64), al.latency_repeats));
      for (size_t j = 0; j < al.weight_bits.size(); ++j) {
        const int wb = al.weight_bits[j];
        const LatencyProfile& prof = profiles[j];
        double layers_sum = 0;
        for (int k = 0; k < layers; ++k) {
          const double t = prof.op_seconds[ctx.net.weighted[k].index];
          op_time[wb].push_back(t);
          layers_sum += t;
          table.Add(ctx.net.weighted[k].name, wb, Target::kWeights, "latency_ms", 1e3 * t);
        }
        fixed.push_back(prof.total_seconds - layers_sum);
        table.scalars[absl::StrCat("latency_", al.latency_backend, "_uniform_", wb, "_ms")] = 1e3 * prof.total_seconds;
      }
      std::sort(fixed.begin(), fixed.end());
      p.fixed_latency_seconds = fixed[fixed.size() / 2];
      for (int k = 0; k < layers; ++k) {
        for (AllocationChoice& c : p.choices[k]) c.latency_seconds = op_time[c.weight_bits][k];
      }
      result.notes.push_back(absl::StrFormat(
          "latency table on %s: %zu candidate models x %d batch-1 runs taking turns (per-op medians); the rest of a "
          "run (input, "
          "ops without weights, output) %.4g ms",
          al.latency_backend, al.weight_bits.size(), al.latency_repeats, 1e3 * p.fixed_latency_seconds));
      if (al.latency_ms) p.budget = *al.latency_ms * 1e-3;
      if (al.latency_bits) {
        auto it = op_time.find(static_cast<int>(*al.latency_bits));
        if (it == op_time.end() || *al.latency_bits != static_cast<int>(*al.latency_bits)) {
          return absl::InvalidArgumentError(absl::StrCat("analysis.allocate.budget.latency_bits: ", *al.latency_bits,
                                                         " is not one of the weight candidates"));
        }
        p.budget = p.fixed_latency_seconds;
        for (double t : it->second) p.budget += t;
      }
    }
    if (al.size_bytes) p.budget = *al.size_bytes;
    if (al.size_bits) {
      p.budget = static_cast<double>(p.fixed_size_bytes);
      for (int k = 0; k < layers; ++k) p.budget += std::ceil(values[k] * *al.size_bits / 8.0);
    }
    if (al.bops) p.budget = *al.bops;
    if (al.bops_bits) {
      p.budget = 0;
      for (int k = 0; k < layers; ++k) p.budget += static_cast<double>(macs[k]) * *al.bops_bits * input_bits;
    }
    ASSIGN_OR_RETURN(result.solution, SolveAllocation(p));
    result.allocated = true;
    result.budget = p.budget;
    result.budget_unit = al.budget_kind == AllocationProblem::Budget::kSizeBytes ? "bytes"
                         : al.budget_kind == AllocationProblem::Budget::kBops    ? "BOPs"
                                                                                 : "seconds";
    result.predicted_size_bytes = result.solution.size_bytes;
    result.predicted_bops = result.solution.bops;
    result.predicted_latency_seconds = result.solution.latency_seconds;
    std::vector<std::string> chosen;
    for (int k = 0; k < layers; ++k) {
      const AllocationChoice& c = p.choices[k][result.solution.choice[k]];
      result.allocation.push_back(
          {p.layers[k], c.weight_bits, c.activation_bits, values[k], c.size_bytes, c.bops, c.cost});
      chosen.push_back(absl::StrCat(p.layers[k], " W", c.weight_bits,
                                    al.activation_bits.empty() ? "" : absl::StrCat("A", c.activation_bits)));
    }
    result.quant = QuantWithAllocation(in.quant, result.allocation, !al.activation_bits.empty());
    result.notes.push_back(absl::StrFormat(
        "allocation (%s, budget %.6g %s): %s; predicted packed size %lld bytes, %.4g BOPs%s, summed %s %.5g",
        result.solution.solver, p.budget, result.budget_unit, absl::StrJoin(chosen, ", "),
        static_cast<long long>(result.predicted_size_bytes), result.predicted_bops,
        al.budget_kind == AllocationProblem::Budget::kLatency
            ? absl::StrFormat(", %.4g ms on %s", 1e3 * result.predicted_latency_seconds, al.latency_backend)
            : std::string(),
        al.objective, result.solution.cost));
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace quant::analysis
