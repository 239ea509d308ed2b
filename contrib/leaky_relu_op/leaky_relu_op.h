// `leaky_relu`: y = x for x > 0, negative_slope * x otherwise (PyTorch's
// LeakyReLU; its backward passes dy where x > 0 and negative_slope * dy
// elsewhere, x == 0 included). An op plugin that lives outside quant/: one
// header/source pair, one registration line, one BUILD target, and the graph,
// `sequential`, `graph` and `run --list` know it with no framework edit.
#ifndef CONTRIB_LEAKY_RELU_OP_LEAKY_RELU_OP_H_
#define CONTRIB_LEAKY_RELU_OP_LEAKY_RELU_OP_H_

#include <memory>
#include <string>

#include "quant/core/params.h"
#include "quant/nn/layer.h"

namespace contrib {

class LeakyRelu : public quant::nn::Layer {
 public:
  LeakyRelu(std::string name, float negative_slope) : Layer(std::move(name)), slope_(negative_slope) {}
  // Reads `negative_slope` (default 0.01, PyTorch's).
  static absl::StatusOr<std::unique_ptr<quant::nn::Layer>> Create(quant::ParamReader& p);

  std::string Describe() const override;
  std::string type() const override { return "leaky_relu"; }
  absl::StatusOr<quant::nn::Shape> Build(const quant::nn::Shape& input) override { return input; }
  void Forward(const quant::Tensor& x, quant::Tensor* y) override;
  void Backward(const quant::Tensor& x, const quant::Tensor& y, const quant::Tensor& dy, quant::Tensor* dx) override;
  float negative_slope() const { return slope_; }

 private:
  float slope_;
};

}  // namespace contrib

#endif  // CONTRIB_LEAKY_RELU_OP_LEAKY_RELU_OP_H_
