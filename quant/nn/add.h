// Add: the element-wise sum of two values of the same shape (a residual
// connection). No broadcasting: a shape mismatch is an error naming both
// shapes. Backward passes dy to both inputs.
#ifndef QUANT_NN_ADD_H_
#define QUANT_NN_ADD_H_

#include <string>
#include <vector>

#include "quant/nn/layer.h"

namespace quant::nn {

class Add : public MultiInputLayer {
 public:
  explicit Add(std::string name) : MultiInputLayer(std::move(name)) {}
  std::string Describe() const override { return "Add()"; }
  std::string type() const override { return "add"; }
  int num_inputs() const override { return 2; }
  absl::StatusOr<Shape> BuildInputs(const std::vector<Shape>& inputs) override;
  void ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) override;
  void BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                      const std::vector<Tensor*>& dx) override;
};

}  // namespace quant::nn

#endif  // QUANT_NN_ADD_H_
