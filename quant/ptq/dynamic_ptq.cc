#include "quant/ptq/dynamic_ptq.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/ptq/weight_only_ptq.h"

namespace quant::ptq {

absl::StatusOr<std::unique_ptr<PtqMethod>> DynamicPtq::Create(ParamReader& p) {
  const int64_t batch = p.IntInRange("batch_size", 256, 1, 65536,
                                     "test batch size: activation qparams are computed per batch");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<PtqMethod>(new DynamicPtq(batch));
}

std::string DynamicPtq::Describe() const {
  return absl::StrCat("dynamic PTQ: quantized weights, activation qparams per batch of ", batch_size_);
}

absl::Status DynamicPtq::Check(nn::Model& model, const QuantConfig& quant) const {
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(model));
  if (!quant.quantizes_weights() || !quant.quantizes_activations()) {
    return absl::InvalidArgumentError("ptq.method dynamic needs quant.weights and quant.activations specs");
  }
  for (const WeightedLayer& w : net.weighted) {
    RETURN_IF_ERROR(quant.WeightQuantizer(w.name).status());
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> a, quant.ActivationQuantizer(w.name));
    if (a != nullptr && a->spec().granularity != Granularity::kPerTensor) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer '", w.name, "': dynamic activation quantization is per_tensor"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PtqResult> DynamicPtq::Apply(const PtqContext& ctx) {
  PtqResult r;
  r.method = "dynamic";
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(*ctx.model));
  ASSIGN_OR_RETURN(r.float_test_accuracy,
                   FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
  RETURN_IF_ERROR(FakeQuantizeWeights(&net, *ctx.quant, &r.model_bytes, &r.notes));
  const QuantConfig& quant = *ctx.quant;
  Hook before = [&](int widx, float* x, int64_t n) -> absl::Status {
    const std::string& name = net.weighted[widx].name;
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> a, quant.ActivationQuantizer(name));
    if (a == nullptr) return absl::OkStatus();
    Tensor t({n}, std::vector<float>(x, x + n)), y;
    RETURN_IF_ERROR(a->Observe(t));
    RETURN_IF_ERROR(a->ComputeQParams());
    RETURN_IF_ERROR(a->Forward(t, &y));
    std::copy(y.data(), y.data() + n, x);
    return absl::OkStatus();
  };
  ASSIGN_OR_RETURN(r.test_accuracy,
                   FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, batch_size_, before));
  r.notes.push_back(absl::StrCat("activation qparams per test batch of ", batch_size_));
  return r;
}

QUANTLAB_REGISTER(PtqMethod, "dynamic", DynamicPtq::Create,
                  "quantized weights; each layer's input quantized per batch at run time (float form)");

}  // namespace quant::ptq
