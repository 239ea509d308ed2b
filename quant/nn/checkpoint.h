// Saving and loading a Model's state as a protobuf (quant/nn/checkpoint.proto).
// Load checks that the file fits the model before changing anything: the
// first model tensor (in the model's order) that is missing or has another
// shape, or the first tensor of the file the model does not have, is named in
// the error.
#ifndef QUANT_NN_CHECKPOINT_H_
#define QUANT_NN_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "quant/nn/model.h"

namespace quant::nn {

struct CheckpointInfo {
  uint64_t seed = 0;
  int epochs = 0;
  double test_accuracy = 0.0;
  std::string scheme;
};

// Writes atomically (a temporary file renamed over `path`).
absl::Status SaveCheckpoint(Model& model, const std::string& path, const CheckpointInfo& info = {});
// The model must be built. NotFound for a missing file, InvalidArgument otherwise.
absl::Status LoadCheckpoint(const std::string& path, Model* model);

}  // namespace quant::nn

#endif  // QUANT_NN_CHECKPOINT_H_
