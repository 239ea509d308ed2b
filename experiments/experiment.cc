#include "experiments/experiment.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "experiments/record.h"
#include "quant/backends/backend.h"
#include "quant/core/atomic_file.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/core/suggest.h"
#include "quant/nn/checkpoint.h"
#include "quant/onnx/onnx_export.h"
#include "quant/ptq/numerical_debugger.h"
#include "quant/training/train_loop.h"

namespace quant {
namespace {

// The backends `evaluate.backends` runs when it lists none.
const std::vector<std::string>& DefaultBackends() {
  static const auto* names = new std::vector<std::string>{"reference", "fake_quant", "gemmlowp",
                                                          "xnnpack",   "xnnpack_f32", "xnnpack_f16"};
  return *names;
}

// "<file:line:col of key>: <message>" for errors found after the readers finished.
absl::Status At(const ParamReader& r, std::string_view key, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(r.Location(key), ": ", std::string(s.message())));
}

// A run directory's name must be one path component that means itself: no
// separator, not "." or "..", no control bytes, valid UTF-8, short enough for
// every file system (255 bytes, less the "-<config id>" suffix). "" if so.
std::string RunNameProblem(const std::string& name) {
  if (name.empty()) return "is empty";
  if (name.size() > 200) return absl::StrCat("is ", name.size(), " bytes long; at most 200 are allowed");
  if (name == "." || name == "..") return "is '.' or '..', which would name another directory";
  for (size_t i = 0; i < name.size();) {
    const unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == '/' || c == '\\') return "contains a path separator ('/' or '\\'); it must be one directory name";
    if (c < 0x20 || c == 0x7f) return absl::StrCat("contains the control byte 0x", absl::Hex(c, absl::kZeroPad2));
    // UTF-8: the lead byte says how many continuation bytes (10xxxxxx) follow.
    const int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xe ? 2 : (c >> 3) == 0x1e ? 3 : -1;
    if (extra < 0) return "is not valid UTF-8";
    for (int k = 1; k <= extra; ++k) {
      if (i + k >= name.size() || (static_cast<unsigned char>(name[i + k]) >> 6) != 0x2) return "is not valid UTF-8";
    }
    i += 1 + extra;
  }
  return "";
}

}  // namespace

