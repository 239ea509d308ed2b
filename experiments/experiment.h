// One experiment: its config read and checked (Validate), then run (Run).
//
// Validate reads every section through ParamReader-backed plugins, so a typo,
// a wrong type or an unknown plugin name is reported before anything runs and
// before any result directory exists. Run executes the plan and always returns
// a record: status OK, or FAILED with the one-line cause.
#ifndef EXPERIMENTS_EXPERIMENT_H_
#define EXPERIMENTS_EXPERIMENT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/config_loader.h"
#include "experiments/result.pb.h"
#include "quant/analysis/analysis.h"
#include "quant/analysis/latency_table.h"
#include "quant/data/dataset.h"
#include "quant/nn/model.h"
#include "quant/ptq/evaluate.h"
#include "quant/ptq/ptq_method.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/training_scheme.h"

namespace quant {

// Settings that come from the command line rather than the config.
struct RunOptions {
  std::string output_dir;  // overrides output.dir when non-empty
  int threads = 1;         // intra-op threads
};

struct ExperimentPlan {
  ExperimentSpec spec;
  std::string name;
  uint64_t seed = 0;
  std::string output_dir;
  std::string run_dir;  // output_dir/<name>-<config_id>
  int threads = 1;
  std::unique_ptr<Dataset> dataset;
  std::string dataset_name;
  std::unique_ptr<nn::Model> model;            // built for the dataset's shape
  std::unique_ptr<TrainingScheme> scheme;      // null: no `train:` section
  std::string train_scheme_name;
  std::unique_ptr<QuantConfig> quant;          // null: no `quant:` section
  std::unique_ptr<ptq::PtqMethod> ptq;         // null: no `ptq:` section
  std::string ptq_method_name;
  std::string ptq_init_from;                   // float checkpoint quantized when nothing is trained
  std::vector<std::string> eval_backends;      // empty: no `evaluate:` section
  ptq::EvaluateOptions eval_options;
  std::unique_ptr<analysis::AnalysisSpec> analysis;  // null: no `analysis:` section
  // With a quantizing train.scheme the analysis runs on train.init_from before training
  // (its allocation is what QAT trains); otherwise on the trained / loaded float model.
  bool analysis_before_training = false;
  std::string analysis_checkpoint;  // train.init_from, when before training
  bool eval_debug = false;  // evaluate.debug: the per-tensor numerical debugger
  bool export_onnx = false;                    // evaluate.export_onnx: model.qdq.onnx + encodings.json in the run dir
  std::vector<std::string> warnings;           // e.g. overrides that match no layer
  std::vector<std::string> steps;          // what Run will do, in order
  std::vector<std::string> not_available;  // sections this build cannot run yet
};

absl::StatusOr<ExperimentPlan> Validate(ExperimentSpec spec, const RunOptions& options);

// "plan:" lines for --validate and logs.
std::string DescribePlan(const ExperimentPlan& plan);

// Runs the plan, writing config.yaml and the record into plan.run_dir.
quantlab::ResultRecord Run(ExperimentPlan& plan);

}  // namespace quant

#endif  // EXPERIMENTS_EXPERIMENT_H_
