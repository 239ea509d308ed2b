// Linear (fully connected): y = x W^T + b, x [B, in], W [out, in], b [out].
// The three GEMMs of forward and backward go through Sgemm (OpenBLAS).
#ifndef QUANT_NN_LINEAR_H_
#define QUANT_NN_LINEAR_H_

#include "quant/nn/layer.h"

namespace quant::nn {

class Linear : public Layer {
 public:
  // in_features < 0: taken from the input shape at Build.
  Linear(std::string name, int64_t in_features, int64_t out_features, bool bias = true);

  std::string Describe() const override;
  std::string type() const override { return "linear"; }
  std::string name_prefix() const override { return "fc"; }
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void ResetParameters(Rng& rng) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter*> parameters() override;
  int64_t ForwardFlopsPerSample() const override { return 2 * in_ * out_; }
  int64_t BackwardFlopsPerSample(bool input_grad) const override {
    return (input_grad ? 4 : 2) * in_ * out_;
  }
  bool has_weight() const override { return true; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_;
  int64_t out_;
  bool has_bias_;
  Parameter weight_{"weight"};
  Parameter bias_{"bias"};
};

}  // namespace quant::nn

#endif  // QUANT_NN_LINEAR_H_
