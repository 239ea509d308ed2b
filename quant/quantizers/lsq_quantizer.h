// `lsq`: Learned Step Size Quantization (Esser et al., ICLR 2020, "LSQ").
//
//   v = x / s,  y = round(clamp(v, -Qn, Qp)) * s        (round half to even)
//   dy/dx = 1 for -Qn < v < Qp, else 0                    (STE with clipping)
//   dy/ds = round(v) - v inside, -Qn below, Qp above      (the paper's eq. 3)
//   d(loss)/ds is multiplied by g = 1 / sqrt(N * Qp)      (gradient scale)
//
// with Qn = 2^(b-1), Qp = 2^(b-1) - 1 for a signed grid and Qn = 0,
// Qp = 2^b - 1 for an unsigned one. N is the number of weights per step size
// (a layer's weights, or one output channel's with granularity: per_channel)
// or, for activations, the number of features of one sample. The step size s
// is a trainable parameter ("step_size", one per group), initialised from the
// first tensor seen as 2 * mean(|x|) / sqrt(Qp); a non-positive value means
// "not initialised yet", so a value loaded from a checkpoint is kept.
//
// `signed: auto` (default) picks the grid from the first tensor: signed when
// it has a negative value (weights, logits), unsigned otherwise (after ReLU).
//
// `lsq_plus` (Bhalgat et al. 2020, LSQ+) adds a learned offset beta
// ("offset", one per step size) for asymmetric ranges, on an unsigned grid by
// default:
//   v = (x - beta) / s,  y = round(clamp(v, -Qn, Qp)) * s + beta
//   dy/dbeta = 0 inside, 1 where clipped (scaled by the same g)
// initialised from the first tensor's range: s = (max - min) / (Qn + Qp),
// beta = min + Qn * s (so the grid spans [min, max]). `integer_offset: true` uses
// the offset rounded to a whole number of steps, -round(-beta/s) * s, in Forward
// (beta still learns through the same gradient): the grid then has an integer zero
// point and deploys exactly (ptq from_qat refuses a fractional one).
#ifndef QUANT_QUANTIZERS_LSQ_QUANTIZER_H_
#define QUANT_QUANTIZERS_LSQ_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/quantizers/quantizer.h"
#include "quant/quantizers/tensor_role.h"

namespace quant {

class LsqQuantizer : public Quantizer, public RoleAware {
 public:
  enum class Sign { kAuto, kSigned, kUnsigned };
  struct Options {
    int bits = 4;
    Sign sign = Sign::kAuto;
    bool per_channel = false;  // one step size per index of axis 0
    bool learn_offset = false;  // lsq_plus
    bool integer_offset = false;  // lsq_plus: beta used as round(-beta/s) whole steps
  };
  explicit LsqQuantizer(Options o);
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Quantizer>> CreatePlus(ParamReader& p);

  absl::Status SetRole(TensorRole role) override;

  // Initialises the step size(s) from x when not yet initialised.
  absl::Status Observe(const Tensor& x) override;
  absl::Status ComputeQParams() override;
  bool calibrated() const override { return initialised(); }
  const QParams& qparams() const override { return qparams_; }
  absl::StatusOr<QParams> IntegerGrid() const override;
  const QuantSpec& spec() const override { return spec_; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::vector<LearnedParameter*> parameters() override {
    if (o_.learn_offset) return {&step_, &offset_};
    return {&step_};
  }
  std::string Describe() const override;

  // Qn and Qp of the grid (valid once the sign is known).
  int64_t qn() const { return qn_; }
  int64_t qp() const { return qp_; }
  // The gradient scale g used by the last Backward().
  double grad_scale() const { return grad_scale_; }

 private:
  bool initialised() const;
  float Beta(int64_t g) const;  // the offset Forward uses
  absl::Status Prepare(const Tensor& x);  // sign, groups, step init
  void SetGrid(bool is_signed);

  Options o_;
  TensorRole role_ = TensorRole::kWeights;
  bool sign_known_ = false;
  int64_t qn_ = 0, qp_ = 0;
  QuantSpec spec_;
  QParams qparams_;
  static absl::StatusOr<std::unique_ptr<Quantizer>> Read(ParamReader& p, bool plus);

  LearnedParameter step_{"step_size", Tensor(), Tensor()};
  LearnedParameter offset_{"offset", Tensor(), Tensor()};  // lsq_plus
  // From the last Forward(): dy/ds per element, the STE mask, the shape.
  std::vector<float> dyds_;
  std::vector<uint8_t> mask_;
  int64_t last_batch_ = 1;
  double grad_scale_ = 0;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_LSQ_QUANTIZER_H_
