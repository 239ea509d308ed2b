// `static` PTQ: observers and calibration methods (from the `quant:` specs) run
// over `calibration_batches` batches of training images on the float model
// (BN folded, activations after the fused ReLU/ReLU6, as PyTorch's observers see
// them), then the qparams are frozen and the model converted to a QuantizedModel
// (int8/uint8 weights per-tensor or per-channel, int32 biases, fixed-point
// requantization, clamps) that every integer backend runs. `passes:` (ptq_pass.h:
// cle, bias_absorption, bias_correction, ...) transform the float net first, in order.
#ifndef QUANT_PTQ_STATIC_PTQ_H_
#define QUANT_PTQ_STATIC_PTQ_H_

#include <memory>
#include <string>

#include "quant/core/params.h"
#include "quant/ptq/ptq_method.h"
#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

class StaticPtq : public PtqMethod {
 public:
  static absl::StatusOr<std::unique_ptr<PtqMethod>> Create(ParamReader& p);
  StaticPtq(int64_t calibration_batches, int64_t batch_size, std::vector<std::unique_ptr<PtqPass>> passes)
      : calibration_batches_(calibration_batches), batch_size_(batch_size), passes_(std::move(passes)) {}

  std::string Describe() const override;
  bool produces_integer_model() const override { return true; }
  absl::Status Check(nn::Model& model, const QuantConfig& quant) const override;
  absl::StatusOr<PtqResult> Apply(const PtqContext& ctx) override;

 private:
  int64_t calibration_batches_;
  int64_t batch_size_;
  std::vector<std::unique_ptr<PtqPass>> passes_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_STATIC_PTQ_H_
