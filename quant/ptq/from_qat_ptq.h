// PTQ method `from_qat`: the integer model of a QAT-trained network with exactly
// the quantization it was trained with (no re-observation):
//
//   train: {scheme: qat, ...}
//   ptq:   {method: from_qat}
//   evaluate: {backends: [reference, gemmlowp, xnnpack]}
//
// It reads the fake quantizers that the qat scheme left on the model's hook points
// (quant/training/qat_scheme.h) after training:
//  - weights: each conv/linear's weight quantizer applied once more, in eval mode,
//    to the BN-folded weight (the BatchNorm folded as QAT folded it:
//    quant/training/bn_folding.h; a weight quantized before an unfolded BatchNorm,
//    fold_bn: false, is refused), and the integer codes read off the quantizer's
//    Quantizer::IntegerGrid(): frozen observer ranges, LSQ step sizes, DoReFa's
//    grid (odd codes in [-n, n] at scale 1/n), per-channel scales. Every weight is
//    checked to lie on that grid; one that does not is an error naming the layer.
//  - activations: each quant point's output quantizer's grid (frozen observer
//    ranges, LSQ/LSQ+ steps and whole-step offsets, PACT's alpha / (2^b - 1),
//    DoReFa's clip / (2^b - 1), sigmoid/tanh fixed qparams) becomes the tensor's
//    scale, zero point and output clamp [quant_min, quant_max]: 4-bit grids live in
//    int8 containers with their narrow clamps; an unsigned 8-bit grid [0, 255] is
//    moved to int8 by subtracting 128 from codes and zero point (same values).
//    Average pools, which QAT leaves unquantized, keep their input's grid (the
//    integer model rounds the average to it; said in the notes).
//  - the model input, which QAT does not quantize: an 8-bit min/max grid over the
//    calibration images (for Fashion-MNIST's bytes this is the pixel grid itself, up
//    to the zero point's rounding, said in the notes).
//  - biases: int32 at s_in * s_w, as for static PTQ (QAT adds them in float; the
//    one rounding the conversion adds, reported in the record as the difference
//    between the simulated and deployed accuracies).
// A tensor QAT left float (`activations: none` on a quant point), a quantizer with
// no integer grid (format_cast, binary, ...) or a grid wider than 8 bits is refused,
// naming the layer and why.
//
// PtqResult::test_accuracy is the QAT model's own (fake-quantized) test accuracy,
// and simulated_predictions its top-1 per test image, so that the record holds the
// simulated and the deployed accuracies side by side.
#ifndef QUANT_PTQ_FROM_QAT_PTQ_H_
#define QUANT_PTQ_FROM_QAT_PTQ_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/ptq/ptq_method.h"

namespace quant::ptq {

class FromQatPtq : public PtqMethod {
 public:
  FromQatPtq(int64_t input_images, int64_t batch_size) : input_images_(input_images), batch_size_(batch_size) {}
  static absl::StatusOr<std::unique_ptr<PtqMethod>> Create(ParamReader& p);
  std::string Describe() const override;
  bool produces_integer_model() const override { return true; }
  bool needs_qat_training() const override { return true; }
  absl::Status Check(nn::Model& model, const QuantConfig& quant) const override;
  absl::StatusOr<PtqResult> Apply(const PtqContext& ctx) override;

 private:
  int64_t input_images_;
  int64_t batch_size_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_FROM_QAT_PTQ_H_
