// The PTQ methods `static`, `dynamic`, `weight_only` (registry "ptq") on a
// model trained on synthetic data: registration, accuracy against the float
// model, model sizes, and the specs each method refuses at Check().
#include <memory>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/ptq/ptq_method.h"
#include "tests/ptq/ptq_test_util.h"

namespace quant::ptq {
namespace {

using ptq_test::Config;

std::unique_ptr<PtqMethod> Method(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "p.yaml", "ptq");
  auto m = Registry<PtqMethod>::Get().CreateFrom(p, "method", "static", "method");
  EXPECT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(p.Finish().ok()) << p.Finish();
  return std::move(m).value();
}

class MethodsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ds_ = ptq_test::Synthetic(1, 8, 1200, 1000).release();
    model_ = ptq_test::MakeModel("{name: mlp}", ds_->sample_shape(), ds_->num_classes()).release();
    ptq_test::TrainFp32(model_, *ds_, 3);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ds_;
  }
  PtqResult Apply(const std::string& method, const std::string& quant) {
    auto m = Method(method);
    auto q = Config(quant);
    EXPECT_TRUE(m->Check(*model_, *q).ok()) << m->Check(*model_, *q);
    PtqContext ctx{.model = model_, .quant = q.get(), .dataset = ds_, .seed = 0, .log = stderr, .name = "t"};
    auto r = m->Apply(ctx);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PtqResult{};
  }
  static Dataset* ds_;
  static nn::Model* model_;
};
Dataset* MethodsTest::ds_ = nullptr;
nn::Model* MethodsTest::model_ = nullptr;

TEST_F(MethodsTest, AllRegistered) {
  for (const char* name : {"static", "dynamic", "weight_only"}) {
    EXPECT_TRUE(Registry<PtqMethod>::Get().Contains(name)) << name;
  }
}

TEST_F(MethodsTest, StaticInt8IsCloseToFloatAndProducesAnIntegerModel) {
  PtqResult r = Apply("{method: static, calibration_batches: 4, batch_size: 64}", ptq_test::kInt8PerChannel);
  EXPECT_TRUE(r.has_integer_model);
  EXPECT_GT(r.float_test_accuracy, 0.6);
  EXPECT_NEAR(r.test_accuracy, r.float_test_accuracy, 0.01);
  EXPECT_EQ(r.model_bytes, backends::IntegerModelBytes(r.model));
  EXPECT_TRUE(backends::ValidateQuantizedModel(r.model).ok());
}

TEST_F(MethodsTest, WeightOnlyBitsAndGroups) {
  PtqResult w8 = Apply("{method: weight_only}", "{weights: {bits: 8, symmetric: true, granularity: per_channel}}");
  EXPECT_FALSE(w8.has_integer_model);
  EXPECT_NEAR(w8.test_accuracy, w8.float_test_accuracy, 0.01);
  PtqResult g4 = Apply("{method: weight_only}",
                       "{weights: {bits: 4, symmetric: true, granularity: per_block, axis: 1, block_size: 16}}");
  PtqResult c4 = Apply("{method: weight_only}", "{weights: {bits: 4, symmetric: true, granularity: per_channel}}");
  PtqResult t2 = Apply("{method: weight_only}", "{weights: {bits: 2, symmetric: true}}");
  // Per-group 4-bit keeps the accuracy better than 2-bit per-tensor, and costs more scales than per-channel.
  EXPECT_GT(g4.test_accuracy, t2.test_accuracy);
  EXPECT_GT(g4.model_bytes, c4.model_bytes);
  EXPECT_LT(g4.model_bytes, w8.model_bytes);
  EXPECT_NEAR(g4.test_accuracy, g4.float_test_accuracy, 0.05);
}

TEST_F(MethodsTest, DynamicInt8IsCloseToFloat) {
  PtqResult r = Apply("{method: dynamic, batch_size: 100}",
                      "{weights: {bits: 8, symmetric: true, granularity: per_channel},"
                      " activations: {bits: 8, reduce_range: true}}");
  EXPECT_FALSE(r.has_integer_model);
  EXPECT_NEAR(r.test_accuracy, r.float_test_accuracy, 0.01);
  // 2-bit activations per batch lose accuracy: the activation path is really quantized.
  PtqResult a2 = Apply("{method: dynamic}", "{weights: {bits: 8, symmetric: true}, activations: {bits: 2}}");
  EXPECT_LT(a2.test_accuracy, r.test_accuracy);
}

TEST_F(MethodsTest, ChecksRejectWhatTheMethodCannotDo) {
  auto q = Config("{weights: {bits: 4, symmetric: true, granularity: per_block, axis: 1, block_size: 16},"
                  " activations: {bits: 8}}");
  absl::Status s = Method("{method: static}")->Check(*model_, *q);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("fc1"), std::string::npos) << s;
  s = Method("{method: dynamic}")->Check(*model_, *Config("{weights: {bits: 8}}"));
  EXPECT_FALSE(s.ok());
  s = Method("{method: weight_only}")->Check(*model_, *Config("{activations: {bits: 8}}"));
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace quant::ptq
