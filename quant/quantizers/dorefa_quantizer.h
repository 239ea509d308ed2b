// `dorefa`: DoReFa-Net quantization (Zhou et al. 2016), k = bits:
//
//   quantize_k(r) = round(r * (2^k - 1)) / (2^k - 1)          r in [0, 1]
//   weights:      t = tanh(w), M = max |t|
//                 w_q = 2 * quantize_k(t / (2M) + 1/2) - 1     in [-1, 1]
//                 d w_q / d w = (1 - t^2) / M                  (STE through the
//                 rounding; M is treated as a constant, as common implementations do)
//   activations:  a_q = quantize_k(clamp(x, 0, clip) / clip) * clip, clip = 1
//                 in the paper; d a_q / d x = 1 for 0 <= x <= clip, else 0
//
// No learned values and no observer. Weights come out in [-1, 1] whatever
// their float scale, as in the paper (networks trained with it are meant to
// have BatchNorm or to be trained into that scale).
#ifndef QUANT_QUANTIZERS_DOREFA_QUANTIZER_H_
#define QUANT_QUANTIZERS_DOREFA_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/quantizers/quantizer.h"
#include "quant/quantizers/tensor_role.h"

namespace quant {

class DorefaQuantizer : public Quantizer, public RoleAware {
 public:
  struct Options {
    int bits = 4;
    float clip = 1.0f;  // activations
  };
  explicit DorefaQuantizer(Options o);
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);

  absl::Status SetRole(TensorRole role) override;
  TensorRole role() const { return role_; }
  absl::Status Observe(const Tensor& x) override { return absl::OkStatus(); }
  absl::Status ComputeQParams() override { return absl::OkStatus(); }
  bool calibrated() const override { return true; }
  // Weights: codes q in [0, 2^k-1] with w_q = q * 2/(2^k-1) - 1, i.e. scale
  // 2/(2^k-1) and a (non-integer-centred) zero point of (2^k-1)/2 rounded;
  // the exact map is the formula above. Activations: scale clip/(2^k-1), zero point 0.
  const QParams& qparams() const override { return qparams_; }
  absl::StatusOr<QParams> IntegerGrid() const override;
  const QuantSpec& spec() const override { return spec_; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;

 private:
  Options o_;
  TensorRole role_ = TensorRole::kWeights;
  QuantSpec spec_;
  QParams qparams_;
  std::vector<float> dydx_;  // per element, from the last Forward
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_DOREFA_QUANTIZER_H_
