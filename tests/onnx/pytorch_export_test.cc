// Models exported by PyTorch 1.13 (tests/onnx/testdata/make_testdata.py: quantlab's cnn
// and a residual network with BatchNorm, trained one epoch on Fashion-MNIST) import and
// give PyTorch's own logits on the first 100 test images within 1e-4.
#include <cmath>
#include <fstream>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/dataset.h"
#include "quant/onnx/onnx_model.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace onnx_io {
namespace {

constexpr char kDir[] = "tests/onnx/testdata/";

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> v;
  float x;
  while (in.read(reinterpret_cast<char*>(&x), sizeof(x))) v.push_back(x);
  return v;
}

void ExpectTorchLogits(const std::string& model) {
  ParamReader dp(YAML::Load("{name: fashion_mnist, train_limit: 128}"), "t.yaml", "dataset");
  auto ds = Registry<Dataset>::Get().CreateFrom(dp, "name", "", "dataset");
  ASSERT_TRUE(ds.ok()) << ds.status();
  ASSERT_TRUE((*ds)->Load().ok());
  ParamReader mp(YAML::Load("{name: onnx, path: " + std::string(kDir) + model + ".onnx}"), "t.yaml", "model");
  auto m = Registry<nn::Model>::Get().CreateFrom(mp, "name", "", "model");
  ASSERT_TRUE(m.ok()) << m.status();
  const absl::Status built = (*m)->Build((*ds)->sample_shape(), 10, 0);
  ASSERT_TRUE(built.ok()) << built;
  std::printf("%s imported:\n%s\n", model.c_str(), (*m)->Summary().c_str());
  (*m)->set_training(false);
  const Tensor& logits = (*m)->Forward((*ds)->test().Slice(0, 100));
  const std::vector<float> want = ReadFloats(std::string(kDir) + model + "_logits_100.bin");
  ASSERT_EQ(want.size(), 1000u);
  ASSERT_EQ(logits.numel(), 1000);
  double worst = 0.0;
  for (int64_t k = 0; k < 1000; ++k) {
    EXPECT_NEAR(logits.data()[k], want[k], 1e-4) << model << " logit " << k;
    worst = std::max(worst, std::fabs(static_cast<double>(logits.data()[k]) - want[k]));
  }
  std::printf("%s: largest difference from PyTorch's logits over 100 test images: %.3g\n", model.c_str(), worst);
}

TEST(PytorchExportTest, CnnGivesPytorchsLogits) { ExpectTorchLogits("cnn"); }
TEST(PytorchExportTest, ResidualNetworkGivesPytorchsLogits) { ExpectTorchLogits("resnet"); }

}  // namespace
}  // namespace onnx_io
}  // namespace quant
