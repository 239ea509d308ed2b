// Datasets (registry `dataset:`) and deterministic mini-batching.
//
// A Dataset's factory only reads and checks its settings (it also runs for
// `run --list`); Load() does the I/O. After Load(), both splits are in memory:
// labels as int32, images as normalised float32 [N, C, H, W] or, for 8-bit
// sources, as their bytes, normalised when read (DataSplit::Read).
#ifndef QUANT_DATA_DATASET_H_
#define QUANT_DATA_DATASET_H_

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "quant/core/tensor.h"

namespace quant {

// One split's samples: either normalised float32 `images` [N, C, H, W] (generated
// data), or 8-bit `pixels` (N x C x H x W bytes) normalised when read as
// (p / 255 - pixel_mean) / pixel_std: the same float operations as normalising at
// load time, so the values are bit-identical, in a quarter of the memory (the
// 60,000 Fashion-MNIST training images: 47 MB instead of 188 MB). Read samples
// through Read / ReadOne / Slice, which serve both.
struct DataSplit {
  Tensor images;                     // [N, C, H, W], normalised; empty when `pixels` hold the samples
  std::vector<uint8_t> pixels;       // N x C x H x W bytes, or empty
  std::vector<int64_t> pixel_shape;  // C, H, W of `pixels`
  float pixel_mean = 0, pixel_std = 1;
  // (p / 255 - pixel_mean) / pixel_std for each byte p, by SetPixelNormalisation: a lookup
  // per value when read instead of a division (the same floats, computed once).
  std::array<float, 256> pixel_values{};
  std::vector<int32_t> labels;  // N labels in [0, num_classes)
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
  void SetPixelNormalisation(float mean, float stddev);
  // Values per sample (C * H * W).
  int64_t sample_numel() const;
  // [N, C, H, W] with N = size().
  std::vector<int64_t> shape() const;
  // Samples [begin, begin + n), normalised, into `out` (n * sample_numel() floats).
  void Read(int64_t begin, int64_t n, float* out) const;
  void ReadOne(int64_t index, float* out) const { Read(index, 1, out); }
  // Samples [begin, begin + n) as a tensor [n, C, H, W].
  Tensor Slice(int64_t begin, int64_t n) const;
  // Samples [begin, begin + n), normalised, in NHWC order (the integer models' layout), into
  // `out`; no temporary copy of the whole range.
  void ReadNhwc(int64_t begin, int64_t n, float* out) const;
  std::vector<float> Nhwc(int64_t begin, int64_t n) const;
};

class Dataset {
 public:
  static constexpr char kRegistryKind[] = "dataset";
  virtual ~Dataset() = default;

  // Reads the data; a missing, truncated or corrupt source is an error naming it.
  virtual absl::Status Load() = 0;
  virtual const DataSplit& train() const = 0;
  virtual const DataSplit& test() const = 0;
  virtual int num_classes() const = 0;
  // Shape of one sample, e.g. {1, 28, 28}.
  virtual std::vector<int64_t> sample_shape() const = 0;
  // One line for logs and records, e.g. "fashion_mnist (60000 train, 10000 test)".
  virtual std::string Describe() const = 0;

  // Where a dataset that decodes files may keep the decoded data for later runs (the
  // driver gives <output_dir>/.cache, shared by a sweep's runs); "" (the default) for none.
  // Before Load().
  void set_cache_dir(std::string dir) { cache_dir_ = std::move(dir); }

 protected:
  std::string cache_dir_;
};

// Mini-batches over a split. The order of epoch e is a permutation drawn from
// (seed, e) alone, so a run is reproducible and epochs can be replayed in any
// order. Batches reuse the caller's buffers: no allocation in steady state.
class BatchIterator {
 public:
  BatchIterator(const DataSplit& split, int64_t batch_size, bool shuffle, uint64_t seed,
                bool drop_last = false);

  // Starts epoch `epoch` (0-based): reshuffles when shuffling is on.
  void StartEpoch(int epoch);
  int64_t num_batches() const;
  int64_t batch_size() const { return batch_size_; }
  // Copies the next batch into `images` ([B, C, H, W]) and `labels`; false
  // when the epoch is over. The last batch may be smaller unless drop_last.
  bool Next(Tensor* images, std::vector<int32_t>* labels);
  // Indices into the split of the current epoch's order.
  const std::vector<int64_t>& order() const { return order_; }

 private:
  const DataSplit& split_;
  int64_t batch_size_;
  bool shuffle_;
  uint64_t seed_;
  bool drop_last_;
  std::vector<int64_t> order_;
  int64_t next_ = 0;
};

}  // namespace quant

#endif  // QUANT_DATA_DATASET_H_
