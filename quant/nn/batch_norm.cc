#include "quant/nn/batch_norm.h"

#include <cmath>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {
namespace {

// Per-channel double sums over a batch, for channels [c0, c0 + K): exactly the
// plain loop `for b, for i: acc += f(x)` of each channel (same order, so the
// same bits), but K channels at a time: a double add's latency (4 cycles)
// bounds one chain, and K independent chains overlap. This made BatchNorm's
// statistics ~5x faster without changing a result.
constexpr int kChannelBlock = 8;

template <int K>
void ChannelSum(const float* x, int64_t batch, int64_t channels, int64_t s, int64_t c0, double* sum) {
  double acc[K] = {};
  for (int64_t b = 0; b < batch; ++b) {
    const float* p = x + (b * channels + c0) * s;
    for (int64_t i = 0; i < s; ++i) {
      for (int k = 0; k < K; ++k) acc[k] += p[k * s + i];
    }
  }
  for (int k = 0; k < K; ++k) sum[k] = acc[k];
}

template <int K>
void ChannelSquaredDeviation(const float* x, int64_t batch, int64_t channels, int64_t s, int64_t c0,
                             const double* mean, double* ss) {
  double acc[K] = {};
  for (int64_t b = 0; b < batch; ++b) {
    const float* p = x + (b * channels + c0) * s;
    for (int64_t i = 0; i < s; ++i) {
      for (int k = 0; k < K; ++k) {
        const double d = p[k * s + i] - mean[k];
        acc[k] += d * d;
      }
    }
  }
  for (int k = 0; k < K; ++k) ss[k] = acc[k];
}

template <int K>
void ChannelGradSums(const float* dy, const float* xhat, int64_t batch, int64_t channels, int64_t s, int64_t c0,
                     double* sdy, double* sdyh) {
  double a[K] = {}, h[K] = {};
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t off = (b * channels + c0) * s;
    const float* g = dy + off;
    const float* xh = xhat + off;
    for (int64_t i = 0; i < s; ++i) {
      for (int k = 0; k < K; ++k) {
        a[k] += g[k * s + i];
        h[k] += static_cast<double>(g[k * s + i]) * xh[k * s + i];
      }
    }
  }
  for (int k = 0; k < K; ++k) {
    sdy[k] = a[k];
    sdyh[k] = h[k];
  }
}

// Calls f.template operator()<K>(c0) over [0, channels) in blocks of
// kChannelBlock, the tail one channel at a time.
template <typename F>
void ForChannelBlocks(int64_t channels, F&& f) {
  int64_t c = 0;
  for (; c + kChannelBlock <= channels; c += kChannelBlock) f(std::integral_constant<int, kChannelBlock>(), c);
  for (; c < channels; ++c) f(std::integral_constant<int, 1>(), c);
}

}  // namespace

BatchNorm::BatchNorm(std::string name, bool spatial, int64_t num_features, float momentum,
                     float eps)
    : Layer(std::move(name)), spatial_(spatial), c_(num_features), momentum_(momentum), eps_(eps) {}

std::string BatchNorm::Describe() const {
  return absl::StrCat(spatial_ ? "BatchNorm2d(" : "BatchNorm1d(", c_, ")");
}

absl::StatusOr<Shape> BatchNorm::Build(const Shape& input) {
  const size_t rank = spatial_ ? 3 : 1;
  if (input.size() != rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expects an input ", spatial_ ? "[C, H, W]" : "[C]", " but gets ", ShapeToString(input)));
  }
  if (c_ < 0) c_ = input[0];
  if (input[0] != c_) {
    return absl::InvalidArgumentError(absl::StrCat("expects input [", c_, spatial_ ? ", H, W" : "",
                                                   "] but gets ", ShapeToString(input)));
  }
  s_ = spatial_ ? input[1] * input[2] : 1;
  weight_.Allocate({c_});
  bias_.Allocate({c_});
  running_mean_ = Tensor({c_});
  running_var_ = Tensor({c_});
  invstd_.assign(c_, 0.0f);
  sum_dy_.assign(c_, 0.0);
  sum_dy_xhat_.assign(c_, 0.0);
  InitState();
  return input;
}

void BatchNorm::ResetParameters(Rng&) { InitState(); }

void BatchNorm::InitState() {
  weight_.value.Fill(1.0f);
  bias_.value.Fill(0.0f);
  running_mean_.Fill(0.0f);
  running_var_.Fill(1.0f);
}

