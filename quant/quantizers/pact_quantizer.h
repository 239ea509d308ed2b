// `pact`: PArameterized Clipping acTivation (Choi et al. 2018) for
// activations: a learned clip alpha replaces the observed range.
//
//   y  = clamp(x, 0, alpha)
//   yq = round(y * (2^b - 1) / alpha) * alpha / (2^b - 1)     (half to even)
//   d yq / dx     = 1 for 0 <= x < alpha, else 0               (STE)
//   d yq / dalpha = 1 for x >= alpha, else 0                   (the paper's eq. 3)
//   plus the L2 regulariser (alpha_decay / 2) * alpha^2: + alpha_decay * alpha
//
// alpha ("alpha", one value) is a trainable parameter, initialised to
// alpha_init (the paper's 10 by default). Weights are refused: PACT clips
// activations (quantize weights with affine, lsq or dorefa).
#ifndef QUANT_QUANTIZERS_PACT_QUANTIZER_H_
#define QUANT_QUANTIZERS_PACT_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/quantizers/quantizer.h"
#include "quant/quantizers/tensor_role.h"

namespace quant {

class PactQuantizer : public Quantizer, public RoleAware {
 public:
  struct Options {
    int bits = 4;
    float alpha_init = 10.0f;
    float alpha_decay = 2e-4f;
  };
  explicit PactQuantizer(Options o);
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);

  absl::Status SetRole(TensorRole role) override;
  absl::Status Observe(const Tensor& x) override { return absl::OkStatus(); }
  absl::Status ComputeQParams() override;
  bool calibrated() const override { return true; }
  const QParams& qparams() const override { return qparams_; }
  absl::StatusOr<QParams> IntegerGrid() const override;
  const QuantSpec& spec() const override { return spec_; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::vector<LearnedParameter*> parameters() override { return {&alpha_}; }
  std::string Describe() const override;

 private:
  float Alpha() const;

  Options o_;
  QuantSpec spec_;
  QParams qparams_;
  LearnedParameter alpha_{"alpha", Tensor(), Tensor()};
  std::vector<uint8_t> region_;  // 0: x < 0, 1: inside, 2: clipped at alpha
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_PACT_QUANTIZER_H_
