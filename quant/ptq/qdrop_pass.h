// PTQ pass `qdrop` (Wei et al. 2022, "QDrop: Randomly Dropping Quantization for Extremely Low-bit
// Post-Training Quantization"): brecq's block reconstruction (brecq_pass.h) with the activations
// quantized and, while reconstructing, each activation value of the block (its input, mixed from
// the quantized and the float net's, and every quantized activation inside it) kept float with
// probability `drop_prob` (the paper's 0.5), so that the rounding learns on a flatter objective;
// the step sizes are learned with it, evaluation and the integer model quantize everything.
//
//   ptq: {method: static, passes: [{name: qdrop, drop_prob: 0.5, iterations: 20000}]}
#ifndef QUANT_PTQ_QDROP_PASS_H_
#define QUANT_PTQ_QDROP_PASS_H_

#include "quant/ptq/brecq_pass.h"

namespace quant::ptq {

// A BrecqPass with QDrop's options (act_quant, drop_prob 0.5, learned step sizes).
absl::StatusOr<std::unique_ptr<PtqPass>> CreateQdropPass(ParamReader& p);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_QDROP_PASS_H_
