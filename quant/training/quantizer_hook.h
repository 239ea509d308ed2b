// QuantizerHook: a Quantizer (quant/quantizers) at a layer's hook point
// (nn::TensorTransform): Forward is the quantizer's fake quantization,
// Backward its straight-through gradient. The quantizer's observer runs while
// the model trains and is off in eval mode.
//
// TensorTransform calls cannot fail, so the first error of any hook sharing
// `error` is kept there (prefixed with where the hook sits) and the hook then
// passes values through unchanged; the scheme checks `error` after every
// step and stops training with it.
#ifndef QUANT_TRAINING_QUANTIZER_HOOK_H_
#define QUANT_TRAINING_QUANTIZER_HOOK_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "quant/nn/layer.h"
#include "quant/quantizers/quantizer.h"

namespace quant {

class QuantizerHook : public nn::TensorTransform {
 public:
  // `where` names the hook in errors, e.g. "fc2 weights".
  QuantizerHook(std::unique_ptr<Quantizer> quantizer, std::string where,
                std::shared_ptr<absl::Status> error);

  std::string Describe() const override;
  void Forward(const Tensor& in, Tensor* out, bool training) override;
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override;

  Quantizer& quantizer() { return *quantizer_; }

 private:
  void Record(const absl::Status& s);

  std::unique_ptr<Quantizer> quantizer_;
  std::string where_;
  std::shared_ptr<absl::Status> error_;
};

}  // namespace quant

#endif  // QUANT_TRAINING_QUANTIZER_HOOK_H_
