// BatchNorm1d ([C] samples) and BatchNorm2d ([C, H, W] samples) with PyTorch's
// conventions: training normalises with the batch mean and biased variance and
// updates running = (1 - momentum) * running + momentum * batch_stat, where the
// variance fed to the running estimate is the unbiased one (n / (n - 1));
// eval normalises with the running statistics. eps = 1e-5, momentum = 0.1.
#ifndef QUANT_NN_BATCH_NORM_H_
#define QUANT_NN_BATCH_NORM_H_

#include <vector>

#include "quant/nn/layer.h"

namespace quant::nn {

class BatchNorm : public Layer {
 public:
  // spatial: BatchNorm2d (input [C, H, W]); else BatchNorm1d (input [C]).
  BatchNorm(std::string name, bool spatial, int64_t num_features = -1, float momentum = 0.1f,
            float eps = 1e-5f);

  std::string Describe() const override;
  std::string type() const override { return spatial_ ? "batchnorm2d" : "batchnorm1d"; }
  std::string name_prefix() const override { return "bn"; }
  bool spatial() const { return spatial_; }
  float momentum() const { return momentum_; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void ResetParameters(Rng& rng) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter*> parameters() override { return {&weight_, &bias_}; }
  std::vector<std::pair<std::string, Tensor*>> buffers() override {
    return {{"running_mean", &running_mean_}, {"running_var", &running_var_}};
  }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  Tensor& running_mean() { return running_mean_; }
  Tensor& running_var() { return running_var_; }
  float eps() const { return eps_; }

 private:
  // gamma = 1, beta = 0, running mean 0 and variance 1 (PyTorch's reset).
  void InitState();

  bool spatial_;
  int64_t c_;
  float momentum_, eps_;
  int64_t s_ = 1;  // spatial size H*W
  Parameter weight_{"weight"};
  Parameter bias_{"bias"};
  Tensor running_mean_, running_var_;
  // Per channel, of the last forward: Backward recomputes xhat = (x - mean) *
  // invstd from them (the same float operations, so the same values).
  std::vector<float> mean_, invstd_;
  std::vector<double> sum_dy_, sum_dy_xhat_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_BATCH_NORM_H_
