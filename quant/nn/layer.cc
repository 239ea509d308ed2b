#include "quant/nn/layer.h"

#include "absl/strings/str_cat.h"

namespace quant::nn {

absl::StatusOr<Shape> Layer::BuildInputs(const std::vector<Shape>& inputs) {
  if (inputs.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(type(), " takes one input, but ", inputs.size(), " are given"));
  }
  return Build(inputs[0]);
}

const Tensor& Layer::EffectiveWeight(const Parameter& weight) {
  if (!weight_transform_) return weight.value;
  EnsureShape(&effective_weight_, weight.value.shape());
  weight_transform_->Forward(weight.value, &effective_weight_, training_);
  return effective_weight_;
}

Tensor* Layer::EffectiveWeightGrad(Parameter& weight) {
  if (!weight_transform_) return &weight.grad;
  EnsureShape(&effective_weight_grad_, weight.value.shape());
  return &effective_weight_grad_;
}

void Layer::FinishWeightGrad(Parameter& weight) {
  if (!weight_transform_) return;
  weight_transform_->Backward(weight.value, effective_weight_grad_, &weight.grad);
}

}  // namespace quant::nn
