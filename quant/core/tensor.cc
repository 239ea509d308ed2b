#include "quant/core/tensor.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_join.h"

namespace quant {
namespace {

void CheckOrDie(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "internal error in Tensor: %s\n", what);
    std::abort();
  }
}

}  // namespace

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeToString(const std::vector<int64_t>& shape) {
  return "[" + absl::StrJoin(shape, ", ") + "]";
}

Tensor::Tensor(std::vector<int64_t> shape)
    : shape_(std::move(shape)), data_(NumElements(shape_), 0.0f) {
  for (int64_t d : shape_) CheckOrDie(d >= 0, "negative dimension");
}

Tensor::Tensor(std::vector<int64_t> shape, std::vector<float> values)
    : shape_(std::move(shape)), data_(std::move(values)) {
  CheckOrDie(NumElements(shape_) == static_cast<int64_t>(data_.size()),
             "values do not match the shape");
}

Tensor Tensor::Filled(std::vector<int64_t> shape, float value) {
  Tensor t(std::move(shape));
  t.Fill(value);
  return t;
}

int64_t Tensor::dim(int axis) const {
  if (axis < 0) axis += rank();
  CheckOrDie(axis >= 0 && axis < rank(), "axis out of range");
  return shape_[axis];
}

void Tensor::Reshape(std::vector<int64_t> shape) {
  CheckOrDie(NumElements(shape) == numel(), "reshape changes the element count");
  shape_ = std::move(shape);
}

void Tensor::Resize(std::vector<int64_t> shape) {
  shape_ = std::move(shape);
  data_.resize(NumElements(shape_));
}

void Tensor::Fill(float value) { std::fill(data_.begin(), data_.end(), value); }

std::string Tensor::ShapeString() const { return ShapeToString(shape_); }

}  // namespace quant
