#include "quant/data/synthetic.h"

#include <unistd.h>

#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

// Box-Muller over mt19937_64: std::normal_distribution's algorithm is
// implementation-defined, and the data must be the same everywhere.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : rng_(seed) {}
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double u1 = (static_cast<double>(rng_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng_() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2.0 * M_PI * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2.0 * M_PI * u2));
  }
  uint64_t Bits() { return rng_(); }

 private:
  std::mt19937_64 rng_;
  bool has_spare_ = false;
  float spare_ = 0.0f;
};

DataSplit MakeSplit(const std::vector<std::vector<float>>& prototypes, int64_t n,
                    const std::vector<int64_t>& sample_shape, double noise, Gaussian& g) {
  DataSplit split;
  std::vector<int64_t> shape = {n};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  split.images = Tensor(shape);
  split.labels.resize(n);
  const int64_t sample = NumElements(sample_shape);
  const int classes = static_cast<int>(prototypes.size());
  for (int64_t i = 0; i < n; ++i) {
    const int label = static_cast<int>(g.Bits() % classes);
    split.labels[i] = label;
    float* x = split.images.data() + i * sample;
    for (int64_t j = 0; j < sample; ++j) {
      x[j] = prototypes[label][j] + static_cast<float>(noise) * g.Next();
    }
  }
  return split;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dataset>> SyntheticDataset::Create(ParamReader& p) {
  Options o;
  o.train_size = p.IntInRange("train_size", o.train_size, 1, 1 << 22, "training samples");
  o.test_size = p.IntInRange("test_size", o.test_size, 1, 1 << 22, "test samples");
  o.num_classes = static_cast<int>(p.IntInRange("num_classes", o.num_classes, 2, 1000, "classes"));
  o.channels = p.IntInRange("channels", o.channels, 1, 64, "image channels");
  o.image_size = p.IntInRange("image_size", o.image_size, 1, 512, "image height = width");
  o.noise = p.DoubleInRange("noise", o.noise, 0.0, 100.0,
                            "standard deviation of the noise around each class prototype");
  o.seed = static_cast<uint64_t>(p.IntInRange("seed", 0, 0, INT64_MAX, "generator seed"));
  RETURN_IF_ERROR(p.status());
  // Checked before anything is allocated: both splits are held as float32, and training needs
  // room beside them (the model, its batches), so at most half of the machine's memory.
  const double bytes = 4.0 * static_cast<double>(o.train_size + o.test_size + o.num_classes) *
                       static_cast<double>(o.channels) * static_cast<double>(o.image_size) * o.image_size;
  const double memory = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
  if (memory > 0 && bytes > memory / 2) {
    p.Fail("train_size", absl::StrFormat("%lld + %lld samples of %lld x %lld x %lld floats need %.1f GiB, more than "
                                         "half of this machine's %.1f GiB; use fewer or smaller samples",
                                         static_cast<long long>(o.train_size), static_cast<long long>(o.test_size),
                                         static_cast<long long>(o.channels), static_cast<long long>(o.image_size),
                                         static_cast<long long>(o.image_size), bytes / (1 << 30), memory / (1 << 30)));
    return p.status();
  }
  return std::unique_ptr<Dataset>(new SyntheticDataset(o));
}

absl::Status SyntheticDataset::Load() {
  Gaussian g(options_.seed * 0x9E3779B97F4A7C15ull + 1);
  const std::vector<int64_t> shape = sample_shape();
  const int64_t sample = NumElements(shape);
  std::vector<std::vector<float>> prototypes(options_.num_classes, std::vector<float>(sample));
  for (auto& proto : prototypes) {
    for (float& v : proto) v = g.Next();
  }
  train_ = MakeSplit(prototypes, options_.train_size, shape, options_.noise, g);
  test_ = MakeSplit(prototypes, options_.test_size, shape, options_.noise, g);
  return absl::OkStatus();
}

std::string SyntheticDataset::Describe() const {
  return absl::StrCat("synthetic (", train_.size(), " train, ", test_.size(), " test, ",
                      options_.num_classes, " classes, noise ", options_.noise, ")");
}

QUANTLAB_REGISTER(Dataset, "synthetic", SyntheticDataset::Create,
                  "class prototypes plus Gaussian noise: fast, learnable, no I/O");

}  // namespace quant
