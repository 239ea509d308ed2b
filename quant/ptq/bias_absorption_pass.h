// PTQ pass `bias_absorption`: high-bias absorption (Nagel et al. 2019, section 4.2.2).
//
// For W1 -> BatchNorm -> ReLU -> W2, the BatchNorm says the pre-activation of channel i
// is ~N(beta_i, gamma_i^2). Where beta_i - 3 |gamma_i| > 0 almost every value exceeds
//   c_i = max(0, beta_i - 3 |gamma_i|)                                (eq. 19)
// so ReLU(x - c_i) = ReLU(x) - c_i, and c_i moves from W1's bias into W2's:
//   b1_i -= c_i,   b2 += W2 c                                          (eq. 18)
// shrinking the range of W1's output (which CLE can inflate) at no change of the network
// for those inputs. Pools between the layers pass the constant through. Needs the folded
// BatchNorm of W1 (a pair without one is skipped and said, as are pairs whose activation
// is not ReLU: run `cle` first to turn ReLU6 into ReLU). `sigmas` is the 3 of eq. 19.
// W2's zero padding sees 0, not -c, at the border: the paper's approximation, kept.
#ifndef QUANT_PTQ_BIAS_ABSORPTION_PASS_H_
#define QUANT_PTQ_BIAS_ABSORPTION_PASS_H_

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

class BiasAbsorptionPass : public PtqPass {
 public:
  explicit BiasAbsorptionPass(double sigmas) : sigmas_(sigmas) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override;

 private:
  double sigmas_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_BIAS_ABSORPTION_PASS_H_
