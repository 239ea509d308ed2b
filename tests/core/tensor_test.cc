#include "quant/core/tensor.h"

#include "gtest/gtest.h"

namespace quant {
namespace {

TEST(TensorTest, ShapeAndStorage) {
  Tensor t({2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.rank(), 2);
  EXPECT_EQ(t.dim(-1), 3);
  EXPECT_EQ(t.ShapeString(), "[2, 3]");
  for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t[i], 0.0f);
  t.Fill(1.5f);
  EXPECT_EQ(t[5], 1.5f);
  t.Reshape({3, 2});
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(t[5], 1.5f);
}

TEST(TensorTest, ResizeKeepsCapacity) {
  Tensor t({128, 784});
  const float* before = t.data();
  t.Resize({96, 784});  // a smaller last batch
  EXPECT_EQ(t.numel(), 96 * 784);
  t.Resize({128, 784});
  EXPECT_EQ(t.data(), before);  // no reallocation in steady state
}

TEST(TensorTest, FromValuesAndFilled) {
  Tensor t({2}, {1.0f, -2.0f});
  EXPECT_EQ(t[1], -2.0f);
  EXPECT_EQ(Tensor::Filled({2, 2}, 3.0f)[3], 3.0f);
}

TEST(TensorDeathTest, MismatchedValuesAreAnInternalError) {
  EXPECT_DEATH(Tensor({2, 2}, {1.0f}), "values do not match the shape");
  Tensor t({4});
  EXPECT_DEATH(t.Reshape({3}), "reshape changes the element count");
}

}  // namespace
}  // namespace quant
