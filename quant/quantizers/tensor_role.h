// What a quantizer is applied to. Most quantizers do not care, but some
// change their formula with it (DoReFa: tanh-normalised weights but clipped
// activations), accept only one of the two (PACT clips activations) or scale a
// gradient by the tensor's size (LSQ: the number of weights of a layer, but the
// number of features of one sample for activations). A scheme that inserts
// quantizers tells such quantizers their role before the first Forward().
#ifndef QUANT_QUANTIZERS_TENSOR_ROLE_H_
#define QUANT_QUANTIZERS_TENSOR_ROLE_H_

#include "absl/status/status.h"

namespace quant {

enum class TensorRole { kWeights, kActivations };

inline const char* TensorRoleName(TensorRole r) {
  return r == TensorRole::kWeights ? "weights" : "activations";
}

// Mixed into quantizers whose behaviour depends on the role. SetRole returns
// InvalidArgument (saying where the quantizer belongs) for a role the
// quantizer does not support.
class RoleAware {
 public:
  virtual ~RoleAware() = default;
  virtual absl::Status SetRole(TensorRole role) = 0;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_TENSOR_ROLE_H_
