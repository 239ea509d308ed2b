#include "quant/nn/layer.h"

#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quant::nn {

absl::Status CheckParameterFits(const std::string& what, const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || (d > 0 && n > INT64_MAX / 8 / d)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": a parameter of shape ", ShapeToString(shape),
                                                     " has more elements than can be counted"));
    }
    n *= d;
  }
  const double bytes = 2.0 * 4.0 * static_cast<double>(n);  // value and gradient
  const double memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  if (memory > 0 && bytes > memory) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: a parameter of shape %s needs %.1f GiB (value and gradient), more than this machine's %.1f GiB",
        what, ShapeToString(shape), bytes / (1 << 30), memory / (1 << 30)));
  }
  return absl::OkStatus();
}

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
