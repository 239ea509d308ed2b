// `fake_quant`: the float simulation of a QuantizedModel, as QAT and PyTorch's
// fake-quantized models compute it: every op works in float on dequantized
// values (input and weights dequantized from the model's integers, float bias),
// and its output is fake-quantized with its output tensor's scale and zero point,
// q = clamp(zp + nearbyint(y * (1/s)), output_min, output_max). It differs from
// `reference` only where the integer path rounds differently (the fixed-point
// requantization, the int32 bias, the add's shifted arithmetic), which is what the
// agreement check measures. Runs on the shared executor with float buffers.
//
// `fake_quant_exact`: the same float simulation in integer-exact mode (QAT's
// train.integer_exact, quant/training/integer_exact.h): conv/linear outputs recover
// the int32 accumulator from the float result, add the model's int32 bias and
// requantize with the op's fixed-point multiplier and shift as `reference` does;
// average pools round the window sum with the op's multiplier likewise. Add,
// concat and the lookup-table ops stay float-simulated.
#ifndef QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_
#define QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/params.h"

namespace quant::backends {

class FakeQuantBackend : public Backend {
 public:
  explicit FakeQuantBackend(bool integer_exact = false) : integer_exact_(integer_exact) {}
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static absl::StatusOr<std::unique_ptr<Backend>> CreateExact(ParamReader& params);
  static const BackendProfile& Profile();
  static const BackendProfile& ExactProfile();
  const BackendProfile& profile() const override { return integer_exact_ ? ExactProfile() : Profile(); }

 protected:
  size_t ElementBytes() const override { return sizeof(float); }
  absl::Status BeginPrepare() override;
  absl::Status PrepareOp(int op) override;
  absl::Status RunInput(const float* input, int64_t batch, void* out) override;
  absl::Status RunOp(int op, int64_t batch) override;
  void WriteOutput(const void* out, int64_t batch, RunOutput* output) override;
  bool ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const override;
  bool WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const override;

 private:
  std::vector<floatk::OpWeights> weights_;  // per op: dequantized weights, float bias
  std::vector<float> col_;
  std::vector<const float*> inputs_;
  std::vector<int32_t> q_;
  bool integer_exact_ = false;
  // integer_exact: per op, the int32 bias, multipliers and shifts (empty for other ops).
  struct Exact {
    std::vector<int32_t> bias, multiplier, shift;
    std::vector<double> acc_scale;  // s_in * s_w[o]
  };
  std::vector<Exact> exact_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_FAKE_QUANT_BACKEND_H_
