#include "experiments/experiment.h"

#include <chrono>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "experiments/record.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/training/train_loop.h"

namespace quant {
namespace {

// Sections of the config that later parts of quantlab consume. Until the code
// for one is linked into this build, a config that uses it is accepted, the
// section is recorded as not available, and the run says so plainly.
struct PendingSection {
  const char* key;
  const char* help;
  const char* what;
};
constexpr PendingSection kPendingSections[] = {
    {"ptq", "post-training quantization: {method, calibration_batches}", "post-training quantization"},
    {"evaluate", "evaluation: {backends: [...]}", "evaluation on backends"},
};

}  // namespace

absl::StatusOr<ExperimentPlan> Validate(ExperimentSpec spec, const RunOptions& options) {
  ExperimentPlan plan;
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
    built_model = Registry<nn::Model>::Get().CreateFrom(model, "name", "", "which model");
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
  for (const PendingSection& s : kPendingSections) {
    if (!root.Node(s.key, s.help).IsDefined()) continue;
    plan.not_available.push_back(
        absl::StrCat(s.key, ": ", s.what, " is not available in this build yet; the section is "
                                          "kept in the resolved config but neither checked nor run"));
  }
  ParamReader& output = root.Map("output", "where results go: {dir: runs}");
  plan.output_dir = output.String("dir", "runs", "results directory (relative to the working dir)");
  RETURN_IF_ERROR(root.Finish());
  if (!ds.ok()) return ds.status();
  if (!built_model.ok()) return built_model.status();
  if (!scheme.ok()) return scheme.status();
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
          absl::StrCat(model.Location(model.Has("layers") ? "layers" : "name"), ": ",
                       std::string(s.message())));
    }
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
  const bool quant_used = plan.scheme != nullptr && plan.scheme->uses_quant_config();
  if (plan.quant != nullptr && !quant_used) {
    // No step of this run consumes the specs: say so rather than ignore them.
    plan.not_available.push_back(
        "quant: the specs were checked, but quantization-aware training and post-training "
        "quantization are not available in this build yet");
  }
  if (!options.output_dir.empty()) plan.output_dir = options.output_dir;
  plan.threads = options.threads;
  plan.run_dir = absl::StrCat(plan.output_dir, "/", spec.name, "-", spec.config_id);
  plan.steps.push_back(absl::StrCat("load dataset ", plan.dataset_name));
  if (plan.model != nullptr) {
    plan.steps.push_back(absl::StrCat("build model ", plan.model->name(), " (",
                                      plan.model->NumParameters(), " parameters)"));
  }
  if (plan.scheme != nullptr) plan.steps.push_back("train: " + plan.scheme->Describe());
  if (plan.model != nullptr) {
    plan.steps.push_back(plan.scheme != nullptr ? "evaluate the trained float model on the test set"
                                                : "evaluate the untrained float model on the test set");
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
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      record.set_status(quantlab::ResultRecord::FAILED);
      record.set_error(std::string(s.message()));
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
  if (absl::Status s = plan.dataset->Load(); !s.ok()) return finish(s);
  record.set_dataset(plan.dataset->Describe());
  std::fprintf(stderr, "[%s] %s\n", plan.spec.name.c_str(), record.dataset().c_str());
  if (plan.scheme != nullptr) {
    TrainContext context;
    context.dataset = plan.dataset.get();
    context.model = plan.model.get();
    context.seed = plan.seed;
    context.threads = plan.threads;
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
    (*record.mutable_metrics())["float_test_accuracy"] = trained->final_test_accuracy;
  } else if (plan.model != nullptr) {
    (*record.mutable_metrics())["float_test_accuracy"] =
        EvaluateAccuracy(*plan.model, plan.dataset->test(), 256);
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
