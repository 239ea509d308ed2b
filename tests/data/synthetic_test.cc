// The synthetic dataset: sizes as configured, and a dataset too large for the machine refused
// at creation (before anything is allocated), naming the key.
#include "quant/data/synthetic.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::unique_ptr<Dataset>> Create(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "d.yaml", "dataset");
  return Registry<Dataset>::Get().CreateFrom(p, "name", "", "dataset");
}

TEST(SyntheticDatasetTest, LoadsTheConfiguredSizes) {
  auto ds = Create("{name: synthetic, train_size: 100, test_size: 20, num_classes: 3, channels: 2, image_size: 5}");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_TRUE((*ds)->Load().ok());
  EXPECT_EQ((*ds)->train().size(), 100);
  EXPECT_EQ((*ds)->test().size(), 20);
  EXPECT_EQ((*ds)->train().images.shape(), (std::vector<int64_t>{100, 2, 5, 5}));
}

TEST(SyntheticDatasetTest, ADatasetTooLargeForTheMachineIsRefusedBeforeAllocating) {
  // 4M samples of 3 x 64 x 64 floats: 192 GiB.
  auto ds = Create("{name: synthetic, train_size: 4194304, channels: 3, image_size: 64}");
  ASSERT_FALSE(ds.ok());
  EXPECT_THAT(std::string(ds.status().message()), HasSubstr("dataset.train_size"));
  EXPECT_THAT(std::string(ds.status().message()), HasSubstr("need 192.0 GiB, more than half of this machine's"));
}

}  // namespace
}  // namespace quant
