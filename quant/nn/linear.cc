#include "quant/nn/linear.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/nn/gemm.h"
#include "quant/nn/init.h"

namespace quant::nn {

Linear::Linear(std::string name, int64_t in_features, int64_t out_features, bool bias)
    : Layer(std::move(name)), in_(in_features), out_(out_features), has_bias_(bias) {}

std::string Linear::Describe() const {
  return absl::StrCat("Linear(", in_, ", ", out_, has_bias_ ? "" : ", bias=false", ")");
}

absl::StatusOr<Shape> Linear::Build(const Shape& input) {
  if (input.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects a flat input [", in_ < 0 ? std::string("in_features") : absl::StrCat(in_),
                     "] but gets ", ShapeToString(input), " (add a flatten layer before it)"));
  }
  if (in_ < 0) in_ = input[0];
  if (input[0] != in_) {
    return absl::InvalidArgumentError(absl::StrCat("expects input [", in_, "] but gets ",
                                                   ShapeToString(input)));
  }
  if (out_ <= 0) return absl::InvalidArgumentError(absl::StrCat("out_features must be positive, is ", out_));
  if (absl::Status s = CheckParameterFits(Describe(), {out_, in_}); !s.ok()) return s;
  weight_.Allocate({out_, in_});
  if (has_bias_) bias_.Allocate({out_});
  return Shape{out_};
}

void Linear::ResetParameters(Rng& rng) {
  const float bound = KaimingUniformBound(in_);
  FillUniform(&weight_.value, bound, rng);
  if (has_bias_) FillUniform(&bias_.value, bound, rng);
}

std::vector<Parameter*> Linear::parameters() {
  if (has_bias_) return {&weight_, &bias_};
  return {&weight_};
}

void Linear::Forward(const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  EnsureShape(y, {batch, out_});
  const Tensor& w = EffectiveWeight(weight_);
  float* out = y->data();
  if (has_bias_) {
    for (int64_t b = 0; b < batch; ++b) std::memcpy(out + b * out_, bias_.value.data(), out_ * sizeof(float));
  }
  // y = 1 * x W^T + (bias or 0)
  Sgemm(false, true, batch, out_, in_, 1.0f, x.data(), in_, w.data(), in_, has_bias_ ? 1.0f : 0.0f,
        out, out_);
}

void Linear::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  const int64_t batch = x.dim(0);
  // dW = dy^T x
  Tensor* dw = EffectiveWeightGrad(weight_);
  Sgemm(true, false, out_, in_, batch, 1.0f, dy.data(), out_, x.data(), in_, 0.0f, dw->data(), in_);
  if (has_bias_) {
    float* db = bias_.grad.data();
    std::fill(db, db + out_, 0.0f);
    for (int64_t b = 0; b < batch; ++b) {
      const float* row = dy.data() + b * out_;
      for (int64_t o = 0; o < out_; ++o) db[o] += row[o];
    }
  }
  if (dx != nullptr) {
    // dx = dy W (with the weight forward used)
    const Tensor& w = LastEffectiveWeight(weight_);
    EnsureShape(dx, x.shape());
    Sgemm(false, false, batch, in_, out_, 1.0f, dy.data(), out_, w.data(), in_, 0.0f, dx->data(), in_);
  }
  FinishWeightGrad(weight_);
}

namespace {

absl::StatusOr<std::unique_ptr<Layer>> CreateLinear(ParamReader& p) {
  const int64_t in = p.Int("in_features", -1, "input width (default: inferred; checked when given)");
  // A missing key is reported as such, before IntInRange's range error on the default 0.
  if (!p.describing() && !p.Has("out_features")) p.Fail("out_features", "a linear layer needs out_features");
  const int64_t out = p.IntInRange("out_features", 0, 1, 1 << 24, "output width");
  const bool bias = p.Bool("bias", true, "learn a bias");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(new Linear("", in, out, bias));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "linear", CreateLinear, "fully connected: y = x W^T + b");

}  // namespace quant::nn
