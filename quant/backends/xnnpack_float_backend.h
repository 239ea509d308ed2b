// `xnnpack_f32` and `xnnpack_f16`: the float model carried in the QuantizedModel
// (the weight/bias tensors' float_data, fused_activation) on XNNPACK's f32 or f16
// operators, on the shared executor (float or half buffers): the speed baseline for
// the integer backends. Operators are created once (PrepareOp) and set up when the
// batch size changes. The f16 variant converts the input with convert_nc_f32_f16,
// hands XNNPACK fp32 weights (XNN_FLAG_FP32_STATIC_WEIGHTS) and converts the output
// back. Ops without an XNNPACK operator of that precision in the 2022-02 release
// (tanh and concat; sigmoid and average_pool2d for f16) are refused by the profile.
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
  size_t ElementBytes() const override { return f16_ ? 2 : 4; }
  absl::Status BeginPrepare() override;
  absl::Status PrepareOp(int op) override;
  absl::Status SetUpBatch(int64_t batch) override;
  absl::Status RunInput(const float* input, int64_t batch, void* out) override;
  absl::Status RunOp(int op, int64_t batch) override;
  void WriteOutput(const void* out, int64_t batch, RunOutput* output) override;

 private:
  bool f16_;
  xnn::Operator convert_in_, convert_out_;  // f16 only
  std::vector<xnn::Operator> ops_;           // null for flatten/reshape (a copy)
  std::vector<float> output_;                // f16: the output converted back
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_XNNPACK_FLOAT_BACKEND_H_