absl::StatusOr<ExperimentPlan> Validate(ExperimentSpec spec, const RunOptions& options) {
  ExperimentPlan plan;
  {
    // The checkpoints of init_from keys: the output dir must be known to find them.
    std::string output_dir = options.output_dir;
    const YAML::Node dir = spec.root["output"].IsMap() ? spec.root["output"]["dir"] : YAML::Node();
    if (output_dir.empty()) output_dir = dir.IsScalar() && !dir.Scalar().empty() ? dir.Scalar() : "runs";
    RETURN_IF_ERROR(ResolveCheckpoints(spec, output_dir));
  }
  ParamReader root(spec.root, spec.source_file, "", spec.origins);
  plan.name = root.RequiredString("name", "experiment name (also names its run directory)");
  root.String("description", "", "free text, kept in the resolved config");
  plan.seed = static_cast<uint64_t>(
      root.IntInRange("seed", 0, 0, INT64_MAX, "seed of every random choice in the run"));
  ParamReader& dataset = root.Map("dataset", "the data: {name: fashion_mnist|synthetic, ...}");
  auto ds = Registry<Dataset>::Get().CreateFrom(dataset, "name", "fashion_mnist", "which dataset");
  if (ds.ok()) {
    plan.dataset = std::move(ds).value();
    plan.dataset_name = dataset.String("name", "fashion_mnist", "which dataset");
  }
  ParamReader& model = root.Map("model", "the network: {name: mlp|cnn|cnn_bn|sequential, ...}");
  absl::StatusOr<std::unique_ptr<nn::Model>> built_model = std::unique_ptr<nn::Model>();
  if (root.Has("model")) {
    built_model = nn::CreateModel(model);
  }
  ParamReader& train = root.Map("train", "training: {scheme, epochs, batch_size, optimizer, ...}");
  absl::StatusOr<std::unique_ptr<TrainingScheme>> scheme = std::unique_ptr<TrainingScheme>();
  if (root.Has("train")) {
    scheme = Registry<TrainingScheme>::Get().CreateFrom(train, "scheme", "fp32", "training scheme");
    plan.train_scheme_name = train.String("scheme", "fp32", "training scheme");
    if (!root.Has("model")) train.FailHere("training needs a model: add a `model:` section");
  }
  absl::StatusOr<std::unique_ptr<QuantConfig>> quant = std::unique_ptr<QuantConfig>();
  if (root.Has("quant")) {
    quant = QuantConfig::Read(
        root.Map("quant", "quantization specs for weights and activations, per-layer overrides"));
    if (!quant.ok()) return quant.status();
  } else {
    root.Node("quant", "quantization specs for weights and activations, per-layer overrides");
  }
  ParamReader& ptq_reader =
      root.Map("ptq", "post-training quantization: {method: static|dynamic|weight_only, calibration_batches, ...}");
  absl::StatusOr<std::unique_ptr<ptq::PtqMethod>> ptq_method = std::unique_ptr<ptq::PtqMethod>();
  if (root.Has("ptq")) {
    plan.ptq_init_from = ptq_reader.String(
        "init_from", "", "float checkpoint (model.pb) to quantize when the config has no train: section");
    ptq_method = Registry<ptq::PtqMethod>::Get().CreateFrom(ptq_reader, "method", "static", "PTQ method");
    plan.ptq_method_name = ptq_reader.String("method", "static", "PTQ method");
  }
  ParamReader& evaluate = root.Map("evaluate", "evaluation of the integer model: {backends: [...]}");
  if (root.Has("evaluate")) {
    plan.eval_backends = evaluate.StringList("backends", DefaultBackends(),
                                             "backends that run the integer model over the test set");
    plan.eval_options.batch1_images = evaluate.IntInRange(
        "batch1_images", 500, 1, 1000000, "images timed one at a time (images/s at batch 1)");
    plan.eval_options.batch256_repeats = evaluate.IntInRange(
        "batch256_repeats", 1, 1, 100, "passes over the test set timed at batch 256");
    plan.eval_debug = evaluate.Bool(
        "debug", false, "per-tensor numerical debugger: float vs integer SQNR, clipping and saturation of every "
                        "tensor, every backend vs reference per op (64 test images)");
    plan.export_onnx =
        evaluate.Bool("export_onnx", false,
                      "write the integer model as ONNX QDQ (model.qdq.onnx) and QOperator (model.qop.onnx), both "
                      "checked by onnx::checker, and its encodings (encodings.json) into the run directory");
    if (!evaluate.describing()) {
      for (const std::string& b : plan.eval_backends) {
        if (!Registry<backends::Backend>::Get().Contains(b)) {
          evaluate.Fail("backends", absl::StrCat("unknown backend '", b, "'",
                                                 DidYouMean(b, Registry<backends::Backend>::Get().Names()),
                                                 "; registered: ",
                                                 absl::StrJoin(Registry<backends::Backend>::Get().Names(), ", ")));
        }
      }
      if (plan.eval_backends.empty()) evaluate.Fail("backends", "lists no backend");
    }
  }
  ParamReader& analysis_reader = root.Map(
      "analysis", "per-layer sensitivity and mixed-precision bit allocation: {bits, metrics, images, allocate}");
  absl::StatusOr<std::unique_ptr<analysis::AnalysisSpec>> analysis_spec = std::unique_ptr<analysis::AnalysisSpec>();
  if (root.Has("analysis")) analysis_spec = analysis::ReadAnalysis(analysis_reader);
  ParamReader& output = root.Map("output", "where results go: {dir: runs}");
  plan.output_dir = output.String("dir", "runs", "results directory (relative to the working dir)");
  RETURN_IF_ERROR(root.Finish());
  if (!ds.ok()) return ds.status();
  if (!built_model.ok()) return built_model.status();
  if (!scheme.ok()) return scheme.status();
  if (!ptq_method.ok()) return ptq_method.status();
  if (!analysis_spec.ok()) return analysis_spec.status();
  plan.analysis = std::move(analysis_spec).value();
  plan.ptq = std::move(ptq_method).value();
  plan.quant = std::move(quant).value();
  plan.model = std::move(built_model).value();
  plan.scheme = std::move(scheme).value();
  if (plan.model != nullptr) {
    // Built now (cheap for these networks) so that layers whose shapes do not
    // chain are reported before anything runs, and --validate shows the net.
    absl::Status s = plan.model->Build(plan.dataset->sample_shape(), plan.dataset->num_classes(),
                                       plan.seed);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(model.Location(model.Has("layers") ? "layers" : (model.Has("nodes") ? "nodes" : "name")),
                       ": ", std::string(s.message())));
    }
    for (const std::string& w : plan.model->warnings()) plan.warnings.push_back(w);
  }

  if (plan.quant != nullptr) {
    std::vector<std::string> layers;
    if (plan.model != nullptr) {
      for (int i = 0; i < plan.model->num_layers(); ++i) layers.push_back(plan.model->layer(i).name());
      for (std::string& w : plan.quant->UnmatchedOverrides(layers)) plan.warnings.push_back(std::move(w));
    }
  }
  if (plan.scheme != nullptr && plan.scheme->uses_quant_config() && plan.quant == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        root.Location("train"), ": train.scheme '", plan.train_scheme_name,
        "' quantizes while training and needs a `quant:` section (weights/activations specs)"));
  }
  if (plan.ptq != nullptr) {
    if (plan.model == nullptr) return At(root, "ptq", absl::InvalidArgumentError("PTQ needs a `model:` section"));
    if (plan.quant == nullptr) {
      return At(root, "ptq", absl::InvalidArgumentError(
                                 "PTQ needs a `quant:` section (weights/activations specs)"));
    }
    if (plan.scheme != nullptr && !plan.ptq_init_from.empty()) {
      return At(ptq_reader, "init_from", absl::InvalidArgumentError(
                                             "ptq.init_from is for configs without training; with a train: "
                                             "section use train.init_from"));
    }
    if (plan.ptq->needs_qat_training() && (plan.scheme == nullptr || plan.train_scheme_name != "qat")) {
      return At(ptq_reader, "method", absl::InvalidArgumentError(absl::StrCat(
                                          "ptq method '", plan.ptq_method_name,
                                          "' converts the quantizers a QAT training leaves on the model; it needs "
                                          "train.scheme: qat in the same config (a checkpoint does not hold the "
                                          "observers' ranges), not ",
                                          plan.scheme == nullptr ? "no train: section"
                                                                 : "train.scheme: " + plan.train_scheme_name)));
    }
    if (absl::Status s = plan.ptq->Check(*plan.model, *plan.quant); !s.ok()) return At(root, "ptq", s);
  }
  if (plan.analysis != nullptr) {
    if (plan.model == nullptr || plan.quant == nullptr) {
      return At(root, "analysis",
                absl::InvalidArgumentError(
                    "analysis needs a `model:` and a `quant:` section (the specs whose bits it varies)"));
    }
    if (plan.scheme != nullptr && !plan.scheme->trains_float32_model()) {
      const YAML::Node init = spec.root["train"]["init_from"];
      if (!init.IsDefined() || !init.IsScalar() || init.as<std::string>().empty()) {
        return At(root, "analysis",
                  absl::InvalidArgumentError(
                      absl::StrCat("with train.scheme '", plan.train_scheme_name,
                                   "' the analysis runs before training on a trained float model: give "
                                   "train.init_from (a float checkpoint)")));
      }
      plan.analysis_before_training = true;
      plan.analysis_checkpoint = init.as<std::string>();
    }
    if (plan.analysis->allocate.has_value() && plan.analysis->allocate->apply && plan.ptq == nullptr &&
        !plan.analysis_before_training) {
      plan.not_available.push_back(
          "analysis.allocate.apply: this config has no ptq: section and no quantizing train.scheme to apply the "
          "allocation to; the allocated config is still written");
    }
    if (plan.scheme == nullptr && plan.ptq_init_from.empty()) {
      return At(
          root, "analysis",
          absl::InvalidArgumentError("analysis needs a trained float model: a train: section, or ptq.init_from (a "
                                     "float checkpoint)"));
    }
    // The specs at every candidate bit width must convert: rejected now, before any work.
    auto net = ptq::ExtractFloatNet(*plan.model);
    if (!net.ok()) return At(root, "analysis", net.status());
    for (int b : plan.analysis->bits) {
      ParamReader reader(analysis::QuantSectionAtBits(spec.root["quant"], b), spec.source_file, "quant");
      auto config = QuantConfig::Read(reader);
      if (!config.ok()) return At(root, "analysis", config.status());
      if (absl::Status s = ptq::MakeStaticQuantizers(*net, **config).status(); !s.ok()) {
        return At(analysis_reader, "bits", absl::Status(s.code(), absl::StrCat("at ", b, " bits: ", s.message())));
      }
    }
  }
  if (!plan.eval_backends.empty()) {
    if (plan.ptq == nullptr || !plan.ptq->produces_integer_model()) {
      return At(root, "evaluate", absl::InvalidArgumentError(
                                      "evaluate runs the integer model of `ptq: {method: static}`; add that "
                                      "section (dynamic and weight_only PTQ report their own accuracy)"));
    }
    // Every selected backend must run every layer with the configured specs: rejected now, before any work.
    auto net = ptq::ExtractFloatNet(*plan.model);
    if (!net.ok()) return At(root, "model", net.status());
    // from_qat's grids are known only after training: its op kinds are checked now, its grids at Prepare.
    const QuantConfig* specs = plan.ptq->needs_qat_training() ? nullptr : plan.quant.get();
    if (absl::Status s = ptq::ValidateBackendsFor(*net, specs, plan.eval_backends); !s.ok()) {
      return At(evaluate, "backends", s);
    }
  }
  const bool quant_used =
      (plan.scheme != nullptr && plan.scheme->uses_quant_config()) || plan.ptq != nullptr;
  if (plan.quant != nullptr && !quant_used) {
    // No step of this run consumes the specs: say so rather than ignore them.
    plan.not_available.push_back(
        "quant: the specs were checked, but no step of this config uses them (add a `ptq:` section "
        "or a quantizing train.scheme)");
  }
  if (!options.output_dir.empty()) plan.output_dir = options.output_dir;
  // Everything a run writes goes below the output dir, in <name>-<config id>/ and the <name> link.
  if (const std::string problem = RunNameProblem(spec.name); !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        root.Location("name"), ": the run name '", absl::CHexEscape(spec.name), "' ", problem,
        " (it names the run directory inside the output dir)"));
  }
  if (plan.output_dir.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.output_dir.empty() ? output.Location("dir") : "--output_dir",
        ": the output dir is empty; give a directory (e.g. runs)"));
  }
  {
    std::error_code ec;
    const std::filesystem::path resolved = std::filesystem::weakly_canonical(plan.output_dir, ec);
    if (!ec && resolved == resolved.root_path()) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.output_dir.empty() ? output.Location("dir") : "--output_dir", ": the output dir '",
          plan.output_dir, "' is the file system root; give a directory of its own (e.g. runs)"));
    }
  }
  plan.threads = options.threads;
  plan.run_dir = absl::StrCat(plan.output_dir, "/", spec.name, "-", spec.config_id);
  plan.steps.push_back(absl::StrCat("load dataset ", plan.dataset_name));
  if (plan.model != nullptr) {
    plan.steps.push_back(absl::StrCat("build model ", plan.model->name(), " (",
                                      plan.model->NumParameters(), " parameters)"));
  }
  if (plan.analysis != nullptr && plan.analysis_before_training) {
    plan.steps.push_back("load " + plan.analysis_checkpoint + " and analyse it: " + plan.analysis->Describe());
    if (plan.analysis->allocate.has_value()) {
      plan.steps.push_back("write the allocated config mixed_precision.yaml and sensitivity.md to the run directory");
    }
  }
  if (plan.scheme != nullptr) plan.steps.push_back("train: " + plan.scheme->Describe());
  if (plan.model != nullptr) {
    plan.steps.push_back(plan.scheme != nullptr ? "evaluate the trained float model on the test set"
                                                : "evaluate the untrained float model on the test set");
  }
  if (plan.ptq != nullptr && !plan.ptq_init_from.empty()) {
    plan.steps.push_back("load the float checkpoint " + plan.ptq_init_from);
  }
  if (plan.analysis != nullptr && !plan.analysis_before_training) {
    plan.steps.push_back("analysis: " + plan.analysis->Describe());
    if (plan.analysis->allocate.has_value()) {
      plan.steps.push_back("write the allocated config mixed_precision.yaml and sensitivity.md to the run directory");
    }
  }
  if (plan.ptq != nullptr) {
    plan.steps.push_back("ptq: " + plan.ptq->Describe());
  }
  if (!plan.eval_backends.empty()) {
    if (plan.eval_debug) {
      plan.steps.push_back(
          "numerical debugger on 64 test images: every tensor's float vs integer SQNR, clipped and saturated "
          "fractions, scale and zero point; every integer backend vs reference per op; the first divergence");
    }
    plan.steps.push_back(absl::StrCat("evaluate the integer model on backends: ",
                                      absl::StrJoin(plan.eval_backends, ", ")));
  }
  plan.steps.push_back(absl::StrCat("write config.yaml and the result record to ", plan.run_dir));
  plan.spec = std::move(spec);
  return plan;
}

