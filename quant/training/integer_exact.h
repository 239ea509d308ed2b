// QAT's integer-exact simulation mode (train: {scheme: qat, integer_exact: true}):
// the fake-quantized forward pass computes, value for value, what the integer
// model of `ptq: {method: from_qat}` computes on the reference backend, so that
// what QAT trains against is what gets deployed.
//
// The default QAT mode follows PyTorch 1.13 (float bias, y * (1/s) rounded half to
// even, float model input; the golden vectors define it). The integer model
// differs from it in four places, and this mode replaces each with the integer
// arithmetic (quant/backends/reference_kernels.h, quant/backends/fixed_point.h):
//
//  1. the model input is fake-quantized (nn::Model::set_input_transform) to an
//     8-bit min/max grid, which from_qat gives the integer model's input tensor;
//  2. conv/linear outputs (IntegerRequantTransform, at the output hook of the
//     conv/linear's fusion group): the int32 accumulator is recovered from the
//     float output, acc = nearbyint((y - b) / (s_in * s_w[c])) (exact: y is
//     s_in * s_w[c] * an integer plus b, up to float rounding far below one unit),
//     the bias is quantized to int32 at s_in * s_w[c] as the converter does, and
//     the output is requantized with the reference's fixed-point multiplier, shift
//     and rounding: q = clamp(zp + MultiplyByQuantizedMultiplier(acc + b_int, M, n))
//     with QuantizeMultiplier(s_in * s_w[c] / s_out) and the fused ReLU/ReLU6
//     clamp. A BatchNorm of the group is folded from its running statistics
//     (b_fold = (b - mean) * gamma / sigma + beta, bn_folding.h); while the BN
//     normalises with batch statistics (before freeze_bn_after_epoch) the
//     group's output stays the plain fake quantization.
//  3. average pools (AveragePoolTransform): the average is rounded to the input's
//     grid as the reference does (sum of codes times the fixed-point 1/window).
//  4. (not replaced) add, concat, hardswish, sigmoid and tanh keep the float
//     fake quantization: the reference's add (TFLite's shifted fixed-point) and
//     lookup tables can round a value differently near a tie; the numerical
//     debugger shows where.
// Gradients are the fake quantizer's straight-through estimator in every case.
#ifndef QUANT_TRAINING_INTEGER_EXACT_H_
#define QUANT_TRAINING_INTEGER_EXACT_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/nn/batch_norm.h"
#include "quant/nn/layer.h"
#include "quant/quantizers/quantizer.h"
#include "quant/training/quantizer_transform.h"

namespace quant {

// The conv/linear output stage of the integer model, as an output hook.
class IntegerRequantTransform : public nn::TensorTransform {
 public:
  enum class Clamp { kNone, kRelu, kRelu6 };
  struct Source {
    std::string layer;                  // the conv/linear, for messages
    Quantizer* input = nullptr;         // the grid of the conv/linear's input (s_in)
    Quantizer* weights = nullptr;       // the weight quantizer (s_w, per channel or per tensor)
    const nn::Parameter* bias = nullptr;  // the conv/linear's bias (null: none)
    nn::BatchNorm* batch_norm = nullptr;  // the group's BatchNorm (null: none)
    Clamp clamp = Clamp::kNone;           // the group's fused activation
  };
  IntegerRequantTransform(std::shared_ptr<QuantizerTransform> output, Source source);

  std::string Describe() const override;
  void Forward(const Tensor& in, Tensor* out, bool training) override;
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override;
  std::vector<nn::Parameter*> parameters() override { return output_->parameters(); }

  QuantizerTransform& output_quantizer() { return *output_; }
  // OK, or the first reason the integer path could not run (then the plain fake
  // quantization was used for that batch); the scheme checks it like a quantizer's.
  const absl::Status& status() const { return status_; }

 private:
  std::shared_ptr<QuantizerTransform> output_;
  Source src_;
  absl::Status status_;
};

// The reference's average pool rounding, as the output hook of an average pool
// (window = kernel * kernel, or H * W for the global average pool) whose output
// keeps its input's grid (the integer model gives it the input's qparams).
class AveragePoolTransform : public nn::TensorTransform {
 public:
  AveragePoolTransform(std::string layer, Quantizer* input, int64_t window)
      : layer_(std::move(layer)), input_(input), window_(window) {}
  std::string Describe() const override;
  void Forward(const Tensor& in, Tensor* out, bool training) override;
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override;
  const absl::Status& status() const { return status_; }

 private:
  std::string layer_;
  Quantizer* input_;
  int64_t window_;
  absl::Status status_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_INTEGER_EXACT_H_
