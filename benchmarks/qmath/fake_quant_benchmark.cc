// Fake-quantization throughput on 1M floats beside a plain copy of the same
// buffer (the speed floor of a streaming op). Run with
//   bazel run -c opt //benchmarks/qmath:fake_quant_benchmark -- \
//     --benchmark_repetitions=9 --benchmark_report_aggregates_only=true
// and compare items_per_second of the medians.
#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "quant/qmath/fake_quant.h"

namespace quant {
namespace {

constexpr int64_t kN = 1 << 20;

Tensor Input(std::vector<int64_t> shape) {
  Tensor t(std::move(shape));
  std::mt19937 rng(1);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = n(rng);
  return t;
}

void BM_Copy(benchmark::State& state) {
  const Tensor x = Input({kN});
  Tensor y({kN});
  for (auto _ : state) {
    std::memcpy(y.data(), x.data(), kN * sizeof(float));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_Copy);

void BM_FakeQuantPerTensor(benchmark::State& state) {
  const Tensor x = Input({kN});
  Tensor y({kN});
  const QParams qp = QParams::PerTensor(0.0313f, 3, -128, 127);
  for (auto _ : state) {
    benchmark::DoNotOptimize(FakeQuantize(x, qp, &y).ok());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_FakeQuantPerTensor);

// With the STE mask written too (what training's forward does).
void BM_FakeQuantPerTensorWithMask(benchmark::State& state) {
  const Tensor x = Input({kN});
  Tensor y({kN});
  std::vector<uint8_t> mask(kN);
  const QParams qp = QParams::PerTensor(0.0313f, 3, -128, 127);
  for (auto _ : state) {
    benchmark::DoNotOptimize(FakeQuantize(x, qp, &y, &mask).ok());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_FakeQuantPerTensorWithMask);

// Per channel: axis 0 of [channels, kN/channels] (long runs per channel) and
// the last axis of [kN/channels, channels] (per-lane parameters).
void BM_FakeQuantPerChannel(benchmark::State& state) {
  const int64_t channels = state.range(0);
  const bool last_axis = state.range(1) != 0;
  const Tensor x = Input(last_axis ? std::vector<int64_t>{kN / channels, channels}
                                   : std::vector<int64_t>{channels, kN / channels});
  Tensor y(x.shape());
  QParams qp;
  qp.granularity = Granularity::kPerChannel;
  qp.axis = last_axis ? 1 : 0;
  qp.quant_min = -128;
  qp.quant_max = 127;
  for (int64_t c = 0; c < channels; ++c) {
    qp.scale.push_back(0.01f + 0.001f * c);
    qp.zero_point.push_back(static_cast<int32_t>(c % 7) - 3);
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(FakeQuantize(x, qp, &y).ok());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}
BENCHMARK(BM_FakeQuantPerChannel)->Args({64, 0})->Args({64, 1})->ArgNames({"channels", "last_axis"});

}  // namespace
}  // namespace quant
