#include "quant/nn/conv2d.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "quant/nn/gemm.h"
#include "quant/nn/init.h"

namespace quant::nn {

Conv2d::Conv2d(std::string name, Conv2dOptions options) : Layer(std::move(name)), o_(options) {}

std::string Conv2d::Describe() const {
  return absl::StrCat("Conv2d(", o_.in_channels, ", ", o_.out_channels, ", kernel=", o_.kernel,
                      ", stride=", o_.stride, ", padding=", o_.padding,
                      o_.bias ? "" : ", bias=false", ")");
}

absl::StatusOr<Shape> Conv2d::Build(const Shape& input) {
  if (o_.out_channels <= 0 || o_.kernel <= 0 || o_.stride <= 0 || o_.padding < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "needs out_channels, kernel, stride > 0 and padding >= 0; has ", Describe()));
  }
  if (input.size() != 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects an input [C, H, W] but gets ", ShapeToString(input)));
  }
  if (o_.in_channels < 0) o_.in_channels = input[0];
  if (input[0] != o_.in_channels) {
    return absl::InvalidArgumentError(absl::StrCat("expects input [", o_.in_channels,
                                                   ", H, W] but gets ", ShapeToString(input)));
  }
  in_h_ = input[1];
  in_w_ = input[2];
  out_h_ = (in_h_ + 2 * o_.padding - o_.kernel) / o_.stride + 1;
  out_w_ = (in_w_ + 2 * o_.padding - o_.kernel) / o_.stride + 1;
  if (in_h_ + 2 * o_.padding < o_.kernel || in_w_ + 2 * o_.padding < o_.kernel) {
    return absl::InvalidArgumentError(absl::StrCat("kernel ", o_.kernel, " does not fit input ",
                                                   ShapeToString(input), " with padding ",
                                                   o_.padding));
  }
  weight_.Allocate({o_.out_channels, o_.in_channels, o_.kernel, o_.kernel});
  if (o_.bias) bias_.Allocate({o_.out_channels});
  return Shape{o_.out_channels, out_h_, out_w_};
}

void Conv2d::ResetParameters(Rng& rng) {
  const float bound = KaimingUniformBound(cols());
  FillUniform(&weight_.value, bound, rng);
  if (o_.bias) FillUniform(&bias_.value, bound, rng);
}

std::vector<Parameter*> Conv2d::parameters() {
  if (o_.bias) return {&weight_, &bias_};
  return {&weight_};
}

// Writes the patches of one image into columns [column_offset, column_offset + P)
// of col_, whose rows are `row_stride` floats apart.
void Conv2d::Im2Col(const float* image, int64_t column_offset, int64_t row_stride) {
  const int64_t k = o_.kernel, s = o_.stride, pad = o_.padding;
  float* col = col_.data();
  for (int64_t c = 0; c < o_.in_channels; ++c) {
    const float* plane = image + c * in_h_ * in_w_;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        float* dst = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
        // Output columns ow whose input column ow*s - pad + kj lies inside [0, in_w).
        const int64_t ow_lo = std::min(out_w_, std::max<int64_t>(0, (pad - kj + s - 1) / s));
        const int64_t ow_hi =
            std::max(ow_lo, std::min(out_w_, (in_w_ + pad - kj + s - 1) / s));
        for (int64_t oh = 0; oh < out_h_; ++oh) {
          float* d = dst + oh * out_w_;
          const int64_t ih = oh * s - pad + ki;
          if (ih < 0 || ih >= in_h_) {
            std::memset(d, 0, out_w_ * sizeof(float));
            continue;
          }
          const float* row = plane + ih * in_w_;
          for (int64_t ow = 0; ow < ow_lo; ++ow) d[ow] = 0.0f;
          if (s == 1) {
            std::memcpy(d + ow_lo, row + ow_lo - pad + kj, (ow_hi - ow_lo) * sizeof(float));
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) d[ow] = row[ow * s - pad + kj];
          }
          for (int64_t ow = ow_hi; ow < out_w_; ++ow) d[ow] = 0.0f;
        }
      }
    }
  }
}

