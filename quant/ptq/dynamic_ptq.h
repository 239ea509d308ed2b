// `dynamic` PTQ, as PyTorch's dynamic quantization of Linear: weights quantized
// once (the `quant:` weight spec, int8), and the input of every conv/linear
// quantized at run time with qparams computed from that very batch (the layer's
// activation spec and observer, fresh per batch); the layer computes in float
// on the dequantized values and its output stays float. Reported in that
// float (fake-quant) form: there is no integer model for the backends.
#ifndef QUANT_PTQ_DYNAMIC_PTQ_H_
#define QUANT_PTQ_DYNAMIC_PTQ_H_

#include <memory>
#include <string>

#include "quant/core/params.h"
#include "quant/ptq/ptq_method.h"

namespace quant::ptq {

class DynamicPtq : public PtqMethod {
 public:
  static absl::StatusOr<std::unique_ptr<PtqMethod>> Create(ParamReader& p);
  explicit DynamicPtq(int64_t batch_size) : batch_size_(batch_size) {}
  std::string Describe() const override;
  bool produces_integer_model() const override { return false; }
  absl::Status Check(nn::Model& model, const QuantConfig& quant) const override;
  absl::StatusOr<PtqResult> Apply(const PtqContext& ctx) override;

 private:
  int64_t batch_size_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_DYNAMIC_PTQ_H_
