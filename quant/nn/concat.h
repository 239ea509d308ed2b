// Concat: joins its inputs along the channel axis (axis 0 of a sample,
// PyTorch's torch.cat(dim=1) on NCHW batches). Every other dimension must
// agree; a mismatch names the input and both shapes.
#ifndef QUANT_NN_CONCAT_H_
#define QUANT_NN_CONCAT_H_

#include <string>
#include <vector>

#include "quant/nn/layer.h"

namespace quant::nn {

class Concat : public MultiInputLayer {
 public:
  explicit Concat(std::string name) : MultiInputLayer(std::move(name)) {}
  std::string Describe() const override;
  std::string type() const override { return "concat"; }
  int num_inputs() const override { return -1; }
  absl::StatusOr<Shape> BuildInputs(const std::vector<Shape>& inputs) override;
  void ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) override;
  void BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                      const std::vector<Tensor*>& dx) override;
  // Per input: its channel count.
  const std::vector<int64_t>& channels() const { return channels_; }

 private:
  std::vector<int64_t> channels_;
  int64_t inner_ = 1;  // elements per channel (H*W, or 1)
  Shape out_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_CONCAT_H_
