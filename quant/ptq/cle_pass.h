// PTQ pass `cle`: cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization
// Through Weight Equalization and Bias Correction", section 4.1).
//
// For consecutive layers W1 -> f -> W2 with f positively homogeneous per channel
// (ReLU, identity, and the pools in between), scaling output channel i of W1 by 1/s_i
// and input channel i of W2 by s_i leaves the network unchanged (eq. 4-6). The
// choice that makes both ranges equal, r1_i / s_i = s_i * r2_i = sqrt(r1_i r2_i), is
//   s_i = sqrt(r1_i / r2_i)                                      (eq. 10-11)
// with r1_i = max |W1[i, ...]| (output channel i, bias scaled alike) and r2_i =
// max |W2[:, i, ...]| (input channel i; for a depthwise W2, its channel i kernel).
// Every pair of the net is equalized in turn, repeatedly, until no scale moves by
// more than `tolerance` (a layer in two pairs, e.g. a depthwise conv between two
// pointwise ones, needs several sweeps), at most `iterations` sweeps.
//
// ReLU6 is not positively homogeneous; as the paper (section 5.1.1) and AIMET do, a
// ReLU6 between two equalized layers is replaced by ReLU (`replace_relu6: true`,
// default); with false, such pairs are skipped and said. Pairs across an add, a
// concat, a flatten, a fan-out or a non-depthwise grouped conv are skipped and said.
// The folded BatchNorm statistics of W1 (WeightedLayer::bn_gamma/bn_beta) are scaled
// with it, for bias absorption.
#ifndef QUANT_PTQ_CLE_PASS_H_
#define QUANT_PTQ_CLE_PASS_H_

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

class ClePass : public PtqPass {
 public:
  struct Options {
    int iterations = 100;
    double tolerance = 1e-6;
    bool replace_relu6 = true;
  };
  explicit ClePass(Options o) : o_(o) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override;

 private:
  Options o_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_CLE_PASS_H_
