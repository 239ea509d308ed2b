// Training schemes (registry `scheme:`, the key `train.scheme`): how a model
// is trained. A scheme's factory reads the whole `train:` map (epochs,
// batch_size, optimizer, schedule, init_from, ...); the driver then calls
// Train with what the run provides: the loaded dataset, the built model, the
// seed, the thread count and the run directory.
#ifndef QUANT_TRAINING_TRAINING_SCHEME_H_
#define QUANT_TRAINING_TRAINING_SCHEME_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/data/dataset.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"

namespace quant {

struct TrainContext {
  const Dataset* dataset = nullptr;  // loaded
  nn::Model* model = nullptr;        // built for the dataset
  uint64_t seed = 0;
  // Threads of the run (--threads). Float training splits each batch across
  // them (quant/training/data_parallel.h) when make_replica is set; schemes
  // with hook transforms give them to the GEMM library instead.
  int threads = 1;
  // Builds another model of the same architecture (any parameters): the
  // replicas of data-parallel training. Empty: no data parallelism.
  std::function<absl::StatusOr<std::unique_ptr<nn::Model>>()> make_replica;
  std::string run_dir;   // the checkpoint goes to run_dir/model.pb; "" = none
  std::string name;      // prefixes log lines, e.g. the experiment name
  // The experiment's `quant:` section (null when it has none); schemes that
  // insert quantizers take their per-layer specs from it.
  const QuantConfig* quant = nullptr;
  // Progress on `log`: kAuto is a live \r-updated line when `log` is a
  // terminal and one summary line per epoch otherwise.
  enum class Progress { kAuto, kLive, kSummary, kQuiet };
  Progress progress = Progress::kAuto;
  FILE* log = stderr;
};

struct EpochRecord {
  int epoch = 0;  // 1-based
  double train_loss = 0;      // mean over the epoch's samples, in training mode
  double train_accuracy = 0;  // running accuracy over the epoch, in [0, 1]
  double test_accuracy = 0;   // after the epoch, eval mode, in [0, 1]
  double seconds = 0;         // the training pass (forward, backward, update, batching)
  double samples_per_s = 0;   // training samples / seconds
  double eval_seconds = 0;    // the test-set evaluation after it
  // Process CPU time of the training pass: on a shared machine, wall time
  // includes waiting for a core; this does not.
  double cpu_seconds = 0;
};

struct TrainResult {
  std::vector<EpochRecord> epochs;
  double final_test_accuracy = 0;  // in [0, 1]
  std::string checkpoint_path;     // "" when none was written
  // Further scalar results of the scheme (e.g. underflow fractions), for the
  // result record's metrics map.
  std::map<std::string, double> metrics;
};

class TrainingScheme {
 public:
  static constexpr char kRegistryKind[] = "scheme";
  virtual ~TrainingScheme() = default;
  virtual absl::StatusOr<TrainResult> Train(TrainContext& context) = 0;
  // One line: the scheme, optimizer and schedule with their settings.
  virtual std::string Describe() const = 0;
  // True for schemes that need the `quant:` section (the driver refuses a
  // config that selects such a scheme without one, before anything runs).
  virtual bool uses_quant_config() const { return false; }
  // True when the trained model computes in plain float32 (no fake
  // quantization, no format rounding): its accuracy is a float baseline, and
  // the record calls it float_test_accuracy.
  virtual bool trains_float32_model() const { return false; }
};

}  // namespace quant

#endif  // QUANT_TRAINING_TRAINING_SCHEME_H_
