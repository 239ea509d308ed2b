// BatchNorm2d's vectorised statistics and passes (channel blocks of 16, 8, 4
// and single channels, planes of any size) give exactly the bits of the plain
// per-channel loops they replaced: per channel, double sums in (b, i) order,
// xhat = (x - mean) * invstd and y = xhat * gamma + beta in float, dx =
// gamma * invstd * (dy - mean(dy) - xhat * mean(dy xhat)). Channel counts and
// plane sizes cover every block size and tail; training and eval.
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/batch_norm.h"
#include "tests/nn/gradcheck.h"

namespace quant::nn {
namespace {

using testing::RandomTensor;

// The plain loops (the implementation before vectorisation), one channel at a time.
struct Reference {
  std::vector<float> y, dx, dgamma, dbeta, running_mean, running_var;
};

Reference PlainBatchNorm(const Tensor& x, const Tensor& dy, const std::vector<float>& gamma,
                         const std::vector<float>& beta, bool training, float momentum, float eps,
                         std::vector<float> running_mean, std::vector<float> running_var) {
  const int64_t batch = x.dim(0), c_ = x.dim(1), s = x.dim(2) * x.dim(3), n = batch * s;
  Reference r;
  r.y.resize(x.numel());
  r.dx.resize(x.numel());
  r.dgamma.resize(c_);
  r.dbeta.resize(c_);
  std::vector<float> xhat(x.numel());
  for (int64_t c = 0; c < c_; ++c) {
    float mean, invstd;
    if (training) {
      double sum = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t i = 0; i < s; ++i) sum += x.data()[(b * c_ + c) * s + i];
      }
      const double m = sum / static_cast<double>(n);
      double ss = 0.0;
      for (int64_t b = 0; b < batch; ++b) {
        for (int64_t i = 0; i < s; ++i) {
          const double d = x.data()[(b * c_ + c) * s + i] - m;
          ss += d * d;
        }
      }
      const double var = ss / static_cast<double>(n);
      mean = static_cast<float>(m);
      invstd = static_cast<float>(1.0 / std::sqrt(var + eps));
      const double unbiased = n > 1 ? ss / static_cast<double>(n - 1) : var;
      running_mean[c] = (1.0f - momentum) * running_mean[c] + momentum * mean;
      running_var[c] = (1.0f - momentum) * running_var[c] + momentum * static_cast<float>(unbiased);
    } else {
      mean = running_mean[c];
      invstd = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps));
    }
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < s; ++i) {
        const int64_t o = (b * c_ + c) * s + i;
        xhat[o] = (x.data()[o] - mean) * invstd;
        r.y[o] = xhat[o] * gamma[c] + beta[c];
      }
    }
    double sdy = 0.0, sdyh = 0.0;
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < s; ++i) {
        const int64_t o = (b * c_ + c) * s + i;
        sdy += dy.data()[o];
        sdyh += static_cast<double>(dy.data()[o]) * xhat[o];
      }
    }
    r.dgamma[c] = static_cast<float>(sdyh);
    r.dbeta[c] = static_cast<float>(sdy);
    const float scale = gamma[c] * invstd;
    const float mean_dy = static_cast<float>(sdy / n), mean_dy_xhat = static_cast<float>(sdyh / n);
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t i = 0; i < s; ++i) {
        const int64_t o = (b * c_ + c) * s + i;
        r.dx[o] = training ? scale * (dy.data()[o] - mean_dy - xhat[o] * mean_dy_xhat) : scale * dy.data()[o];
      }
    }
  }
  r.running_mean = running_mean;
  r.running_var = running_var;
  return r;
}

void ExpectBits(const float* got, const std::vector<float>& want, const char* what, int64_t c, int64_t s) {
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
        << what << "[" << i << "] " << got[i] << " vs " << want[i] << " (C " << c << ", H*W " << s << ")";
  }
}

TEST(BatchNormKernelsTest, BitIdenticalToPlainLoops) {
  uint64_t seed = 1;
  for (int64_t c : {1, 3, 4, 5, 8, 12, 13, 16, 24, 29, 40}) {
    for (Shape hw : {Shape{1, 1}, Shape{1, 3}, Shape{2, 2}, Shape{4, 4}, Shape{7, 7}, Shape{5, 3}}) {
      for (bool training : {true, false}) {
        const int64_t batch = 3;
        BatchNorm bn("bn", /*spatial=*/true);
        ASSERT_TRUE(bn.Build({c, hw[0], hw[1]}).ok());
        // Non-trivial gamma, beta and running statistics; an offset input so
        // that the mean matters.
        Tensor g = RandomTensor({c}, seed++), be = RandomTensor({c}, seed++);
        Tensor rm = RandomTensor({c}, seed++), rv = RandomTensor({c}, seed++);
        std::vector<float> gamma(c), beta(c), run_m(c), run_v(c);
        for (int64_t i = 0; i < c; ++i) {
          gamma[i] = bn.weight().value[i] = 1.0f + 0.5f * g[i];
          beta[i] = bn.bias().value[i] = be[i];
          run_m[i] = bn.running_mean()[i] = rm[i];
          run_v[i] = bn.running_var()[i] = 1.0f + 0.5f * rv[i];
        }
        Tensor x = RandomTensor({batch, c, hw[0], hw[1]}, seed++);
        for (int64_t i = 0; i < x.numel(); ++i) x.data()[i] = 3.0f * x.data()[i] + 0.7f;
        const Tensor dy = RandomTensor(x.shape(), seed++);
        bn.set_training(training);
        Tensor y, dx;
        bn.Forward(x, &y);
        bn.Backward(x, y, dy, &dx);
        const Reference r = PlainBatchNorm(x, dy, gamma, beta, training, bn.momentum(), bn.eps(), run_m, run_v);
        const int64_t s = hw[0] * hw[1];
        ExpectBits(y.data(), r.y, "y", c, s);
        ExpectBits(dx.data(), r.dx, "dx", c, s);
        ExpectBits(bn.weight().grad.data(), r.dgamma, "dgamma", c, s);
        ExpectBits(bn.bias().grad.data(), r.dbeta, "dbeta", c, s);
        ExpectBits(bn.running_mean().data(), r.running_mean, "running_mean", c, s);
        ExpectBits(bn.running_var().data(), r.running_var, "running_var", c, s);
      }
    }
  }
}

}  // namespace
}  // namespace quant::nn
