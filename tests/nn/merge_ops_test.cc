// The ops with several inputs: add (residual) and concat (channels). Values
// against hand-computed ones, gradients of every input against finite
// differences, shape errors, and registration.
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/add.h"
#include "quant/nn/concat.h"
#include "tests/nn/gradient_check.h"

namespace quant::nn {
namespace {

TEST(AddOp, SumsAndPassesTheGradientToBothInputs) {
  Add add("a");
  ASSERT_TRUE(add.BuildInputs({{2, 3}, {2, 3}}).ok());
  Tensor x({1, 2, 3}), y({1, 2, 3}), out;
  for (int i = 0; i < 6; ++i) {
    x[i] = static_cast<float>(i);
    y[i] = 0.5f * static_cast<float>(i);
  }
  add.ForwardInputs({&x, &y}, &out);
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(out[i], 1.5f * i);
  EXPECT_TRUE(testing::CheckInputGradients(add, {{3, 2, 3}, {3, 2, 3}}, 1));
}

TEST(AddOp, ShapeMismatchNamesBothShapes) {
  Add add("a");
  absl::StatusOr<Shape> s = add.BuildInputs({{16, 14, 14}, {32, 7, 7}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("[16, 14, 14] and [32, 7, 7]"), std::string::npos) << s.status();
  EXPECT_FALSE(add.BuildInputs({{4}}).ok());
}

TEST(ConcatOp, JoinsChannelsInOrder) {
  Concat cat("c");
  absl::StatusOr<Shape> s = cat.BuildInputs({{1, 2, 2}, {2, 2, 2}});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(*s, (Shape{3, 2, 2}));
  Tensor a({2, 1, 2, 2}), b({2, 2, 2, 2}), out;
  for (int64_t i = 0; i < a.numel(); ++i) a[i] = 100.0f + i;
  for (int64_t i = 0; i < b.numel(); ++i) b[i] = 200.0f + i;
  cat.ForwardInputs({&a, &b}, &out);
  ASSERT_EQ(out.shape(), (Shape{2, 3, 2, 2}));
  // Sample 1: a's plane (104..107), then b's two planes (208..215).
  EXPECT_EQ(out[12], 104.0f);
  EXPECT_EQ(out[16], 208.0f);
  EXPECT_EQ(out[23], 215.0f);
  Concat three("t");
  ASSERT_TRUE(three.BuildInputs({{1, 2, 2}, {2, 2, 2}, {3, 2, 2}}).ok());
  EXPECT_TRUE(testing::CheckInputGradients(three, {{3, 1, 2, 2}, {3, 2, 2, 2}, {3, 3, 2, 2}}, 2));
  Concat flat("f");
  ASSERT_TRUE(flat.BuildInputs({{3}, {5}}).ok());
  EXPECT_TRUE(testing::CheckInputGradients(flat, {{2, 3}, {2, 5}}, 3));
}

TEST(ConcatOp, OtherDimensionsMustAgree) {
  Concat cat("c");
  absl::StatusOr<Shape> s = cat.BuildInputs({{4, 7, 7}, {4, 14, 14}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("input 1 is [4, 14, 14]"), std::string::npos) << s.status();
}

TEST(MergeOps, Registered) {
  EXPECT_TRUE(Registry<Layer>::Get().Contains("add"));
  EXPECT_TRUE(Registry<Layer>::Get().Contains("concat"));
}

}  // namespace
}  // namespace quant::nn