std::string DescribePlan(const ExperimentPlan& plan) {
  std::string out = absl::StrCat("experiment ", plan.spec.name, " (id ", plan.spec.config_id,
                                 ", seed ", plan.seed, ", from ", plan.spec.source_file, ")\n");
  for (const std::string& o : plan.spec.overrides) absl::StrAppend(&out, "  override: ", o, "\n");
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    absl::StrAppend(&out, "  step ", i + 1, ": ", plan.steps[i], "\n");
  }
  for (const std::string& n : plan.not_available) absl::StrAppend(&out, "  not run: ", n, "\n");
  for (const std::string& w : plan.warnings) absl::StrAppend(&out, "  warning: ", w, "\n");
  if (plan.model != nullptr) absl::StrAppend(&out, plan.model->Summary());
  return out;
}

namespace {

// The per-tensor numerical debugger on the first 64 test images: table on the terminal and in the record.
absl::Status RunDebugger(const ExperimentPlan& plan, const ptq::PtqResult& r,
                         const std::vector<ptq::BackendEvaluation>& evals, quantlab::ResultRecord* record) {
  const char* name = plan.spec.name.c_str();
  const auto start = std::chrono::steady_clock::now();
  if (r.float_model.ops_size() == 0) {
    return absl::FailedPreconditionError(absl::StrCat("evaluate.debug: ptq method '", r.method,
                                                      "' gives no float net to compare with"));
  }
  const DataSplit& test = plan.dataset->test();
  const int64_t n = std::min<int64_t>(64, test.size());
  const std::vector<float> x = test.Nhwc(0, n);
  ASSIGN_OR_RETURN(std::vector<ptq::TensorDebug> tensors, ptq::CompareWithFloat(r.float_model, r.model, x.data(), n));
  for (const ptq::TensorDebug& t : tensors) {
    quantlab::TensorDebug* d = record->add_debug_tensors();
    d->set_tensor(t.name);
    d->set_op(t.op);
    d->set_kind(t.kind);
    d->set_scale(t.scale);
    d->set_zero_point(t.zero_point);
    d->set_quant_min(t.quant_min);
    d->set_quant_max(t.quant_max);
    d->set_values(t.values);
    d->set_sqnr_db(t.sqnr_db);
    d->set_clipped(t.clipped);
    d->set_saturated(t.saturated);
    d->set_histogram_min(t.histogram_min);
    d->set_histogram_max(t.histogram_max);
    for (int64_t c : t.histogram) d->add_histogram(c);
  }
  const std::string summary = ptq::DebugSummary(tensors, evals);
  record->set_debug_summary(summary);
  std::fprintf(stderr, "[%s] numerical debugger (%lld test images; float vs reference; backends vs reference):\n",
               name, static_cast<long long>(n));
  for (const std::string& line : ptq::DebugTable(tensors, evals)) std::fprintf(stderr, "[%s]   %s\n", name, line.c_str());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (*record->mutable_metrics())["debugger_seconds"] = seconds;
  std::fprintf(stderr, "[%s] debugger: %s (%.2f s)\n", name, summary.c_str(), seconds);
  return absl::OkStatus();
}

// The analysis: section on the float model: the sensitivity table into the record and
// sensitivity.md, the allocation into the record and mixed_precision.yaml; with
// allocate.apply, the rest of the run quantizes with the allocated specs.
absl::Status RunAnalysisStep(ExperimentPlan& plan, quantlab::ResultRecord* record) {
  const char* name = plan.spec.name.c_str();
  analysis::AnalysisInputs in;
  in.model = plan.model.get();
  in.quant = plan.spec.root["quant"];
  in.file = plan.spec.source_file;
  in.dataset = plan.dataset.get();
  in.seed = plan.seed;
  in.log = stderr;
  in.name = plan.spec.name;
  std::fprintf(stderr, "[%s] analysis: %s\n", name, plan.analysis->Describe().c_str());
  ASSIGN_OR_RETURN(analysis::AnalysisResult r, analysis::RunAnalysis(*plan.analysis, in));
  plan.model->set_training(false);
  auto& metrics = *record->mutable_metrics();
  metrics["analysis_seconds"] = r.seconds;
  for (const auto& [key, value] : r.table.scalars) metrics["analysis_" + key] = value;
  for (const analysis::SensitivityEntry& e : r.table.entries) {
    quantlab::SensitivityEntry* out = record->add_sensitivity();
    out->set_layer(e.layer);
    out->set_bits(e.bits);
    out->set_target(e.target);
    out->set_metric(e.metric);
    out->set_value(e.value);
  }
  for (const std::string& n : r.notes) {
    record->add_analysis_notes(n);
    std::fprintf(stderr, "[%s] analysis: %s\n", name, n.c_str());
  }
  std::string md = absl::StrCat("# Sensitivity of ", plan.spec.name, "\n\n", r.table.Markdown());
  if (r.allocated) {
    metrics["mp_budget"] = r.budget;
    metrics["mp_predicted_size_bytes"] = static_cast<double>(r.predicted_size_bytes);
    metrics["mp_predicted_bops"] = r.predicted_bops;
    if (r.budget_unit == "seconds") {
      metrics["mp_budget_latency_ms"] = 1e3 * r.budget;
      metrics["mp_predicted_latency_ms"] = 1e3 * r.predicted_latency_seconds;
    }
    metrics["mp_objective_sum"] = r.solution.cost;
    absl::StrAppend(&md, "\n## Allocation (budget ", absl::StrFormat("%.0f", r.budget), " ", r.budget_unit,
                    ")\n\n| layer | weight bits | activation bits | weights | packed bytes | BOPs | cost |\n"
                    "|---|---:|---:|---:|---:|---:|---:|\n");
    for (const analysis::LayerAllocation& l : r.allocation) {
      quantlab::LayerAllocation* a = record->add_allocation();
      a->set_layer(l.layer);
      a->set_weight_bits(l.weight_bits);
      a->set_activation_bits(l.activation_bits);
      a->set_weights(l.weights);
      a->set_size_bytes(l.size_bytes);
      a->set_bops(l.bops);
      a->set_cost(l.cost);
      absl::StrAppend(&md, "| ", l.layer, " | ", l.weight_bits, " | ", l.activation_bits, " | ", l.weights, " | ",
                      l.size_bytes, " | ", absl::StrFormat("%.4g", l.bops), " | ", absl::StrFormat("%.4g", l.cost),
                      " |\n");
    }
    absl::StrAppend(&md, "\npredicted packed size ", r.predicted_size_bytes, " bytes, ",
                    absl::StrFormat("%.4g", r.predicted_bops), " BOPs\n");
    // The allocated experiment, ready to run: this config without its analysis, the
    // chosen bits as quant.overrides.
    YAML::Node emitted = YAML::Clone(plan.spec.root);
    emitted.remove("analysis");
    emitted["name"] = plan.spec.name + "_mp";
    emitted["quant"] = r.quant;
    RETURN_IF_ERROR(WriteFileAtomically(
        plan.run_dir + "/mixed_precision.yaml",
        absl::StrCat("# The mixed-precision allocation of ", plan.spec.name, " (", plan.spec.source_file,
                     "): predicted packed size ", r.predicted_size_bytes, " bytes, ",
                     absl::StrFormat("%.6g", r.predicted_bops), " BOPs.\n", EmitYaml(emitted))));
    if (plan.analysis->allocate->apply) {
      ParamReader reader(r.quant, plan.run_dir + "/mixed_precision.yaml", "quant");
      ASSIGN_OR_RETURN(plan.quant, QuantConfig::Read(reader));
      RETURN_IF_ERROR(reader.Finish());
      std::fprintf(stderr, "[%s] analysis: this run now quantizes with the allocation (%s)\n", name,
                   (plan.run_dir + "/mixed_precision.yaml").c_str());
    }
  }
  RETURN_IF_ERROR(WriteFileAtomically(plan.run_dir + "/sensitivity.md", md));
  return absl::OkStatus();
}

// PTQ after training, then the selected backends over the test set; fills the record.
absl::Status RunPtqAndEvaluate(ExperimentPlan& plan, quantlab::ResultRecord* record) {
  const char* name = plan.spec.name.c_str();
  plan.model->set_training(false);
  ptq::PtqContext ctx;
  ctx.model = plan.model.get();
  ctx.quant = plan.quant.get();
  ctx.dataset = plan.dataset.get();
  ctx.seed = plan.seed;
  ctx.name = plan.spec.name;
  std::fprintf(stderr, "[%s] ptq: %s ...\n", name, plan.ptq->Describe().c_str());
  ASSIGN_OR_RETURN(ptq::PtqResult r, plan.ptq->Apply(ctx));
  auto& metrics = *record->mutable_metrics();
  metrics["ptq_float_test_accuracy"] = r.float_test_accuracy;
  metrics["ptq_test_accuracy"] = r.test_accuracy;
  metrics["ptq_accuracy_drop_points"] = 100.0 * (r.float_test_accuracy - r.test_accuracy);
  metrics["ptq_model_bytes"] = static_cast<double>(r.model_bytes);
  if (r.has_integer_model) {
    const int64_t packed = backends::PackedModelBytes(r.model);
    metrics["ptq_packed_model_bytes"] = static_cast<double>(packed);
    if (metrics.count("mp_predicted_size_bytes") && plan.analysis->allocate->apply) {
      const int64_t predicted = static_cast<int64_t>(metrics["mp_predicted_size_bytes"]);
      std::fprintf(stderr, "[%s] mixed precision: packed size %lld bytes, predicted %lld (%s)\n", name,
                   static_cast<long long>(packed), static_cast<long long>(predicted),
                   packed == predicted ? "exact" : "DIFFERENT");
      if (packed != predicted) {
        return absl::InternalError(absl::StrCat("the allocated model's packed size ", packed,
                                                " bytes differs from the predicted ", predicted));
      }
      if (metrics.count("mp_predicted_latency_ms")) {
        // The allocated model timed as the table was: batch 1 on the table's backend.
        const analysis::AllocateSpec& al = *plan.analysis->allocate;
        const DataSplit& test = plan.dataset->test();
        const int64_t n = std::min<int64_t>(64, test.size());
        const std::vector<float> x = test.Nhwc(0, n);
        ASSIGN_OR_RETURN(analysis::LatencyProfile lat,
                         analysis::MeasureLatency(r.model, al.latency_backend, x.data(), n, al.latency_repeats));
        metrics["mp_measured_latency_ms"] = 1e3 * lat.total_seconds;
        const double budget = metrics["mp_budget_latency_ms"];
        metrics["mp_measured_latency_over_budget"] = 1e3 * lat.total_seconds / budget;
        std::fprintf(stderr,
                     "[%s] mixed precision: batch-1 latency on %s %.4g ms measured, %.4g ms predicted, budget %.4g "
                     "ms (measured / budget %.3f)\n",
                     name, al.latency_backend.c_str(), 1e3 * lat.total_seconds, metrics["mp_predicted_latency_ms"],
                     budget, 1e3 * lat.total_seconds / budget);
      }
    }
  }
  for (const std::string& n : r.notes) record->add_ptq_notes(n);
  std::fprintf(stderr, "[%s] ptq %s: float %.4f -> %s %.4f (%lld bytes)\n", name, r.method.c_str(),
               r.float_test_accuracy, r.simulated_predictions.empty() ? "simulated" : "QAT-simulated",
               r.test_accuracy, static_cast<long long>(r.model_bytes));
  if (!r.has_integer_model) return absl::OkStatus();
  RETURN_IF_ERROR(backends::SaveQuantizedModel(r.model, plan.run_dir + "/model.qlq"));
  if (plan.export_onnx) {
    // Both forms are written and read back: the same integer model, or the run fails.
    int nodes[2] = {0, 0};
    int64_t opset = 0;
    for (bool qoperator : {false, true}) {
      const std::string form = qoperator ? "QOperator" : "QDQ";
      const std::string path = plan.run_dir + (qoperator ? "/model.qop.onnx" : "/model.qdq.onnx");
      absl::StatusOr<onnx::ModelProto> e = qoperator ? onnx_io::ExportQOperator(r.model) : onnx_io::ExportQdq(r.model);
      if (!e.ok())
        return absl::Status(e.status().code(),
                            absl::StrCat("evaluate.export_onnx: ", form, ": ", e.status().message()));
      RETURN_IF_ERROR(onnx_io::WriteModelFile(*e, path));
      absl::StatusOr<backends::QuantizedModel> back = onnx_io::ImportQuantized(*e, path);
      if (!back.ok())
        return absl::Status(back.status().code(), absl::StrCat("evaluate.export_onnx: reading the ", form,
                                                               " export back: ", back.status().message()));
      if (std::string diff; !onnx_io::SameIntegerModel(r.model, *back, &diff)) {
        return absl::InternalError(absl::StrCat("evaluate.export_onnx: the ", form,
                                                " export reads back to a different integer model:\n", diff));
      }
      nodes[qoperator] = e->graph().node_size();
      opset = std::max<int64_t>(opset, e->opset_import(0).version());
    }
    RETURN_IF_ERROR(WriteFileAtomically(plan.run_dir + "/encodings.json", onnx_io::EncodingsJson(r.model)));
    std::fprintf(stderr,
                 "[%s] exported %s/model.qdq.onnx (ONNX QDQ, opset %lld, %d nodes), model.qop.onnx (QOperator, %d "
                 "nodes) and encodings.json; both ONNX files read back to the same integer model\n",
                 name, plan.run_dir.c_str(), static_cast<long long>(opset), nodes[0], nodes[1]);
  }
  if (plan.eval_backends.empty()) return absl::OkStatus();
  // The float model's training-batch buffers are not needed while the backends run (the
  // quickstart's peak RSS was the cnn's ~50 MiB of them next to the evaluation).
  if (plan.model != nullptr) plan.model->ReleaseBuffers();
  // A backend this machine cannot run (a missing CPU feature) is said in the record and
  // on the terminal, and the others are evaluated.
  std::vector<std::string> runnable;
  for (const std::string& b : plan.eval_backends) {
    ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> backend, backends::CreateBackend(b));
    const absl::Status here = backend->CanRunHere();
    if (here.ok()) {
      runnable.push_back(b);
      continue;
    }
    record->add_not_available(absl::StrCat("evaluate on ", b, ": ", here.message()));
    std::fprintf(stderr, "[%s] not evaluated on this machine: %s\n", name, std::string(here.message()).c_str());
  }
  if (runnable.empty()) return absl::OkStatus();
  std::fprintf(stderr, "[%s] evaluating on %s ...\n", name, absl::StrJoin(runnable, ", ").c_str());
  const auto eval_start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(
      std::vector<ptq::BackendEvaluation> evals,
      ptq::EvaluateBackends(r.model, plan.dataset->test(), plan.dataset->sample_shape(), runnable, plan.eval_options));
  metrics["evaluate_seconds"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
  const ptq::BackendEvaluation* f32 = nullptr;
  for (const ptq::BackendEvaluation& e : evals) {
    if (e.backend == "xnnpack_f32") f32 = &e;
  }
  if (!r.simulated_predictions.empty()) metrics["qat_simulated_test_accuracy"] = r.test_accuracy;
  if (plan.eval_debug) RETURN_IF_ERROR(RunDebugger(plan, r, evals, record));
  for (const ptq::BackendEvaluation& e : evals) {
    quantlab::BackendMetrics* m = record->add_backends();
    m->set_backend(e.backend);
    m->set_test_accuracy(e.test_accuracy);
    m->set_images_per_s_batch1(e.images_per_s_batch1);
    m->set_images_per_s_batch256(e.images_per_s_batch256);
    m->set_model_size_bytes(e.model_size_bytes);
    quantlab::Agreement* a = m->mutable_agreement_with_reference();
    a->set_outputs_compared(e.agreement.compared);
    a->set_outputs_identical(e.agreement.identical);
    a->set_outputs_off_by_one(e.agreement.off_by_one);
    a->set_outputs_larger(e.agreement.larger);
    a->set_max_abs_steps(e.agreement.max_abs_steps);
    a->set_top1_agreement(e.agreement.top1_agreement);
    for (const ptq::OpAgreement& o : e.per_op) {
      quantlab::OpAgreement* po = m->add_per_op();
      po->set_op(o.op);
      po->set_kind(o.kind);
      po->mutable_agreement()->set_outputs_compared(o.counts.compared);
      po->mutable_agreement()->set_outputs_identical(o.counts.identical);
      po->mutable_agreement()->set_outputs_off_by_one(o.counts.off_by_one);
      po->mutable_agreement()->set_outputs_larger(o.counts.larger);
      po->mutable_agreement()->set_max_abs_steps(o.counts.max_abs_steps);
      po->mutable_alone()->set_outputs_compared(o.alone.compared);
      po->mutable_alone()->set_outputs_identical(o.alone.identical);
      po->mutable_alone()->set_outputs_off_by_one(o.alone.off_by_one);
      po->mutable_alone()->set_outputs_larger(o.alone.larger);
      po->mutable_alone()->set_max_abs_steps(o.alone.max_abs_steps);
    }
    if (!r.simulated_predictions.empty() && e.predictions.size() == r.simulated_predictions.size()) {
      // The deployed model against the QAT simulation it came from, image by image.
      int64_t same = 0;
      for (size_t i = 0; i < e.predictions.size(); ++i) same += e.predictions[i] == r.simulated_predictions[i];
      const double agree = static_cast<double>(same) / static_cast<double>(e.predictions.size());
      m->set_prediction_agreement_with_simulation(agree);
      std::fprintf(stderr,
                   "[%s] %-12s deployed %.4f vs QAT-simulated %.4f (%+.2f points); same top-1 as the simulation on "
                   "%.2f %% of %zu test images\n",
                   name, e.backend.c_str(), e.test_accuracy, r.test_accuracy, 100.0 * (e.test_accuracy - r.test_accuracy),
                   100.0 * agree, e.predictions.size());
    }
    if (f32 != nullptr && f32->images_per_s_batch1 > 0 && f32->images_per_s_batch256 > 0) {
      (*m->mutable_extra())["speedup_vs_xnnpack_f32_batch1"] = e.images_per_s_batch1 / f32->images_per_s_batch1;
      (*m->mutable_extra())["speedup_vs_xnnpack_f32_batch256"] =
          e.images_per_s_batch256 / f32->images_per_s_batch256;
    }
    std::fprintf(stderr,
                 "[%s] %-12s acc %.4f  top-1 agree %.4f  identical %lld/%lld  off-by-1 %lld  larger %lld  "
                 "img/s b1 %.0f b256 %.0f  %lld bytes\n",
                 name, e.backend.c_str(), e.test_accuracy, e.agreement.top1_agreement,
                 static_cast<long long>(e.agreement.identical), static_cast<long long>(e.agreement.compared),
                 static_cast<long long>(e.agreement.off_by_one), static_cast<long long>(e.agreement.larger),
                 e.images_per_s_batch1, e.images_per_s_batch256, static_cast<long long>(e.model_size_bytes));
    if (!e.per_op.empty() && e.backend != "reference") {
      int exact = 0, alone_ops = 0, worst = -1;
      for (size_t k = 0; k < e.per_op.size(); ++k) {
        const ptq::AgreementCounts& c = e.per_op[k].alone;
        if (c.compared == 0) continue;
        ++alone_ops;
        exact += c.identical == c.compared;
        if (worst < 0 || c.max_abs_steps > e.per_op[worst].alone.max_abs_steps) worst = static_cast<int>(k);
      }
      if (alone_ops > 0) {
        const ptq::OpAgreement& w = e.per_op[worst];
        std::fprintf(stderr,
                     "[%s] %-12s each op alone on the reference's inputs: %d of %d ops identical, at most %lld "
                     "step(s) (op '%s', %s: %lld of %lld outputs differ)\n",
                     name, e.backend.c_str(), exact, alone_ops, static_cast<long long>(w.alone.max_abs_steps),
                     w.op.c_str(), w.kind.c_str(), static_cast<long long>(w.alone.compared - w.alone.identical),
                     static_cast<long long>(w.alone.compared));
      }
    }
    if (e.first_departure >= 0) {
      const ptq::OpAgreement& o = e.per_op[e.first_departure];
      std::fprintf(stderr, "[%s] %-12s first departs from reference at op '%s' (%s): %lld of %lld outputs differ\n",
                   name, e.backend.c_str(), o.op.c_str(), o.kind.c_str(),
                   static_cast<long long>(o.counts.compared - o.counts.identical),
                   static_cast<long long>(o.counts.compared));
    }
  }
  return absl::OkStatus();
}

}  // namespace

