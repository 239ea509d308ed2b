// BatchNorm folding for quantization-aware training (Jacob et al. 2018,
// section 3.2; PyTorch 1.13's ConvBn2d / ConvBnReLU2d QAT modules,
// _forward_approximate), and the fold a later conversion applies.
//
// A conv (or linear) followed by BatchNorm is deployed as one conv with
//   W_fold[c] = W[c] * gamma[c] / sqrt(running_var[c] + eps)
//   b_fold[c] = (b[c] - running_mean[c]) * gamma[c] / sqrt(running_var[c] + eps) + beta[c]
// so QAT must fake-quantize W_fold, not W. BnFoldTransform is the conv's
// weight hook that does so while keeping the layers separate:
//   effective weight = fake_quant(W * s) / s,   s = gamma / sqrt(running_var + eps)
// The conv is linear in its weight, so conv(x, fake_quant(W s) / s) equals
// PyTorch's conv(x, fake_quant(W s)) / s; the conv then adds its bias and the
// BatchNorm layer normalises as usual: with batch statistics while they are
// live, with the running ones once frozen (then the pair computes exactly
// conv(x, fake_quant(W_fold)) + b_fold, what the integer model runs).
// Gradients: d/dW is the quantizer's STE (the 1/s and s cancel); the path
// from gamma through s is not differentiated (under the STE it is zero except
// for clipped weights), gamma and beta get their gradients from the BN layer.
#ifndef QUANT_TRAINING_BN_FOLDING_H_
#define QUANT_TRAINING_BN_FOLDING_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/nn/batch_norm.h"
#include "quant/nn/layer.h"
#include "quant/training/quantizer_transform.h"

namespace quant {

// nn::BatchNorm's eps (its default, which every quantlab model uses; the
// layer does not expose it).
inline constexpr float kBatchNormEps = 1e-5f;

// The per-channel factor gamma / sqrt(running_var + eps), computed as
// nn::BatchNorm computes its eval-mode invstd.
std::vector<float> BatchNormScale(nn::BatchNorm& bn, float eps = kBatchNormEps);

class BnFoldTransform : public nn::TensorTransform {
 public:
  // `quantizer` fake-quantizes the folded weight (it is the weight hook's
  // quantizer; owned jointly so the scheme can freeze its observer).
  BnFoldTransform(nn::BatchNorm* bn, std::shared_ptr<QuantizerTransform> quantizer);

  std::string Describe() const override;
  void Forward(const Tensor& in, Tensor* out, bool training) override;
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override;
  std::vector<nn::Parameter*> parameters() override { return quantizer_->parameters(); }

  QuantizerTransform& quantizer() { return *quantizer_; }
  nn::BatchNorm& batch_norm() { return *bn_; }

 private:
  nn::BatchNorm* bn_;
  std::shared_ptr<QuantizerTransform> quantizer_;
  std::vector<float> scale_;  // s of the last Forward
  Tensor folded_, quantized_, grad_folded_, grad_quantized_;
};

// What a conversion to an integer model does with a conv/linear + BatchNorm
// pair trained with BnFoldTransform: fold the running statistics into the
// weight and bias (formulas above). The folded weight is then quantized with
// the weight quantizer's qparams (they were observed on exactly this tensor).
struct FoldedWeights {
  Tensor weight;
  Tensor bias;  // [out_channels]
};
FoldedWeights FoldBatchNorm(const Tensor& weight, const Tensor* bias, nn::BatchNorm& bn,
                            float eps = kBatchNormEps);

}  // namespace quant

#endif  // QUANT_TRAINING_BN_FOLDING_H_
