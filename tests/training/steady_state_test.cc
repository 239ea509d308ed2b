// "No per-batch allocation in steady state": counts heap allocations (a
// replaced global operator new) during training steps of cnn_bn and mlp after
// a warm-up step, for every optimizer; and of the graph models resnet_mini and
// mobilenet_mini (every conv path: direct, row panels, pointwise, strided
// im2col, chunks, depthwise; BatchNorm, add, global average pool).
#include <atomic>
#include <cstdlib>
#include <new>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/data/dataset.h"
#include "quant/nn/loss.h"
#include "quant/nn/model.h"
#include "quant/nn/optimizer.h"
#include "yaml-cpp/yaml.h"

namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

namespace quant {
namespace {

template <typename T>
std::unique_ptr<T> Make(const std::string& yaml) {
  ParamReader p(YAML::Load(yaml), "t.yaml", "x");
  auto made = Registry<T>::Get().CreateFrom(p, "name", "", "x");
  EXPECT_TRUE(made.ok()) << made.status();
  return std::move(made).value();
}

TEST(SteadyStateTest, TrainingStepsDoNotAllocate) {
  for (const char* model_yaml : {"{name: cnn_bn}", "{name: mlp}", "{name: resnet_mini}", "{name: mobilenet_mini}"}) {
    for (const char* opt_yaml : {"{name: sgd, lr: 0.01, momentum: 0.9, nesterov: true}",
                                 "{name: adamw}"}) {
      auto model = Make<nn::Model>(model_yaml);
      ASSERT_TRUE(model->Build({1, 28, 28}, 10, 0).ok());
      auto opt = Make<nn::Optimizer>(opt_yaml);
      auto schedule = Make<nn::Schedule>("{name: cosine}");
      opt->Attach(model->Parameters());
      DataSplit split;
      split.images = Tensor({256, 1, 28, 28});
      for (int64_t i = 0; i < split.images.numel(); ++i) split.images[i] = (i % 17) * 0.1f - 0.8f;
      for (int i = 0; i < 256; ++i) split.labels.push_back(i % 10);
      Tensor images = split.images, dlogits;
      images.Resize({64, 1, 28, 28});
      std::vector<int32_t> labels(split.labels.begin(), split.labels.begin() + 64);
      nn::SoftmaxCrossEntropy loss;
      auto step = [&](int64_t i) {
        loss.Forward(model->Forward(images), labels, nullptr);
        loss.Backward(&dlogits);
        model->Backward(images, dlogits);
        opt->Step(schedule->LearningRate(opt->lr(), i, 100, 10));
      };
      step(0);  // warm-up: buffers take their sizes
      const long before = g_allocations.load();
      for (int64_t i = 1; i < 4; ++i) step(i);
      EXPECT_EQ(g_allocations.load() - before, 0) << model_yaml << " " << opt_yaml;
    }
  }
}

}  // namespace
}  // namespace quant
