// Fashion-MNIST (Xiao et al. 2017) from Debian's dataset-fashion-mnist: gzip'd
// IDX files in /usr/share/datasets/fashion-mnist. Images are normalised with
// the training set's mean and standard deviation, (x/255 - 0.2860) / 0.3530,
// the constants torchvision users apply to this dataset, unless the config's
// `normalization: {mean, std}` says otherwise.
#ifndef QUANT_DATA_FASHION_MNIST_H_
#define QUANT_DATA_FASHION_MNIST_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/data/dataset.h"

namespace quant {

inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStd = 0.3530f;
inline constexpr char kFashionMnistDir[] = "/usr/share/datasets/fashion-mnist";

// Reads an IDX file (optionally gzip'd: detected by content). `expected_magic`
// is 0x801 for labels, 0x803 for images. Checks the magic number, dimensions
// against the byte count, and that the file is complete. At most `limit`
// items are kept (0 = all). Errors name the file and the Debian package.
struct IdxData {
  std::vector<int32_t> dims;
  std::vector<uint8_t> bytes;
};
absl::StatusOr<IdxData> ReadIdxFile(const std::string& path, uint32_t expected_magic,
                                    int64_t limit);

class FashionMnist : public Dataset {
 public:
  static absl::StatusOr<std::unique_ptr<Dataset>> Create(ParamReader& p);

  absl::Status Load() override;
  const DataSplit& train() const override { return train_; }
  const DataSplit& test() const override { return test_; }
  int num_classes() const override { return 10; }
  std::vector<int64_t> sample_shape() const override { return {1, 28, 28}; }
  std::string Describe() const override;

 private:
  FashionMnist(std::string dir, int64_t train_limit, int64_t test_limit, float mean, float stddev)
      : dir_(std::move(dir)), train_limit_(train_limit), test_limit_(test_limit), mean_(mean), std_(stddev) {}
  absl::StatusOr<DataSplit> LoadSplit(const std::string& prefix, int64_t limit) const;
  // The decoded-dataset cache: <cache_dir>/fashion_mnist-<key>.u8, the key a hash of the
  // four files' paths, sizes and modification times and the limits (a changed file is a
  // new key). Written atomically (a temporary renamed into place), so concurrent runs that
  // both decode never see a partial file; a file that does not check out is ignored.
  std::string CachePath() const;
  absl::Status ReadCache(const std::string& path);
  // Written from the splits' own bytes, and read straight into them: a whole-file
  // buffer next to the 55 MB dataset doubled the peak memory of a first run.
  absl::Status WriteCache(const std::string& path) const;

  std::string dir_;
  int64_t train_limit_;
  int64_t test_limit_;
  float mean_;  // the normalisation (p / 255 - mean_) / std_, kFashionMnist* unless configured
  float std_;
  DataSplit train_;
  DataSplit test_;
  std::string loaded_from_;  // the cache file, when the data came from it
};

}  // namespace quant

#endif  // QUANT_DATA_FASHION_MNIST_H_
