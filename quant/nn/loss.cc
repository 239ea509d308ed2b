#include "quant/nn/loss.h"

#include <cmath>

#include "quant/nn/layer.h"

namespace quant::nn {

int64_t ArgMaxRow(const Tensor& t, int64_t row) {
  const int64_t k = t.dim(1);
  const float* p = t.data() + row * k;
  int64_t best = 0;
  for (int64_t j = 1; j < k; ++j) {
    if (p[j] > p[best]) best = j;
  }
  return best;
}

double SoftmaxCrossEntropy::Forward(const Tensor& logits, const std::vector<int32_t>& labels,
                                    int64_t* correct) {
  const int64_t batch = logits.dim(0), k = logits.dim(1);
  EnsureShape(&probs_, logits.shape());
  labels_.assign(labels.begin(), labels.begin() + batch);  // capacity is kept
  double total = 0.0;
  int64_t hits = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const float* z = logits.data() + b * k;
    float* p = probs_.data() + b * k;
    float m = z[0];
    for (int64_t j = 1; j < k; ++j) m = std::max(m, z[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) {
      p[j] = std::exp(z[j] - m);
      sum += p[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < k; ++j) p[j] *= inv;
    // -log softmax(z)_y = log(sum exp(z - m)) - (z_y - m)
    total += std::log(sum) - (static_cast<double>(z[labels[b]]) - m);
    if (ArgMaxRow(logits, b) == labels[b]) ++hits;
  }
  if (correct != nullptr) *correct = hits;
  return total / static_cast<double>(batch);
}

void SoftmaxCrossEntropy::Backward(Tensor* dlogits) {
  const int64_t batch = probs_.dim(0), k = probs_.dim(1);
  EnsureShape(dlogits, probs_.shape());
  const float inv_b = 1.0f / static_cast<float>(batch);
  for (int64_t b = 0; b < batch; ++b) {
    const float* p = probs_.data() + b * k;
    float* d = dlogits->data() + b * k;
    for (int64_t j = 0; j < k; ++j) d[j] = p[j] * inv_b;
    d[labels_[b]] -= inv_b;
  }
}

}  // namespace quant::nn
