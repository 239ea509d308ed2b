// `xnnpack_f32` and `xnnpack_f16`: the float model carried in the QuantizedModel
// (float_weights/float_bias, fused_activation) on XNNPACK's f32 or f16
// operators: the speed baseline for the integer backends. Same structure as
// `xnnpack` (operators created once, set up when the batch size changes). The
// f16 variant converts the input with convert_nc_f32_f16, hands XNNPACK fp32
// weights (XNN_FLAG_FP32_STATIC_WEIGHTS) and converts the logits back.
// Two registrations share this class: they differ only in precision.
#ifndef QUANT_BACKENDS_XNNPACK_FLOAT_BACKEND_H_
#define QUANT_BACKENDS_XNNPACK_FLOAT_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/backends/xnnpack_util.h"
#include "quant/core/params.h"

namespace quant::backends {

class XnnpackFloatBackend : public Backend {
 public:
  explicit XnnpackFloatBackend(bool f16) : f16_(f16) {}
  static absl::StatusOr<std::unique_ptr<Backend>> CreateF32(ParamReader& params);
  static absl::StatusOr<std::unique_ptr<Backend>> CreateF16(ParamReader& params);
  static const BackendProfile& ProfileF32();
  static const BackendProfile& ProfileF16();
  const BackendProfile& profile() const override { return f16_ ? ProfileF16() : ProfileF32(); }

 protected:
  absl::Status PrepareImpl() override;
  absl::Status RunImpl(const float* input, int64_t batch, RunOutput* output) override;

 private:
  struct Step {
    xnn::Operator op;  // null for flatten (aliases its input)
    bool conv = false;
    bool pool = false;
    std::vector<uint8_t> out;  // float or half values, padded
  };
  absl::Status SetUp(int64_t batch);

  bool f16_;
  xnn::Operator convert_in_, convert_out_;  // f16 only
  std::vector<Step> steps_;
  std::vector<uint8_t> input_;   // the input copied (f32) or converted (f16)
  std::vector<float> output_;   // f16: logits converted back
  int64_t setup_batch_ = -1;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_XNNPACK_FLOAT_BACKEND_H_
