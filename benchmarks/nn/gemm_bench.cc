// The GEMM library's own single-core rate (Google Benchmark), for the square
// reference size and the shapes the mlp and cnn training steps run. Compare
// the `GFLOP/s` counter with train_bench's achieved rate. The counter is per
// CPU second (Google Benchmark's rate counters use CPU time); on a shared
// machine the wall-clock `Time` column is larger.
//
//   bazel run //benchmarks/nn:gemm_bench
#include <vector>

#include "benchmark/benchmark.h"
#include "quant/nn/gemm.h"

namespace {

void BM_Sgemm(benchmark::State& state) {
  const int m = state.range(0), n = state.range(1), k = state.range(2);
  const bool ta = state.range(3) != 0, tb = state.range(4) != 0;
  quant::nn::SetGemmThreads(1);
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(k) * n, 0.25f),
      c(static_cast<size_t>(m) * n);
  for (auto _ : state) {
    quant::nn::Sgemm(ta, tb, m, n, k, 1.0f, a.data(), ta ? m : k, b.data(), tb ? k : n, 0.0f,
                     c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * m * n * k * state.iterations() / 1e9,
                                                 benchmark::Counter::kIsRate);
}

// {m, n, k, transpose A, transpose B}
BENCHMARK(BM_Sgemm)
    ->ArgNames({"m", "n", "k", "tA", "tB"})
    ->Args({512, 512, 512, 0, 0})
    ->Args({1024, 1024, 1024, 0, 0})
    ->Args({128, 256, 784, 0, 1})     // mlp fc1 forward
    ->Args({256, 784, 128, 1, 0})     // mlp fc1 weight gradient
    ->Args({128, 128, 256, 0, 1})     // mlp fc2 forward
    ->Args({32, 196, 144, 0, 0})      // cnn conv2 forward, one image (as trained)
    ->Args({32, 144, 196, 0, 1})      // cnn conv2 weight gradient, one image
    ->Args({144, 196, 32, 1, 0})      // cnn conv2 input gradient (dcol), one image
    ->Args({32, 25088, 144, 0, 0})    // cnn conv2 forward as one batch-wide GEMM (for comparison)
    ->Args({16, 100352, 9, 0, 0})     // cnn conv1 as a GEMM (trained by the direct path instead)
    ->Args({128, 128, 1568, 0, 1})    // cnn fc1 forward
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
