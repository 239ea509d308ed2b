// The gradient-check helper itself: it passes correct backward passes of a
// layer with parameters and of a two-input op, and it catches wrong ones.
#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/nn/linear.h"
#include "tests/nn/gradient_check.h"

namespace quant::nn {
namespace {

using testing::CheckGradients;
using testing::CheckInputGradient;
using testing::CheckInputGradients;
using testing::CheckParameterGradients;
using testing::GradientCheckOptions;

// y = s * x0 * x1 (element-wise, one scalar parameter s); `bug` breaks one gradient.
class ScaledProduct : public MultiInputLayer {
 public:
  enum class Bug { kNone, kInput1, kScale };
  explicit ScaledProduct(Bug bug = Bug::kNone) : MultiInputLayer("prod"), bug_(bug) {
    scale_.Allocate({1});
    scale_.value[0] = 0.75f;
  }
  std::string Describe() const override { return "ScaledProduct()"; }
  std::string type() const override { return "scaled_product"; }
  int num_inputs() const override { return 2; }
  absl::StatusOr<Shape> BuildInputs(const std::vector<Shape>& inputs) override { return inputs[0]; }
  void ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) override {
    EnsureShape(y, x[0]->shape());
    for (int64_t i = 0; i < y->numel(); ++i) (*y)[i] = scale_.value[0] * (*x[0])[i] * (*x[1])[i];
  }
  void BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                      const std::vector<Tensor*>& dx) override {
    const float s = scale_.value[0];
    double ds = 0;
    for (int64_t i = 0; i < dy.numel(); ++i) ds += dy[i] * (*x[0])[i] * (*x[1])[i];
    scale_.grad[0] = static_cast<float>(bug_ == Bug::kScale ? 2 * ds : ds);
    for (int k = 0; k < 2; ++k) {
      if (dx[k] == nullptr) continue;
      EnsureShape(dx[k], x[k]->shape());
      const Tensor& other = *x[1 - k];
      const float factor = (bug_ == Bug::kInput1 && k == 1) ? -1.0f : 1.0f;
      for (int64_t i = 0; i < dy.numel(); ++i) (*dx[k])[i] = factor * s * dy[i] * other[i];
    }
  }
  std::vector<Parameter*> parameters() override { return {&scale_}; }

 private:
  Bug bug_;
  Parameter scale_{"scale"};
};

TEST(GradientCheckTest, PassesALayerWithParameters) {
  Linear fc("fc", 6, 4);
  ASSERT_TRUE(fc.Build({6}).ok());
  Rng rng(3);
  fc.ResetParameters(rng);
  EXPECT_TRUE(CheckInputGradient(fc, {3, 6}, 1));
  EXPECT_TRUE(CheckParameterGradients(fc, {3, 6}, 2));
}

TEST(GradientCheckTest, PassesAndCatchesATwoInputOp) {
  ScaledProduct good;
  EXPECT_TRUE(CheckInputGradients(good, {{2, 5}, {2, 5}}, 1));
  EXPECT_TRUE(CheckParameterGradients(good, {{2, 5}, {2, 5}}, 1));

  ScaledProduct bad_input(ScaledProduct::Bug::kInput1);
  const ::testing::AssertionResult r = CheckInputGradients(bad_input, {{2, 5}, {2, 5}}, 1);
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("input1["), std::string::npos) << r.message();
  EXPECT_TRUE(CheckParameterGradients(bad_input, {{2, 5}, {2, 5}}, 1));

  ScaledProduct bad_scale(ScaledProduct::Bug::kScale);
  EXPECT_TRUE(CheckInputGradients(bad_scale, {{2, 5}, {2, 5}}, 1));
  const ::testing::AssertionResult p = CheckParameterGradients(bad_scale, {{2, 5}, {2, 5}}, 1);
  EXPECT_FALSE(p);
  EXPECT_NE(std::string(p.message()).find("scale[0]"), std::string::npos) << p.message();
}

TEST(GradientCheckTest, GivenInputsAndSampledPoints) {
  ScaledProduct good;
  std::vector<Tensor> inputs = {testing::UniformTensor({4, 300}, 1, -2, 2),
                                testing::UniformTensor({4, 300}, 2, -2, 2)};
  GradientCheckOptions o;
  o.max_points = 50;
  const ::testing::AssertionResult r = CheckGradients(good, inputs, 3, true, true, o);
  EXPECT_TRUE(r);
  EXPECT_NE(std::string(r.message()).find("101 gradients checked"), std::string::npos)
      << r.message();
}

TEST(GradientCheckTest, UniformTensorKeepsAwayFromKinks) {
  const Tensor t = testing::UniformTensor({10000}, 7, -5, 5, {-3.0f, 3.0f}, 5e-3);
  for (int64_t i = 0; i < t.numel(); ++i) {
    ASSERT_GE(t[i], -5.0f);
    ASSERT_LT(t[i], 5.0f);
    ASSERT_GE(std::fabs(t[i] - 3.0f), 1e-2f - 1e-6f) << t[i];
    ASSERT_GE(std::fabs(t[i] + 3.0f), 1e-2f - 1e-6f) << t[i];
  }
}

}  // namespace
}  // namespace quant::nn
