// Turns a YAML file into the experiments it describes.
//
// A plain experiment file yields one experiment. A sweep file names a base
// experiment and axes by key path:
//
//   base: configs/cnn_qat_w4a8.yaml        # relative to this file, or the cwd
//   name: w_bits                           # optional prefix of the experiment names
//   set: {train.epochs: 1}                 # optional: applied to every experiment
//   sweep:                                 # grid: the product of the axes
//     quant.weights.bits: [2, 3, 4, 8]
//   zip:                                   # lists that vary together (one axis);
//     train.optimizer.lr: [0.1, 0.01]      # a list of such maps gives several axes
//     train.epochs: [1, 2]
//   seeds: [0, 1, 2]                       # one more axis: the seed (also in a plain experiment file)
//
// Dependencies: any `init_from` key (train.init_from, ptq.init_from,
// train.pretrain.init_from) may name the experiment whose checkpoint it starts from
// instead of a path:
//
//   init_from: {config: mlp_fp32.yaml}     # relative to this file's folder, or the cwd
//   init_from: {config: mlp_fp32.yaml, set: {train.epochs: 1}, checkpoint: model.pb}
//
// The driver runs that experiment first, into the same output dir, unless its
// record there says OK; the dependent's id includes the dependency's id.
//
// Each experiment gets a stable id: a hash of its resolved config (without the
// `output` section), so re-running a sweep finds the runs already done.
#ifndef EXPERIMENTS_CONFIG_LOADER_H_
#define EXPERIMENTS_CONFIG_LOADER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "yaml-cpp/yaml.h"

namespace quant {

struct ExperimentSpec;

// One experiment that another starts from: its checkpoint file goes into `key_path`.
struct Dependency {
  std::string key_path;    // e.g. train.init_from
  std::string checkpoint;  // the file in the dependency's run dir (model.pb)
  std::string location;    // file:line:col of the init_from map
  std::shared_ptr<const ExperimentSpec> spec;
};

struct ExperimentSpec {
  std::string name;         // the config's `name`, with a sweep suffix
  std::string config_id;    // 16 hex digits
  std::string source_file;  // the experiment file errors are located in
  YAML::Node root;          // the resolved config
  std::shared_ptr<OverrideOrigins> origins;  // where overridden values came from
  std::vector<std::string> overrides;        // "key.path=value", in order applied
  std::vector<Dependency> dependencies;      // experiments to run first (init_from: {config: ...})
};

// Parses a YAML file; syntax errors are "file:line:col: YAML syntax error: ...".
absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path);

// Sets `value` at a dotted key path, creating maps on the way. Fails if a
// component on the way exists and is not a map.
absl::Status SetAtPath(YAML::Node& root, const std::string& key_path, const YAML::Node& value);

// Splits "train.epochs=3" and parses the value as YAML ("[1, 2]", "true", ...).
absl::StatusOr<std::pair<std::string, YAML::Node>> ParseAssignment(const std::string& text);

// Loads `path` (plain or sweep file) and applies `sets` (command-line
// "key.path=value" assignments, applied last, to every experiment).
absl::StatusOr<std::vector<ExperimentSpec>> LoadExperiments(const std::string& path,
                                                            const std::vector<std::string>& sets);

// Puts the checkpoint paths into the `init_from` keys of `spec` once the output dir is
// known: a dependency's is <output_dir>/<name>-<id>/<checkpoint>; a plain relative path
// is looked up in the output dir, then the config's folder, then the working dir. A
// plain path that exists nowhere is an error naming the key, file:line, where it was
// looked for, and the config in that folder that would produce it.
absl::Status ResolveCheckpoints(ExperimentSpec& spec, const std::string& output_dir);

// Canonical text of a config and its stable id.
std::string EmitYaml(const YAML::Node& node);
std::string ConfigId(const YAML::Node& root);

}  // namespace quant

#endif  // EXPERIMENTS_CONFIG_LOADER_H_
