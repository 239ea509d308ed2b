// 1-bit and ternary quantizers for binary/ternary networks, all without
// observers (their grids come from the tensor itself at every Forward):
//
//  `binary`  y = sign(x) in {-1, +1} (sign(0) = +1, as BinaryNet's Sign),
//            grad_x = grad_y * 1{|x| <= clip}: the hardtanh-clipped STE
//            (Courbariaux, Hubara et al. 2016). Weights or activations.
//  `xnor`    y = alpha_g * sign(x), alpha_g = mean |x| over the group g
//            (XNOR-Net, Rastegari et al. 2016). Groups are the slices along
//            axis 0: output channels for weights, samples for activations
//            (`granularity: per_channel`, default) or the whole tensor
//            (`per_tensor`). Exact gradient of alpha*sign with the clipped STE
//            for sign:  grad_x_j = grad_y_j * alpha * 1{|x_j| <= clip}
//                                + sign(x_j) / n * sum_i grad_y_i * sign(x_i)
//            (n = group size); the paper's "1/n + alpha * STE" is its diagonal.
//  `ternary` TWN (Li & Liu 2016): delta = threshold * mean |x| (threshold
//            0.7), alpha = mean of |x_i| over |x_i| > delta, y = alpha *
//            sign(x) * 1{|x| > delta}; per tensor (the paper) or per channel.
//            grad_x = grad_y (the plain STE of the paper's code: the gradient
//            of the ternary weights updates the float weights).
//
// NaN inputs give NaN outputs and zero gradient. QuantizeToInt gives the
// codes: binary/xnor 0 for -1 and 1 for +1 (the bit of an XNOR-popcount
// kernel), ternary -1/0/+1.
#ifndef QUANT_QUANTIZERS_BINARY_QUANTIZER_H_
#define QUANT_QUANTIZERS_BINARY_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/quantizers/quantizer.h"

namespace quant {

// What the three share: no observer, nothing to calibrate, the last input
// kept for Backward.
class SignQuantizerBase : public Quantizer {
 public:
  absl::Status Observe(const Tensor& x) override { return absl::OkStatus(); }
  absl::Status ComputeQParams() override { return absl::OkStatus(); }
  bool calibrated() const override { return true; }
  const QParams& qparams() const override { return qparams_; }
  const QuantSpec& spec() const override { return spec_; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;

 protected:
  // y from x (same shape, y != &x); the group scales are stored as needed.
  virtual absl::Status Quantize(const Tensor& x, Tensor* y) = 0;
  virtual void Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const = 0;
  // Number of groups along axis 0 (1 for per-tensor) and the group size.
  static void Groups(const Tensor& x, bool per_channel, int64_t* groups, int64_t* size);

  QuantSpec spec_;
  QParams qparams_;  // scales of the last Forward (xnor, ternary), zero points 0
  Tensor input_;     // the last Forward's input
  bool passed_through_ = false;  // the last Forward had fake quant disabled
};

class BinaryQuantizer : public SignQuantizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);
  explicit BinaryQuantizer(float clip);
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;

 protected:
  absl::Status Quantize(const Tensor& x, Tensor* y) override;
  void Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const override;

 private:
  float clip_;
};

class XnorQuantizer : public SignQuantizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);
  XnorQuantizer(float clip, bool per_channel);
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;

 protected:
  absl::Status Quantize(const Tensor& x, Tensor* y) override;
  void Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const override;

 private:
  float clip_;
  bool per_channel_;
};

class TernaryQuantizer : public SignQuantizerBase {
 public:
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);
  TernaryQuantizer(float threshold, bool per_channel);
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;
  // Thresholds delta of the last Forward, one per group.
  const std::vector<float>& deltas() const { return deltas_; }

 protected:
  absl::Status Quantize(const Tensor& x, Tensor* y) override;
  void Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const override;

 private:
  float threshold_;
  bool per_channel_;
  std::vector<float> deltas_;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_BINARY_QUANTIZER_H_
