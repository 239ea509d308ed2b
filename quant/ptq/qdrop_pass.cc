#include "quant/ptq/qdrop_pass.h"

#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::ptq {

absl::StatusOr<std::unique_ptr<PtqPass>> CreateQdropPass(ParamReader& p) {
  BlockReconstructionOptions o;
  o.pass = "qdrop";
  o.act_quant = true;  // dropping quantization needs quantized activations
  RETURN_IF_ERROR(ReadBlockReconstructionOptions(p, &o));
  o.drop_prob =
      p.DoubleInRange("drop_prob", 0.5, 0.0, 1.0,
                      "probability of keeping an activation value float while reconstructing (the paper: 0.5)");
  o.learn_act_scale = p.Bool("learn_act_scale", true, "learn the activation step sizes with the rounding");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new BrecqPass(o));
}

QUANTLAB_REGISTER(PtqPass, "qdrop", CreateQdropPass,
                  "brecq with the activations quantized and randomly dropped to float while reconstructing "
                  "(Wei et al. 2022)");

}  // namespace quant::ptq
