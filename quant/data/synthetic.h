// A small synthetic classification dataset for fast tests and examples: each
// class has a random prototype image, and a sample is its class prototype plus
// Gaussian noise. Learnable, deterministic from its seed, no I/O.
#ifndef QUANT_DATA_SYNTHETIC_H_
#define QUANT_DATA_SYNTHETIC_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/data/dataset.h"

namespace quant {

class SyntheticDataset : public Dataset {
 public:
  struct Options {
    int64_t train_size = 2048;
    int64_t test_size = 512;
    int num_classes = 10;
    int64_t channels = 1;
    int64_t image_size = 28;
    double noise = 1.0;
    uint64_t seed = 0;
  };
  explicit SyntheticDataset(Options options) : options_(options) {}
  static absl::StatusOr<std::unique_ptr<Dataset>> Create(ParamReader& p);

  absl::Status Load() override;
  const DataSplit& train() const override { return train_; }
  const DataSplit& test() const override { return test_; }
  int num_classes() const override { return options_.num_classes; }
  std::vector<int64_t> sample_shape() const override {
    return {options_.channels, options_.image_size, options_.image_size};
  }
  std::string Describe() const override;

 private:
  Options options_;
  DataSplit train_;
  DataSplit test_;
};

}  // namespace quant

#endif  // QUANT_DATA_SYNTHETIC_H_
