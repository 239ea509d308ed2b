#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>

#include "quant/data/dataset.h"

namespace quant {

BatchIterator::BatchIterator(const DataSplit& split, int64_t batch_size, bool shuffle,
                             uint64_t seed, bool drop_last)
    : split_(split),
      batch_size_(std::max<int64_t>(1, batch_size)),
      shuffle_(shuffle),
      seed_(seed),
      drop_last_(drop_last) {
  StartEpoch(0);
}

void BatchIterator::StartEpoch(int epoch) {
  order_.resize(split_.size());
  std::iota(order_.begin(), order_.end(), 0);
  if (shuffle_) {
    // The permutation depends on (seed, epoch) only. std::mt19937_64's output is
    // fixed by the standard; the Fisher-Yates loop is written out because
    // std::shuffle's use of the generator is implementation-defined.
    std::seed_seq seq{static_cast<uint32_t>(seed_), static_cast<uint32_t>(seed_ >> 32),
                      static_cast<uint32_t>(epoch), 0x5eedu};
    std::mt19937_64 rng(seq);
    for (int64_t i = static_cast<int64_t>(order_.size()) - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
      std::swap(order_[i], order_[j]);
    }
  }
  next_ = 0;
}

int64_t BatchIterator::num_batches() const {
  const int64_t n = split_.size();
  return drop_last_ ? n / batch_size_ : (n + batch_size_ - 1) / batch_size_;
}

bool BatchIterator::Next(Tensor* images, std::vector<int32_t>* labels) {
  const int64_t n = split_.size();
  const int64_t remaining = n - next_;
  if (remaining <= 0 || (drop_last_ && remaining < batch_size_)) return false;
  const int64_t b = std::min(batch_size_, remaining);
  std::vector<int64_t> shape = split_.images.shape();
  const int64_t sample = n > 0 ? split_.images.numel() / n : 0;
  shape[0] = b;
  images->Resize(std::move(shape));
  labels->resize(b);
  const float* src = split_.images.data();
  float* dst = images->data();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t idx = order_[next_ + i];
    std::memcpy(dst + i * sample, src + idx * sample, sample * sizeof(float));
    (*labels)[i] = split_.labels[idx];
  }
  next_ += b;
  return true;
}

}  // namespace quant
