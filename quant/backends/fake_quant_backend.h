// `fake_quant`: the float simulation of a QuantizedModel, as QAT and PyTorch's
// fake-quantized models compute it: every layer works in float on dequantized
// values (input and weights dequantized from the model's integers, float bias),
// and its output is fake-quantized with the layer's scale and zero point,
// q = clamp(zp + nearbyint(y * (1/s)), output_min, output_max). It differs from
// `reference` only where the integer path rounds differently (the fixed-point
// requantization and the int32 bias), which is what the agreement check measures.
#ifndef QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_
#define QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/core/params.h"

namespace quant::backends {

class FakeQuantBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }

 protected:
  absl::Status PrepareImpl() override;
  absl::Status RunImpl(const float* input, int64_t batch, RunOutput* output) override;

 private:
  struct LayerData {
    std::vector<float> weights;  // dequantized, model layout
    std::vector<float> bias;     // float_bias, or the int32 bias dequantized
  };
  std::vector<LayerData> layers_;
  std::vector<float> a_, b_, col_;
  std::vector<int32_t> q_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_
