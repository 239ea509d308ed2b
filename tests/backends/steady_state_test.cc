// The shared executor allocates nothing once a batch size has run: buffers are
// planned and allocated on the first Run of a batch size, kernels keep their scratch.
// Counted with a replaced global operator new (this test binary only).
#include <atomic>
#include <cstdlib>
#include <new>

#include "gtest/gtest.h"
#include "quant/backends/backend.h"
#include "quant/backends/model_builder.h"
#include "tests/backends/test_models.h"

namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

void* operator new(size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }  // NOLINT: pairs with the operator new above
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace quant::backends {
namespace {

TEST(SteadyStateTest, RunAllocatesNothingAfterTheFirstBatchOfASize) {
  std::vector<std::pair<std::string, QuantizedModel>> models = {{"cnn", MakeFloatCnn(1)}};
  for (auto& [name, f] : GraphModels()) {
    if (name.find("concat") != std::string::npos || name.find("residual") != std::string::npos) {
      models.emplace_back(name, f);
      RandomizeFloatWeights(&models.back().second, 2);
    }
  }
  for (const auto& [model_name, f] : models) {
    const std::vector<float> calib = RandomImages(f, 8, 3);
    auto m = QuantizeMinMax(f, calib.data(), 8, QuantizeOptions());
    ASSERT_TRUE(m.ok());
    for (const char* name : {"reference", "gemmlowp", "xnnpack", "fake_quant", "xnnpack_f32", "xnnpack_f16"}) {
      auto b = CreateBackend(name);
      ASSERT_TRUE(b.ok());
      if (!(*b)->Prepare(*m).ok()) continue;  // e.g. xnnpack on concat
      const std::vector<float> x = RandomImages(*m, 16, 4);
      RunOutput out;
      ASSERT_TRUE((*b)->Run(x.data(), 16, &out).ok());
      const int64_t before = g_allocations.load();
      ASSERT_TRUE((*b)->Run(x.data(), 16, &out).ok());
      ASSERT_TRUE((*b)->Run(x.data(), 16, &out).ok());
      EXPECT_EQ(g_allocations.load() - before, 0) << model_name << " on " << name;
    }
  }
}

}  // namespace
}  // namespace quant::backends
