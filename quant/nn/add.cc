#include "quant/nn/add.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<Shape> Add::BuildInputs(const std::vector<Shape>& inputs) {
  if (inputs.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("add takes two inputs, but ", inputs.size(), " are given"));
  }
  if (inputs[0] != inputs[1]) {
    return absl::InvalidArgumentError(absl::StrCat("add needs two inputs of the same shape, got ",
                                                   ShapeToString(inputs[0]), " and ", ShapeToString(inputs[1])));
  }
  return inputs[0];
}

void Add::ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) {
  EnsureShape(y, x[0]->shape());
  const float* a = x[0]->data();
  const float* b = x[1]->data();
  float* out = y->data();
  const int64_t n = y->numel();
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void Add::BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                         const std::vector<Tensor*>& dx) {
  for (Tensor* d : dx) {
    if (d == nullptr) continue;
    EnsureShape(d, dy.shape());
    std::copy(dy.data(), dy.data() + dy.numel(), d->data());
  }
}

namespace {

absl::StatusOr<std::unique_ptr<Layer>> CreateAdd(ParamReader& p) { return std::unique_ptr<Layer>(new Add("")); }

}  // namespace

QUANTLAB_REGISTER(Layer, "add", CreateAdd, "element-wise sum of two values of the same shape (residual)");

}  // namespace quant::nn
