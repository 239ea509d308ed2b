// Shared fixtures of the training-scheme tests: a small synthetic dataset,
// schemes, models and quant: sections read from YAML as the driver reads them,
// and a fresh temporary directory.
#ifndef TESTS_TRAINING_SCHEME_TEST_UTIL_H_
#define TESTS_TRAINING_SCHEME_TEST_UTIL_H_

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/training_scheme.h"
#include "yaml-cpp/yaml.h"

namespace quant {

// $TEST_TMPDIR/<name>, emptied.
inline std::string TempDir(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  std::filesystem::remove_all(path);
  return path;
}

// 600 train / 300 test samples of image_size x image_size, loaded.
inline std::unique_ptr<Dataset> Synthetic(int image_size = 8) {
  ParamReader p(YAML::Load("{train_size: 600, test_size: 300, image_size: " +
                           std::to_string(image_size) + ", noise: 1.0}"),
                "t.yaml", "dataset");
  auto ds = SyntheticDataset::Create(p);
  EXPECT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE((*ds)->Load().ok());
  return std::move(ds).value();
}

// The `train:` map, unknown keys included in the status.
inline absl::StatusOr<std::unique_ptr<TrainingScheme>> Scheme(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "t.yaml", "train");
  auto s = Registry<TrainingScheme>::Get().CreateFrom(p, "scheme", "fp32", "scheme");
  if (!s.ok()) return s.status();
  if (absl::Status st = p.Finish(); !st.ok()) return st;
  return s;
}

// The `model:` map, built for the dataset.
inline std::unique_ptr<nn::Model> Model(const std::string& yaml, const Dataset& ds, uint64_t seed = 0) {
  ParamReader p(YAML::Load(yaml), "t.yaml", "model");
  auto m = Registry<nn::Model>::Get().CreateFrom(p, "name", "", "model");
  EXPECT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->Build(ds.sample_shape(), ds.num_classes(), seed).ok());
  return std::move(m).value();
}

// The `quant:` section.
inline absl::StatusOr<std::unique_ptr<QuantConfig>> Config(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "t.yaml", "quant");
  auto c = QuantConfig::Read(p);
  if (!c.ok()) return c.status();
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return c;
}

}  // namespace quant

#endif  // TESTS_TRAINING_SCHEME_TEST_UTIL_H_