// Adds the column gradients dcol_ of one image back onto its pixels (image must be zeroed).
void Conv2d::Col2Im(int64_t column_offset, int64_t row_stride, float* image) {
  const int64_t k = o_.kernel, s = o_.stride, pad = o_.padding;
  const float* col = dcol_.data();
  for (int64_t c = 0; c < o_.in_channels; ++c) {
    float* plane = image + c * in_h_ * in_w_;
    for (int64_t ki = 0; ki < k; ++ki) {
      for (int64_t kj = 0; kj < k; ++kj) {
        const float* src = col + ((c * k + ki) * k + kj) * row_stride + column_offset;
        const int64_t ow_lo = std::min(out_w_, std::max<int64_t>(0, (pad - kj + s - 1) / s));
        const int64_t ow_hi =
            std::max(ow_lo, std::min(out_w_, (in_w_ + pad - kj + s - 1) / s));
        for (int64_t oh = 0; oh < out_h_; ++oh) {
          const int64_t ih = oh * s - pad + ki;
          if (ih < 0 || ih >= in_h_) continue;
          const float* sr = src + oh * out_w_;
          float* row = plane + ih * in_w_;
          if (s == 1) {
            float* r = row - pad + kj;
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) r[ow] += sr[ow];
          } else {
            for (int64_t ow = ow_lo; ow < ow_hi; ++ow) row[ow * s - pad + kj] += sr[ow];
          }
        }
      }
    }
  }
}

void Conv2d::Forward(const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  const int64_t p = out_h_ * out_w_;
  const int64_t n = batch * p;
  const int64_t image_size = o_.in_channels * in_h_ * in_w_;
  EnsureShape(&col_, {cols(), n});
  EnsureShape(&ybuf_, {o_.out_channels, n});
  EnsureShape(y, {batch, o_.out_channels, out_h_, out_w_});
  for (int64_t b = 0; b < batch; ++b) Im2Col(x.data() + b * image_size, b * p, n);
  const Tensor& w = EffectiveWeight(weight_);
  Sgemm(false, false, o_.out_channels, n, cols(), 1.0f, w.data(), cols(), col_.data(), n, 0.0f,
        ybuf_.data(), n);
  // [Cout, B, P] -> [B, Cout, P], adding the bias.
  for (int64_t co = 0; co < o_.out_channels; ++co) {
    const float bias = o_.bias ? bias_.value[co] : 0.0f;
    const float* src = ybuf_.data() + co * n;
    for (int64_t b = 0; b < batch; ++b) {
      const float* s = src + b * p;
      float* d = y->data() + (b * o_.out_channels + co) * p;
      for (int64_t i = 0; i < p; ++i) d[i] = s[i] + bias;
    }
  }
}

void Conv2d::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  const int64_t batch = x.dim(0);
  const int64_t p = out_h_ * out_w_;
  const int64_t n = batch * p;
  EnsureShape(&dybuf_, {o_.out_channels, n});
  // [B, Cout, P] -> [Cout, B, P]; the bias gradient on the way.
  for (int64_t co = 0; co < o_.out_channels; ++co) {
    float* d = dybuf_.data() + co * n;
    for (int64_t b = 0; b < batch; ++b) {
      std::memcpy(d + b * p, dy.data() + (b * o_.out_channels + co) * p, p * sizeof(float));
    }
    if (o_.bias) {
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += d[i];
      bias_.grad[co] = static_cast<float>(sum);
    }
  }
  Tensor* dw = EffectiveWeightGrad(weight_);
  Sgemm(false, true, o_.out_channels, cols(), n, 1.0f, dybuf_.data(), n, col_.data(), n, 0.0f,
        dw->data(), cols());
  if (dx != nullptr) {
    const Tensor& w = LastEffectiveWeight(weight_);
    EnsureShape(&dcol_, {cols(), n});
    Sgemm(true, false, cols(), n, o_.out_channels, 1.0f, w.data(), cols(), dybuf_.data(), n, 0.0f,
          dcol_.data(), n);
    EnsureShape(dx, x.shape());
    dx->Fill(0.0f);
    const int64_t image_size = o_.in_channels * in_h_ * in_w_;
    for (int64_t b = 0; b < batch; ++b) Col2Im(b * p, n, dx->data() + b * image_size);
  }
  FinishWeightGrad(weight_);
}

}  // namespace quant::nn
