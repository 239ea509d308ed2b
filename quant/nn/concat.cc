#include "quant/nn/concat.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {

std::string Concat::Describe() const { return absl::StrCat("Concat(channels ", absl::StrJoin(channels_, "+"), ")"); }

absl::StatusOr<Shape> Concat::BuildInputs(const std::vector<Shape>& inputs) {
  if (inputs.empty()) return absl::InvalidArgumentError("concat needs at least one input");
  channels_.clear();
  const Shape& first = inputs[0];
  if (first.empty()) return absl::InvalidArgumentError("concat needs inputs with a channel axis");
  int64_t total = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const Shape& s = inputs[i];
    if (s.size() != first.size() || !std::equal(s.begin() + 1, s.end(), first.begin() + 1)) {
      return absl::InvalidArgumentError(absl::StrCat("concat joins channels, so all but the first dimension must agree: input 0 is ",
                                                     ShapeToString(first), ", input ", i, " is ", ShapeToString(s)));
    }
    channels_.push_back(s[0]);
    total += s[0];
  }
  inner_ = 1;
  for (size_t d = 1; d < first.size(); ++d) inner_ *= first[d];
  out_ = first;
  out_[0] = total;
  return out_;
}

void Concat::ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) {
  const int64_t batch = x[0]->shape()[0];
  const int64_t total = out_[0];
  const Shape& ys = y->shape();
  if (ys.size() != out_.size() + 1 || ys[0] != batch || !std::equal(out_.begin(), out_.end(), ys.begin() + 1)) {
    Shape s = {batch};
    s.insert(s.end(), out_.begin(), out_.end());
    y->Resize(s);
  }
  float* out = y->data();
  for (int64_t b = 0; b < batch; ++b) {
    int64_t offset = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t n = channels_[i] * inner_;
      const float* src = x[i]->data() + b * n;
      std::copy(src, src + n, out + (b * total + offset) * inner_);
      offset += channels_[i];
    }
  }
}

void Concat::BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                            const std::vector<Tensor*>& dx) {
  const int64_t batch = dy.shape()[0];
  const int64_t total = out_[0];
  for (size_t i = 0; i < x.size(); ++i) {
    if (dx[i] == nullptr) continue;
    EnsureShape(dx[i], x[i]->shape());
  }
  for (int64_t b = 0; b < batch; ++b) {
    int64_t offset = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t n = channels_[i] * inner_;
      if (dx[i] != nullptr) {
        const float* src = dy.data() + (b * total + offset) * inner_;
        std::copy(src, src + n, dx[i]->data() + b * n);
      }
      offset += channels_[i];
    }
  }
}

namespace {

absl::StatusOr<std::unique_ptr<Layer>> CreateConcat(ParamReader& p) {
  return std::unique_ptr<Layer>(new Concat(""));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "concat", CreateConcat, "joins its inputs along the channel axis");

}  // namespace quant::nn
