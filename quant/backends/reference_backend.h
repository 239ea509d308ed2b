// `reference`: runs a QuantizedModel with the readable kernels of
// reference_kernels.h. It is the definition the other backends are checked
// against, and it runs everything the format can express.
#ifndef QUANT_BACKENDS_REFERENCE_BACKEND_H_
#define QUANT_BACKENDS_REFERENCE_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/core/params.h"

namespace quant::backends {

class ReferenceBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }

 protected:
  absl::Status PrepareImpl() override;
  absl::Status RunImpl(const float* input, int64_t batch, RunOutput* output) override;

 private:
  struct LayerData {
    std::vector<int32_t> weights, weight_zero_point, bias;
  };
  std::vector<LayerData> layers_;
  std::vector<int32_t> a_, b_;  // ping-pong activations
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_REFERENCE_BACKEND_H_
