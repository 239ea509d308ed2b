// `weight_only` PTQ: the weights of each conv/linear are quantized to int-N
// with the `quant:` weight specs (per-tensor, per-channel, or per-group via
// granularity per_block along the input axis, in PyTorch's layout) and computed
// with in float after dequantization; activations stay float. Reports the test
// accuracy of that simulation and the packed model size.
#ifndef QUANT_PTQ_WEIGHT_ONLY_PTQ_H_
#define QUANT_PTQ_WEIGHT_ONLY_PTQ_H_

#include <memory>
#include <string>

#include "quant/core/params.h"
#include "quant/ptq/ptq_method.h"

namespace quant::ptq {

class WeightOnlyPtq : public PtqMethod {
 public:
  static absl::StatusOr<std::unique_ptr<PtqMethod>> Create(ParamReader& p);
  std::string Describe() const override { return "weight-only PTQ: int-N weights, float compute"; }
  bool produces_integer_model() const override { return false; }
  absl::Status Check(nn::Model& model, const QuantConfig& quant) const override;
  absl::StatusOr<PtqResult> Apply(const PtqContext& ctx) override;
};

// Replaces the float weights of `net` by their fake-quantized values under the
// layers' weight quantizers (layers whose weights are `none` stay float).
// Adds the packed weight bytes (bits/8 per value + 4 bytes per scale and zero
// point) plus float biases to *bytes.
absl::Status FakeQuantizeWeights(FloatNet* net, const QuantConfig& quant, int64_t* bytes,
                                 std::vector<std::string>* notes);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_WEIGHT_ONLY_PTQ_H_
