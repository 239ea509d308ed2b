// PTQ pass `brecq` (Li et al. 2021, "BRECQ: Pushing the Limit of Post-Training Quantization by
// Block Reconstruction"): AdaRound's learned rounding (Nagel et al. 2020, eq. 22-25; see
// adaround_pass.h) optimised per block instead of per layer, so that the rounding of the layers
// inside a block compensates each other's error on the block's output:
//
//   min_V  E[ || z_fp - z~(V) ||^2 ]  +  lambda sum_layers sum (1 - |2 h(V) - 1|^beta)
//
// with z the block's output (BRECQ's block objective with its Fisher weights set to 1: the
// reference code's default, opt_mode 'mse'), the squared error summed over channels and averaged over
// images and positions (the reference code's lp_loss), z_fp the float net's output of the block on
// its float input, z~ the block with soft-rounded weights on its input in the net whose earlier
// blocks are already rounded (AdaRound's asymmetric form). The paper's and its code's defaults:
// 20000 Adam steps per block (lr 1e-3) on minibatches of 32 of the 1024 calibration images,
// lambda 0.01, beta annealed linearly from 20 to 2 after a warm start of 20 % of the steps without
// the regulariser; hard rounding (h >= 0.5) at the end.
//
// A block is a single-entry single-exit range of ops (one tensor flows in, one flows out: a
// residual block with its add, an inverted residual block, or a lone layer of a chain), and
// consecutive such ranges whose op names share the prefix before the first '_' (the built-in
// models' "s1b2_", "ir3_") are one block: a MobileNet inverted residual block without a shortcut
// (expand, depthwise, project) is one block, as in the paper. `blocks: layer` reconstructs each
// weighted layer alone (the paper's layer-wise ablation). A block with an op that has no
// differentiable form here (sigmoid, tanh, reshape) is skipped and said.
//
// `act_quant: true`: the block's activations are fake-quantized on the grids the conversion
// would calibrate (the net's `quant:` activation spec on the float net), the block input comes
// from the net with earlier blocks' weights and activations quantized, and each grid's step size is
// learned jointly with the rounding (Adam, lr 4e-5, cosine to 0: the reference code's second
// stage, here in the same loop). The grids are then pinned for the conversion
// (FloatNet::activation_grid), so the integer model uses exactly what the reconstruction saw.
//
// PTQ pass `qdrop` (Wei et al. 2022, "QDrop: Randomly Dropping Quantization for Extremely Low-bit
// Post-Training Quantization") is brecq with act_quant and, while reconstructing, each activation
// value of the block (its input and every quantized activation inside it) kept in float with
// probability `drop_prob` (the paper's 0.5) instead of quantized; evaluation
// and the integer model quantize everything.
//
// Notes, per block: its layers, the reconstruction loss on all calibration images with nearest
// rounding and with the learned rounding (activations as configured, nothing dropped), the share
// of h(V) that ended binary, the learned step sizes' change, steps and seconds.
#ifndef QUANT_PTQ_BRECQ_PASS_H_
#define QUANT_PTQ_BRECQ_PASS_H_

#include <string>
#include <vector>

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

struct BlockReconstructionOptions {
  std::string pass = "brecq";  // for notes and errors
  int iterations = 20000;
  int batch_images = 32;
  double lr = 1e-3;      // Adam on the rounding variables V
  double act_lr = 4e-5;  // Adam on the activation step sizes (act_quant), cosine-annealed to 0
  double lambda = 0.01;
  double warm_start = 0.2;
  double beta_start = 20, beta_end = 2;
  bool act_quant = false;
  bool learn_act_scale = true;
  double drop_prob = 0.0;  // qdrop: probability of keeping an activation value float
  bool layer_wise = false;
};

// A block: ops [first, last] of FloatNet::model, the one tensor that flows in and the one
// that flows out, the weighted layers (indices into FloatNet::weighted) inside.
struct ReconstructionBlock {
  int first = 0, last = 0;
  int input_tensor = -1, output_tensor = -1;
  std::vector<int> weighted;
  std::string name;
};
std::vector<ReconstructionBlock> FindBlocks(const FloatNet& net, bool layer_wise);

// Reconstructs every block of ctx.net in op order (brecq and qdrop).
absl::Status ReconstructBlocks(PtqPassContext& ctx, const BlockReconstructionOptions& o);

// Reads the keys brecq and qdrop share into `o` (whose fields hold each pass's defaults).
absl::Status ReadBlockReconstructionOptions(ParamReader& p, BlockReconstructionOptions* o);

// brecq, and qdrop (qdrop_pass.h) with its own defaults: one pass, two registrations.
class BrecqPass : public PtqPass {
 public:
  explicit BrecqPass(BlockReconstructionOptions o) : o_(std::move(o)) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override { return ReconstructBlocks(ctx, o_); }

 private:
  BlockReconstructionOptions o_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_BRECQ_PASS_H_
