// `reference`: runs a QuantizedModel with the readable kernels of
// reference_kernels.h on the shared executor (int32 buffers). It is the
// definition the other backends are checked against, and it runs every op the
// format can express. `gemmlowp` derives from it and replaces the
// fully_connected / conv2d kernels.
#ifndef QUANT_BACKENDS_REFERENCE_BACKEND_H_
#define QUANT_BACKENDS_REFERENCE_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/backends/reference_kernels.h"
#include "quant/core/params.h"

namespace quant::backends {

class ReferenceBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }

 protected:
  size_t ElementBytes() const override { return sizeof(int32_t); }
  absl::Status BeginPrepare() override;
  absl::Status PrepareOp(int op) override;
  absl::Status RunInput(const float* input, int64_t batch, void* out) override;
  absl::Status RunOp(int op, int64_t batch) override;
  void WriteOutput(const void* out, int64_t batch, RunOutput* output) override;
  bool ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const override;
  bool WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const override;

  struct OpData {
    std::vector<int32_t> weights, weight_zero_point, bias;
  };
  std::vector<OpData> ops_;
  std::vector<reference::ConcatInput> concat_inputs_;  // scratch, keeps its capacity
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_REFERENCE_BACKEND_H_
