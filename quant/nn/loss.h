// Softmax cross-entropy, averaged over the batch (PyTorch's
// nn.CrossEntropyLoss with reduction='mean'), computed stably from logits.
#ifndef QUANT_NN_LOSS_H_
#define QUANT_NN_LOSS_H_

#include <cstdint>
#include <vector>

#include "quant/core/tensor.h"

namespace quant::nn {

class SoftmaxCrossEntropy {
 public:
  // Returns the mean loss over the batch of `logits` [B, K]; counts the rows
  // whose first maximal logit is the label into *correct (when not null).
  double Forward(const Tensor& logits, const std::vector<int32_t>& labels, int64_t* correct);
  // d(mean loss)/d(logits) = (softmax - onehot) / B, for the last Forward.
  void Backward(Tensor* dlogits);

 private:
  Tensor probs_;
  std::vector<int32_t> labels_;
};

// Index of the first maximal element of row `row` of a [B, K] tensor.
int64_t ArgMaxRow(const Tensor& t, int64_t row);

}  // namespace quant::nn

#endif  // QUANT_NN_LOSS_H_
