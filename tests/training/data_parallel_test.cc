// DataParallel: the summed gradient equals one model's full-batch gradient (to
// float rounding), runs repeat bit for bit, BatchNorm's running statistics are
// the row-weighted mean of the parts', and training through the loop with
// --threads=2 learns and is reproducible.
#include "quant/training/data_parallel.h"

#include <cmath>

#include "gtest/gtest.h"
#include "quant/data/dataset.h"
#include "quant/nn/loss.h"
#include "quant/training/train_loop.h"
#include "tests/training/scheme_test_util.h"

namespace quant {
namespace {

constexpr char kCnn[] = "{name: cnn, channels: [4, 8], hidden: 16}";
constexpr char kCnnBn[] = "{name: cnn_bn, channels: [4], hidden: 8}";

std::unique_ptr<DataParallel> Parallel(nn::Model* master, const std::string& yaml, const Dataset& ds, int threads) {
  std::vector<std::unique_ptr<nn::Model>> replicas;
  for (int t = 1; t < threads; ++t) replicas.push_back(Model(yaml, ds, /*seed=*/100 + t));
  auto dp = DataParallel::Create(master, std::move(replicas));
  EXPECT_TRUE(dp.ok()) << dp.status();
  return std::move(dp).value();
}

void Batch(const Dataset& ds, int64_t n, Tensor* images, std::vector<int32_t>* labels) {
  BatchIterator it(ds.train(), n, /*shuffle=*/false, 0);
  it.StartEpoch(0);
  ASSERT_TRUE(it.Next(images, labels));
}

// Gradients of one step: the whole batch through one model, or split.
std::vector<Tensor> Grads(nn::Model& m, DataParallel* dp, const Tensor& images, const std::vector<int32_t>& labels,
                          Tensor* logits_out) {
  nn::SoftmaxCrossEntropy loss;
  const Tensor& logits = dp != nullptr ? dp->Forward(images) : m.Forward(images);
  *logits_out = logits;
  int64_t correct = 0;
  loss.Forward(logits, labels, &correct);
  Tensor dlogits;
  loss.Backward(&dlogits);
  if (dp != nullptr) {
    dp->Backward(dlogits);
  } else {
    m.Backward(images, dlogits);
  }
  std::vector<Tensor> g;
  for (nn::Parameter* p : m.Parameters()) g.push_back(p->grad);
  return g;
}

TEST(DataParallel, GradientIsTheFullBatchGradient) {
  auto ds = Synthetic();
  Tensor images, logits1, logits2;
  std::vector<int32_t> labels;
  for (int64_t batch : {1, 2, 7, 32}) {
    for (int threads : {2, 3}) {
      SCOPED_TRACE(testing::Message() << "batch " << batch << ", threads " << threads);
      Batch(*ds, batch, &images, &labels);
      auto single = Model(kCnn, *ds);
      auto master = Model(kCnn, *ds);
      auto dp = Parallel(master.get(), kCnn, *ds, threads);
      const std::vector<Tensor> want = Grads(*single, nullptr, images, labels, &logits1);
      const std::vector<Tensor> got = Grads(*master, dp.get(), images, labels, &logits2);
      // Per image the forward pass is the same computation: equal logits.
      ASSERT_EQ(logits1.shape(), logits2.shape());
      for (int64_t i = 0; i < logits1.numel(); ++i) ASSERT_NEAR(logits1[i], logits2[i], 1e-5f) << i;
      ASSERT_EQ(want.size(), got.size());
      for (size_t p = 0; p < want.size(); ++p) {
        double scale = 0;
        for (int64_t i = 0; i < want[p].numel(); ++i) scale = std::max(scale, std::fabs(double{want[p][i]}));
        for (int64_t i = 0; i < want[p].numel(); ++i) {
          ASSERT_NEAR(got[p][i], want[p][i], 1e-5 * scale + 1e-7) << "parameter " << p << " element " << i;
        }
      }
    }
  }
}

TEST(DataParallel, RepeatsBitForBit) {
  auto ds = Synthetic();
  Tensor images, logits;
  std::vector<int32_t> labels;
  Batch(*ds, 33, &images, &labels);
  std::vector<std::vector<Tensor>> runs;
  for (int run = 0; run < 2; ++run) {
    auto master = Model(kCnn, *ds);
    auto dp = Parallel(master.get(), kCnn, *ds, 2);
    runs.push_back(Grads(*master, dp.get(), images, labels, &logits));
  }
  for (size_t p = 0; p < runs[0].size(); ++p) {
    ASSERT_EQ(0, std::memcmp(runs[0][p].data(), runs[1][p].data(), runs[0][p].numel() * sizeof(float)));
  }
}

TEST(DataParallel, BatchNormStatisticsAreTheRowWeightedMean) {
  auto ds = Synthetic();
  Tensor images, logits;
  std::vector<int32_t> labels;
  Batch(*ds, 5, &images, &labels);  // parts of 2 and 3 rows
  auto master = Model(kCnnBn, *ds);
  auto dp = Parallel(master.get(), kCnnBn, *ds, 2);
  // The same two parts through separate single models give each part's update.
  Tensor part0, part1;
  const int64_t row = images.numel() / 5;
  part0 = Tensor({2, images.dim(1), images.dim(2), images.dim(3)});
  part1 = Tensor({3, images.dim(1), images.dim(2), images.dim(3)});
  std::memcpy(part0.data(), images.data(), 2 * row * sizeof(float));
  std::memcpy(part1.data(), images.data() + 2 * row, 3 * row * sizeof(float));
  auto a = Model(kCnnBn, *ds), b = Model(kCnnBn, *ds);
  a->Forward(part0);
  b->Forward(part1);
  dp->Forward(images);
  dp->Sync();
  const auto got = master->StateTensors(), sa = a->StateTensors(), sb = b->StateTensors();
  int checked = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].first.find("running") == std::string::npos) continue;
    for (int64_t j = 0; j < got[i].second->numel(); ++j) {
      const double want = 0.4 * (*sa[i].second)[j] + 0.6 * (*sb[i].second)[j];
      ASSERT_NEAR((*got[i].second)[j], want, 1e-6) << got[i].first << "[" << j << "]";
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
}

TEST(DataParallel, RefusesReplicasOfAnotherArchitecture) {
  auto ds = Synthetic();
  auto master = Model(kCnn, *ds);
  std::vector<std::unique_ptr<nn::Model>> replicas;
  replicas.push_back(Model("{name: cnn, channels: [4, 9], hidden: 16}", *ds));
  auto dp = DataParallel::Create(master.get(), std::move(replicas));
  ASSERT_FALSE(dp.ok());
  EXPECT_NE(dp.status().message().find("differs"), std::string::npos) << dp.status();
  EXPECT_FALSE(DataParallel::Create(master.get(), {}).ok());
}

TEST(DataParallel, TrainingLoopWithTwoThreadsLearnsAndRepeats) {
  auto ds = Synthetic();
  std::vector<std::string> checkpoints;
  std::vector<double> accuracy;
  // Runs 0 and 1 on two threads, run 2 on one.
  for (int run = 0; run < 3; ++run) {
    auto model = Model(kCnn, *ds, 3);
    auto scheme = Scheme("{scheme: fp32, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}");
    ASSERT_TRUE(scheme.ok()) << scheme.status();
    TrainContext ctx;
    ctx.dataset = ds.get();
    ctx.model = model.get();
    ctx.seed = 3;
    ctx.threads = run < 2 ? 2 : 1;
    ctx.progress = TrainContext::Progress::kQuiet;
    ctx.make_replica = [&]() -> absl::StatusOr<std::unique_ptr<nn::Model>> { return Model(kCnn, *ds, 9); };
    auto r = (*scheme)->Train(ctx);
    ASSERT_TRUE(r.ok()) << r.status();
    accuracy.push_back(r->final_test_accuracy);
    std::string bytes;
    for (auto& [name, t] : model->StateTensors())
      bytes.append(reinterpret_cast<const char*>(t->data()), t->numel() * sizeof(float));
    checkpoints.push_back(bytes);
  }
  // As well as one thread (to a few test images) and far above chance (0.1).
  EXPECT_GT(accuracy[0], 0.3);
  EXPECT_NEAR(accuracy[0], accuracy[2], 0.05);
  EXPECT_EQ(accuracy[0], accuracy[1]);
  EXPECT_TRUE(checkpoints[0] == checkpoints[1]);
}

}  // namespace
}  // namespace quant
