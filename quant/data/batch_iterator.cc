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
  std::vector<int64_t> shape = split_.shape();
  const int64_t sample = split_.sample_numel();
  shape[0] = b;
  images->Resize(std::move(shape));
  labels->resize(b);
  float* dst = images->data();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t idx = order_[next_ + i];
    split_.ReadOne(idx, dst + i * sample);
    (*labels)[i] = split_.labels[idx];
  }
  next_ += b;
  return true;
}

// The float tensor when it holds the samples, else the bytes (`pixels` and `pixel_shape`).
int64_t DataSplit::sample_numel() const {
  if (pixels.empty()) return size() > 0 ? images.numel() / size() : 0;
  int64_t n = 1;
  for (int64_t d : pixel_shape) n *= d;
  return n;
}

std::vector<int64_t> DataSplit::shape() const {
  std::vector<int64_t> s = {size()};
  if (pixels.empty()) {
    if (images.shape().size() > 1) s.insert(s.end(), images.shape().begin() + 1, images.shape().end());
  } else {
    s.insert(s.end(), pixel_shape.begin(), pixel_shape.end());
  }
  return s;
}

void DataSplit::Read(int64_t begin, int64_t n, float* out) const {
  const int64_t per = sample_numel();
  if (pixels.empty()) {
    std::memcpy(out, images.data() + begin * per, static_cast<size_t>(n * per) * sizeof(float));
    return;
  }
  const uint8_t* p = pixels.data() + begin * per;
  for (int64_t i = 0; i < n * per; ++i) out[i] = pixel_values[p[i]];
}

void DataSplit::SetPixelNormalisation(float mean, float stddev) {
  pixel_mean = mean;
  pixel_std = stddev;
  for (int p = 0; p < 256; ++p) pixel_values[p] = (p / 255.0f - mean) / stddev;
}

void DataSplit::ReadNhwc(int64_t begin, int64_t n, float* out) const {
  const std::vector<int64_t> s = shape();
  const int64_t per = sample_numel();
  if (s.size() != 4 || s[1] == 1) {  // one channel: NCHW and NHWC are the same order
    Read(begin, n, out);
    return;
  }
  const int64_t channels = s[1], pixels_per_channel = s[2] * s[3];
  std::vector<float> sample(per);
  for (int64_t i = 0; i < n; ++i) {
    ReadOne(begin + i, sample.data());
    float* dst = out + i * per;
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t p = 0; p < pixels_per_channel; ++p) dst[p * channels + c] = sample[c * pixels_per_channel + p];
    }
  }
}

std::vector<float> DataSplit::Nhwc(int64_t begin, int64_t n) const {
  std::vector<float> out(static_cast<size_t>(n * sample_numel()));
  ReadNhwc(begin, n, out.data());
  return out;
}

Tensor DataSplit::Slice(int64_t begin, int64_t n) const {
  std::vector<int64_t> s = shape();
  s[0] = n;
  Tensor t(std::move(s));
  Read(begin, n, t.data());
  return t;
}

}  // namespace quant