void BatchNorm::Forward(const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  const int64_t n = batch * s_;
  EnsureShape(y, x.shape());
  EnsureShape(&xhat_, x.shape());
  if (training()) {
    ForChannelBlocks(c_, [&](auto k, int64_t c0) {
      constexpr int K = decltype(k)::value;
      ChannelSum<K>(x.data(), batch, c_, s_, c0, &sum_dy_[c0]);
      double mean[K];
      for (int j = 0; j < K; ++j) mean[j] = sum_dy_[c0 + j] / static_cast<double>(n);
      ChannelSquaredDeviation<K>(x.data(), batch, c_, s_, c0, mean, &sum_dy_xhat_[c0]);
    });
  }
  for (int64_t c = 0; c < c_; ++c) {
    float mean, invstd;
    if (training()) {
      // sum_dy_ / sum_dy_xhat_ serve as scratch for the sum and the squared deviations here.
      const double m = sum_dy_[c] / static_cast<double>(n);
      const double ss = sum_dy_xhat_[c];
      const double var = ss / static_cast<double>(n);
      mean = static_cast<float>(m);
      invstd = static_cast<float>(1.0 / std::sqrt(var + eps_));
      const double unbiased = n > 1 ? ss / static_cast<double>(n - 1) : var;
      running_mean_[c] = (1.0f - momentum_) * running_mean_[c] + momentum_ * mean;
      running_var_[c] =
          (1.0f - momentum_) * running_var_[c] + momentum_ * static_cast<float>(unbiased);
    } else {
      mean = running_mean_[c];
      invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var_[c]) + eps_));
    }
    invstd_[c] = invstd;
    const float g = weight_.value[c], beta = bias_.value[c];
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t off = (b * c_ + c) * s_;
      const float* p = x.data() + off;
      float* h = xhat_.data() + off;
      float* o = y->data() + off;
      for (int64_t i = 0; i < s_; ++i) {
        h[i] = (p[i] - mean) * invstd;
        o[i] = h[i] * g + beta;
      }
    }
  }
}

void BatchNorm::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  const int64_t batch = x.dim(0);
  const int64_t n = batch * s_;
  ForChannelBlocks(c_, [&](auto k, int64_t c0) {
    constexpr int K = decltype(k)::value;
    ChannelGradSums<K>(dy.data(), xhat_.data(), batch, c_, s_, c0, &sum_dy_[c0], &sum_dy_xhat_[c0]);
  });
  for (int64_t c = 0; c < c_; ++c) {
    weight_.grad[c] = static_cast<float>(sum_dy_xhat_[c]);
    bias_.grad[c] = static_cast<float>(sum_dy_[c]);
  }
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  for (int64_t c = 0; c < c_; ++c) {
    const float scale = weight_.value[c] * invstd_[c];
    const float mean_dy = static_cast<float>(sum_dy_[c] / n);
    const float mean_dy_xhat = static_cast<float>(sum_dy_xhat_[c] / n);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t off = (b * c_ + c) * s_;
      const float* g = dy.data() + off;
      const float* h = xhat_.data() + off;
      float* o = dx->data() + off;
      if (training()) {
        // dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))
        for (int64_t i = 0; i < s_; ++i) o[i] = scale * (g[i] - mean_dy - h[i] * mean_dy_xhat);
      } else {
        for (int64_t i = 0; i < s_; ++i) o[i] = scale * g[i];
      }
    }
  }
}

namespace {

template <bool kSpatial>
absl::StatusOr<std::unique_ptr<Layer>> CreateBatchNorm(ParamReader& p) {
  const int64_t c = p.Int("num_features", -1, "channels (default: inferred; checked when given)");
  const double momentum = p.DoubleInRange("momentum", 0.1, 0.0, 1.0, "running-statistics momentum (PyTorch's)");
  const double eps = p.DoubleInRange("eps", 1e-5, 0.0, 1.0, "added to the variance");
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Layer>(
      new BatchNorm("", kSpatial, c, static_cast<float>(momentum), static_cast<float>(eps)));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "batchnorm1d", CreateBatchNorm<false>, "BatchNorm1d over [C] samples");
QUANTLAB_REGISTER(Layer, "batchnorm2d", CreateBatchNorm<true>, "BatchNorm2d over [C, H, W] samples");

}  // namespace quant::nn
