// Fusion groups: the node patterns that deployment runs as one integer op,
// found once by pattern and shared by QAT placement (no fake quantization
// inside a group), BatchNorm folding and conversion:
//   conv2d | linear -> [batchnorm] -> [relu | relu6]
//   add -> [relu | relu6]
// A node joins its predecessor's group only if it is that value's single
// consumer and the value is not the model's output (otherwise the
// intermediate value is observable and must stay separate).
#ifndef QUANT_NN_FUSION_H_
#define QUANT_NN_FUSION_H_

#include <vector>

#include "quant/nn/model.h"

namespace quant::nn {

struct FusionGroup {
  enum class Kind { kWeighted, kAdd };
  Kind kind = Kind::kWeighted;
  int anchor = -1;      // the conv/linear/add node
  int batch_norm = -1;  // node index, or -1
  int activation = -1;  // node index, or -1
  // The node whose output is the group's output.
  int last() const { return activation >= 0 ? activation : (batch_norm >= 0 ? batch_norm : anchor); }
};

std::vector<FusionGroup> FindFusionGroups(const Model& model);

}  // namespace quant::nn

#endif  // QUANT_NN_FUSION_H_
