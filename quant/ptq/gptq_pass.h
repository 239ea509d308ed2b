// PTQ pass `gptq` (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
// Generative Pre-trained Transformers", Algorithm 1): weights quantized column by
// column, each column's rounding error spread over the columns not yet quantized
// through the inverse Hessian of the layer's reconstruction loss ||W X - W~ X||^2:
//
//   H = 2 X X^T / N + lambda I,   lambda = damp * mean(diag(H))       (dampening)
//   U = Cholesky(H^-1) (upper)                                          (section 3, "Cholesky")
//   for each block of `block_size` columns, for column i:
//     q_i = quant(w_i);  e = (w_i - q_i) / U_ii;  W[:, i:] -= e U[i, i:]   (lazy batch:
//   the rest of W is updated once per block with the block's errors)
//
// X are the layer's inputs (im2col columns for a conv, per group) on the calibration
// images, taken from the net with the layers before already quantized by this pass
// (the paper's sequential order). quant() is the layer's weight quantizer of the
// `quant:` section with the qparams it picks on the float weight (per tensor or per
// channel), fixed for the layer; the codes are handed to the conversion
// (WeightedLayer::weight_grid). Inputs that never fire (diag(H) = 0) get H_ii = 1 and
// their weights 0, as the reference implementation does. The notes give, per layer,
// the H-weighted error tr((W - Q) H (W - Q)^T) of nearest rounding and of GPTQ.
#ifndef QUANT_PTQ_GPTQ_PASS_H_
#define QUANT_PTQ_GPTQ_PASS_H_

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

class GptqPass : public PtqPass {
 public:
  struct Options {
    int block_size = 128;
    double damp = 0.01;
  };
  explicit GptqPass(Options o) : o_(o) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override;

 private:
  Options o_;
};

// Algorithm 1 on one weight matrix: W [rows, K] (row-major, rows = output channels),
// H [K, K] (double, row-major; changed: dampened, dead inputs fixed), a quantizer of
// one value of row r. Returns the quantized W (on the grid) and writes the dead-input
// count. Exposed for tests.
std::vector<float> GptqQuantize(const std::vector<float>& w, int64_t rows, int64_t k, std::vector<double>* h,
                                const std::function<float(float, int64_t)>& quantize, int block_size, double damp,
                                int* dead = nullptr);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_GPTQ_PASS_H_
