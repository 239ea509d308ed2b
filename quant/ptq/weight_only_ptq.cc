#include "quant/ptq/weight_only_ptq.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::ptq {

absl::Status FakeQuantizeWeights(FloatNet* net, const QuantConfig& quant, int64_t* bytes,
                                 std::vector<std::string>* notes) {
  for (WeightedLayer& w : net->weighted) {
    auto* fw = net->model.mutable_tensors(w.weight_tensor)->mutable_float_data();
    ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> wq, quant.WeightQuantizer(w.name));
    *bytes += 4 * static_cast<int64_t>(w.bias.size());
    if (wq == nullptr) {
      *bytes += 4 * w.torch_weight.numel();
      if (notes) notes->push_back(absl::StrCat(w.name, ": weights float"));
      continue;
    }
    RETURN_IF_ERROR(wq->Observe(w.torch_weight));
    if (absl::Status s = wq->ComputeQParams(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("layer '", w.name, "' weights: ", std::string(s.message())));
    }
    for (float s : wq->qparams().scale) {
      if (!std::isfinite(s) || s <= 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat("layer '", w.name, "' weights: scale ", s));
      }
    }
    Tensor fq;
    RETURN_IF_ERROR(wq->Forward(w.torch_weight, &fq));
    for (size_t j = 0; j < w.perm.size(); ++j) fw->Set(static_cast<int>(j), fq.data()[w.perm[j]]);
    *bytes += (w.torch_weight.numel() * wq->spec().bits + 7) / 8 + 8 * wq->qparams().size();
    if (notes) notes->push_back(absl::StrCat(w.name, ": weights ", wq->Describe()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PtqMethod>> WeightOnlyPtq::Create(ParamReader& p) {
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<PtqMethod>(new WeightOnlyPtq());
}

absl::Status WeightOnlyPtq::Check(nn::Model& model, const QuantConfig& quant) const {
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(model));
  if (!quant.quantizes_weights()) {
    return absl::InvalidArgumentError("ptq.method weight_only needs quant.weights (a weight spec)");
  }
  for (const WeightedLayer& w : net.weighted) RETURN_IF_ERROR(quant.WeightQuantizer(w.name).status());
  return absl::OkStatus();
}

absl::StatusOr<PtqResult> WeightOnlyPtq::Apply(const PtqContext& ctx) {
  PtqResult r;
  r.method = "weight_only";
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(*ctx.model));
  ASSIGN_OR_RETURN(r.float_test_accuracy,
                   FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
  RETURN_IF_ERROR(FakeQuantizeWeights(&net, *ctx.quant, &r.model_bytes, &r.notes));
  ASSIGN_OR_RETURN(r.test_accuracy, FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
  return r;
}

QUANTLAB_REGISTER(PtqMethod, "weight_only", WeightOnlyPtq::Create,
                  "int-N weights (per-tensor/per-channel/per-group), float activations and compute");

}  // namespace quant::ptq
