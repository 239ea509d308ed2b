// Conv2d over NCHW mini-batches (groups = 1), via im2col over the whole batch
// and one GEMM: col [C*k*k, B*P] (P = output pixels per image), then
// Y [Cout, B*P] = W [Cout, C*k*k] col. One large GEMM keeps OpenBLAS near its
// peak, where 128 small per-image GEMMs would not. Backward: dW = dY col^T and
// dcol = W^T dY followed by col2im. The col buffer of forward is kept for dW.
#ifndef QUANT_NN_CONV2D_H_
#define QUANT_NN_CONV2D_H_

#include "quant/nn/layer.h"

namespace quant::nn {

struct Conv2dOptions {
  int64_t in_channels = -1;  // < 0: from the input shape at Build
  int64_t out_channels = 0;
  int64_t kernel = 3;
  int64_t stride = 1;
  int64_t padding = 0;
  bool bias = true;
};

class Conv2d : public Layer {
 public:
  Conv2d(std::string name, Conv2dOptions options);

  std::string Describe() const override;
  absl::StatusOr<Shape> Build(const Shape& input) override;
  void ResetParameters(Rng& rng) override;
  void Forward(const Tensor& x, Tensor* y) override;
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) override;
  std::vector<Parameter*> parameters() override;
  int64_t ForwardFlopsPerSample() const override { return 2 * out_pixels() * cols(); }
  int64_t BackwardFlopsPerSample(bool input_grad) const override {
    return (input_grad ? 4 : 2) * out_pixels() * cols();
  }
  bool has_weight() const override { return true; }

  Parameter& weight() { return weight_; }
  Parameter& bias() { return bias_; }
  const Conv2dOptions& options() const { return o_; }

 private:
  int64_t cols() const { return o_.in_channels * o_.kernel * o_.kernel; }
  int64_t out_pixels() const { return o_.out_channels * out_h_ * out_w_; }
  void Im2Col(const float* image, int64_t column_offset, int64_t row_stride);
  void Col2Im(int64_t column_offset, int64_t row_stride, float* image);

  Conv2dOptions o_;
  int64_t in_h_ = 0, in_w_ = 0, out_h_ = 0, out_w_ = 0;
  Parameter weight_{"weight"};
  Parameter bias_{"bias"};
  Tensor col_;      // [C*k*k, B*P]
  Tensor ybuf_;     // [Cout, B*P]
  Tensor dybuf_;    // [Cout, B*P]
  Tensor dcol_;     // [C*k*k, B*P]
};

}  // namespace quant::nn

#endif  // QUANT_NN_CONV2D_H_