quantlab::ResultRecord Run(ExperimentPlan& plan) {
  const auto start = std::chrono::steady_clock::now();
  quantlab::ResultRecord record;
  record.set_name(plan.spec.name);
  record.set_config_id(plan.spec.config_id);
  record.set_seed(plan.seed);
  record.set_config_file(plan.spec.source_file);
  record.set_start_time(NowRfc3339());
  *record.mutable_host() = ReadHostInfo(plan.threads);
  for (const std::string& s : plan.steps) record.add_plan(s);
  for (const std::string& s : plan.not_available) record.add_not_available(s);
  for (const std::string& s : plan.spec.overrides) record.add_overrides(s);

  auto finish = [&](absl::Status status) {
    record.set_status(status.ok() ? quantlab::ResultRecord::OK : quantlab::ResultRecord::FAILED);
    if (!status.ok()) record.set_error(std::string(status.message()));
    record.set_wall_seconds(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    record.set_peak_rss_bytes(PeakRssBytes());
    if (absl::Status s = WriteRecord(plan.run_dir, record); !s.ok()) {
      // The caller reports the error once; no record exists on disk to point at.
      record.set_status(quantlab::ResultRecord::FAILED);
      record.set_error(status.ok() ? std::string(s.message())
                                   : absl::StrCat(status.message(), "; and no record could be written: ",
                                                  s.message()));
    }
    return record;
  };

  std::error_code ec;
  std::filesystem::create_directories(plan.run_dir, ec);
  if (ec) {
    return finish(absl::PermissionDeniedError(
        absl::StrCat(plan.run_dir, ": cannot create the run directory: ", ec.message())));
  }
  // A previous record of this run is stale from here on.
  std::filesystem::remove(plan.run_dir + "/result.json", ec);
  if (absl::Status s = WriteFileAtomically(plan.run_dir + "/config.yaml", EmitYaml(plan.spec.root));
      !s.ok()) {
    return finish(s);
  }

  std::fprintf(stderr, "[%s] loading %s ...\n", plan.spec.name.c_str(), plan.dataset_name.c_str());
  // Decoded data is kept for the next runs in the output dir (a sweep decodes once).
  plan.dataset->set_cache_dir(plan.output_dir + "/.cache");
  if (absl::Status s = plan.dataset->Load(); !s.ok()) return finish(s);
  record.set_dataset(plan.dataset->Describe());
  std::fprintf(stderr, "[%s] %s\n", plan.spec.name.c_str(), record.dataset().c_str());
  if (plan.model != nullptr && !plan.ptq_init_from.empty()) {
    if (absl::Status s = nn::LoadCheckpoint(plan.ptq_init_from, plan.model.get()); !s.ok()) return finish(s);
  }
  if (plan.analysis != nullptr && plan.analysis_before_training) {
    if (absl::Status s = nn::LoadCheckpoint(plan.analysis_checkpoint, plan.model.get()); !s.ok()) return finish(s);
    if (absl::Status s = RunAnalysisStep(plan, &record); !s.ok()) return finish(s);
  }
  if (plan.scheme != nullptr) {
    TrainContext context;
    context.dataset = plan.dataset.get();
    context.model = plan.model.get();
    context.seed = plan.seed;
    context.threads = plan.threads;
    // Replicas for data-parallel training: the same `model:` section built again.
    context.make_replica = [&plan]() -> absl::StatusOr<std::unique_ptr<nn::Model>> {
      ParamReader reader(plan.spec.root["model"], plan.spec.source_file, "model", plan.spec.origins);
      ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> m, nn::CreateModel(reader));
      RETURN_IF_ERROR(m->Build(plan.dataset->sample_shape(), plan.dataset->num_classes(), plan.seed));
      return m;
    };
    context.run_dir = plan.run_dir;
    context.name = plan.spec.name;
    context.quant = plan.quant.get();
    auto trained = plan.scheme->Train(context);
    if (!trained.ok()) return finish(trained.status());
    for (const EpochRecord& e : trained->epochs) {
      quantlab::EpochRecord* r = record.add_epochs();
      r->set_epoch(e.epoch);
      r->set_train_loss(e.train_loss);
      r->set_train_accuracy(e.train_accuracy);
      r->set_test_accuracy(e.test_accuracy);
      r->set_seconds(e.seconds);
      r->set_samples_per_s(e.samples_per_s);
      r->set_scheme(plan.train_scheme_name);
    }
    auto& metrics = *record.mutable_metrics();
    // The accuracy of what the scheme trained (fake-quantized for QAT schemes);
    // "float_test_accuracy" only when the trained model is a float one.
    metrics["final_test_accuracy"] = trained->final_test_accuracy;
    if (plan.scheme->trains_float32_model()) metrics["float_test_accuracy"] = trained->final_test_accuracy;
    // A scheme's own scalars (underflow fractions, skipped steps, pretrain accuracy, ...).
    for (const auto& [key, value] : trained->metrics) metrics[key] = value;
  } else if (plan.model != nullptr) {
    (*record.mutable_metrics())["float_test_accuracy"] =
        EvaluateAccuracy(*plan.model, plan.dataset->test(), 256);
  }
  if (plan.analysis != nullptr && !plan.analysis_before_training) {
    if (absl::Status s = RunAnalysisStep(plan, &record); !s.ok()) return finish(s);
  }
  if (plan.ptq != nullptr) {
    if (absl::Status s = RunPtqAndEvaluate(plan, &record); !s.ok()) return finish(s);
  }
  for (const std::string& n : plan.not_available) {
    std::fprintf(stderr, "[%s] not run: %s\n", plan.spec.name.c_str(), n.c_str());
  }
  for (const std::string& w : plan.warnings) {
    std::fprintf(stderr, "[%s] warning: %s\n", plan.spec.name.c_str(), w.c_str());
  }
  return finish(absl::OkStatus());
}

}  // namespace quant
