// A Quantizer (quant/quantizers) at one of a layer's hook points
// (nn::TensorTransform): the glue QAT schemes use to put fake quantization on
// weights and activations.
//
//  - Forward: in training mode the quantizer's observer runs unless frozen
//    (set_observer_frozen), as PyTorch's FakeQuantize with its
//    observer_enabled flag; in eval mode it never updates (except a quantizer
//    that has no qparams at all yet, which is calibrated on that batch rather
//    than failing).
//  - Backward: the quantizer's STE; its learned values (PACT's alpha, LSQ's
//    step size) are exposed as nn::Parameters named like the quantizer's own,
//    so the model hands them to the optimizer and the checkpoint. Values are
//    copied in before each Forward and gradients out after each Backward
//    (a few floats).
//  - An error of the quantizer (e.g. an observer refusing a NaN) cannot be
//    returned through the void hook: the output is then the input unchanged
//    and the first error is kept in status(), which the scheme checks before
//    every step.
#ifndef QUANT_TRAINING_QUANTIZER_TRANSFORM_H_
#define QUANT_TRAINING_QUANTIZER_TRANSFORM_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "quant/nn/layer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {

class QuantizerTransform : public nn::TensorTransform {
 public:
  // `where` names the hook in messages, e.g. "fc1 weights".
  QuantizerTransform(std::unique_ptr<Quantizer> quantizer, std::string where);

  std::string Describe() const override;
  void Forward(const Tensor& in, Tensor* out, bool training) override;
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override;
  std::vector<nn::Parameter*> parameters() override;

  void set_observer_frozen(bool frozen) { observer_frozen_ = frozen; }
  bool observer_frozen() const { return observer_frozen_; }
  Quantizer& quantizer() { return *quantizer_; }
  const std::string& where() const { return where_; }
  // The first error of Forward/Backward (OK when none).
  const absl::Status& status() const { return status_; }

 private:
  void SyncIn();
  void SyncOut(bool values, bool grads);
  void Record(const absl::Status& s, const char* what);

  std::unique_ptr<Quantizer> quantizer_;
  std::string where_;
  bool observer_frozen_ = false;
  absl::Status status_;
  // One nn::Parameter per learned value of the quantizer (same name/shape).
  std::vector<nn::Parameter> mirrors_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_QUANTIZER_TRANSFORM_H_
