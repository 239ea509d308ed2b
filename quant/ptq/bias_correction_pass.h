// PTQ pass `bias_correction` (Nagel et al. 2019, section 4.2).
//
// Quantizing W to W~ = W + eps shifts the expected output of a layer by
//   E[y~] - E[y] = eps E[x]                                           (eq. 13)
// which the bias absorbs: b <- b - eps E[x]. eps comes from the layer's weight
// quantizer of the `quant:` section applied to the (BN-folded, equalized) weight,
// exactly as the conversion will quantize it. E[x], per input channel:
//  - `mode: empirical` (default): the mean of the float net's input to the layer over
//    the calibration images (one pass of the float executor for every layer);
//  - `mode: analytic`: data-free, from the BatchNorm of the layer that produces the
//    input: x = f(z), z ~ N(beta, gamma^2), f = ReLU / ReLU6 / identity, through
//    average pools:
//      E[ReLU(z)]  = gamma phi(beta/gamma) + beta Phi(beta/gamma)     (eq. 16-17)
//      E[ReLU6(z)] = the same clipped at 6 (the normal clipped to [0, 6])
//    A layer whose input has no such BatchNorm (the model input, an add, a max pool)
//    uses the empirical mean, and the notes say which layers did.
// The expectation over a conv's kernel uses each input channel's mean at every tap
// (zero padding ignored, as in the paper).
#ifndef QUANT_PTQ_BIAS_CORRECTION_PASS_H_
#define QUANT_PTQ_BIAS_CORRECTION_PASS_H_

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

class BiasCorrectionPass : public PtqPass {
 public:
  explicit BiasCorrectionPass(bool analytic) : analytic_(analytic) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override;

 private:
  bool analytic_;
};

// E[f(z)] for z ~ N(mean, std^2), f = ReLU (upper = inf) or clip to [0, upper].
double ClippedNormalMean(double mean, double std, double upper);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_BIAS_CORRECTION_PASS_H_
