#include <set>

#include "gtest/gtest.h"
#include "quant/data/dataset.h"
#include "quant/data/synthetic.h"

namespace quant {
namespace {

DataSplit Numbered(int64_t n) {
  DataSplit s;
  s.images = Tensor({n, 1, 1, 2});
  s.labels.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    s.images[2 * i] = static_cast<float>(i);
    s.images[2 * i + 1] = static_cast<float>(-i);
    s.labels[i] = static_cast<int32_t>(i);
  }
  return s;
}

std::vector<int32_t> EpochLabels(BatchIterator& it, int epoch) {
  it.StartEpoch(epoch);
  Tensor x;
  std::vector<int32_t> y, all;
  while (it.Next(&x, &y)) all.insert(all.end(), y.begin(), y.end());
  return all;
}

TEST(BatchIteratorTest, CoversEverySampleOncePerEpochWithMatchingImages) {
  DataSplit s = Numbered(10);
  BatchIterator it(s, 4, /*shuffle=*/true, /*seed=*/7);
  EXPECT_EQ(it.num_batches(), 3);
  Tensor x;
  std::vector<int32_t> y;
  std::vector<int64_t> sizes;
  std::set<int32_t> seen;
  while (it.Next(&x, &y)) {
    sizes.push_back(x.dim(0));
    for (size_t i = 0; i < y.size(); ++i) {
      EXPECT_EQ(x[2 * i], static_cast<float>(y[i]));
      EXPECT_EQ(x[2 * i + 1], static_cast<float>(-y[i]));
      seen.insert(y[i]);
    }
  }
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(seen.size(), 10u);
}

TEST(BatchIteratorTest, DeterministicPerSeedAndEpoch) {
  DataSplit s = Numbered(100);
  BatchIterator a(s, 16, true, 3), b(s, 16, true, 3), c(s, 16, true, 4);
  const auto a0 = EpochLabels(a, 0);
  const auto a1 = EpochLabels(a, 1);
  EXPECT_EQ(a0, EpochLabels(b, 0));
  EXPECT_EQ(a1, EpochLabels(b, 1));
  EXPECT_NE(a0, a1);                 // epochs differ
  EXPECT_NE(a0, EpochLabels(c, 0));  // seeds differ
  EXPECT_EQ(a0, EpochLabels(a, 0));  // an epoch can be replayed
}

TEST(BatchIteratorTest, NoShuffleKeepsOrderAndDropLast) {
  DataSplit s = Numbered(10);
  BatchIterator it(s, 4, false, 0, /*drop_last=*/true);
  EXPECT_EQ(it.num_batches(), 2);
  EXPECT_EQ(EpochLabels(it, 5), (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(SyntheticDatasetTest, DeterministicAndShaped) {
  SyntheticDataset::Options o;
  o.train_size = 64;
  o.test_size = 16;
  o.num_classes = 3;
  o.image_size = 5;
  SyntheticDataset a(o), b(o);
  ASSERT_TRUE(a.Load().ok());
  ASSERT_TRUE(b.Load().ok());
  EXPECT_EQ(a.train().images.shape(), (std::vector<int64_t>{64, 1, 5, 5}));
  EXPECT_EQ(a.train().labels, b.train().labels);
  for (int64_t i = 0; i < a.train().images.numel(); ++i) {
    ASSERT_EQ(a.train().images[i], b.train().images[i]);
  }
  for (int32_t l : a.test().labels) EXPECT_TRUE(l >= 0 && l < 3);
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

// 8-bit samples [3 images, 2 channels, 1 x 2]: read normalised, in NCHW and in NHWC order,
// and batched, all with the load-time arithmetic (p / 255 - mean) / std.
TEST(DataSplitTest, BytesAreNormalisedWhenReadInEitherLayout) {
  DataSplit s;
  s.pixel_shape = {2, 1, 2};
  s.SetPixelNormalisation(0.25f, 0.5f);
  for (int i = 0; i < 12; ++i) s.pixels.push_back(static_cast<uint8_t>(20 * i));
  s.labels = {0, 1, 2};
  auto value = [&](int byte) { return (s.pixels[byte] / 255.0f - 0.25f) / 0.5f; };
  EXPECT_EQ(s.sample_numel(), 4);
  EXPECT_EQ(s.shape(), (std::vector<int64_t>{3, 2, 1, 2}));
  const Tensor t = s.Slice(1, 2);
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 2, 1, 2}));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(t.values()[i], value(4 + i)) << i;
  // NHWC: sample 1's (c0 p0, c1 p0, c0 p1, c1 p1) = bytes 4, 6, 5, 7.
  const std::vector<float> nhwc = s.Nhwc(1, 1);
  EXPECT_EQ(nhwc, (std::vector<float>{value(4), value(6), value(5), value(7)}));
  BatchIterator it(s, 2, /*shuffle=*/false, 0);
  it.StartEpoch(0);
  Tensor x;
  std::vector<int32_t> y;
  ASSERT_TRUE(it.Next(&x, &y));
  EXPECT_EQ(x.shape(), (std::vector<int64_t>{2, 2, 1, 2}));
  EXPECT_EQ(x.values()[7], value(7));
}

}  // namespace
}  // namespace quant
