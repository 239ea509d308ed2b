// Speed of nn::Conv2d's forward and backward on the shapes quantlab trains
// (Google Benchmark), batch 128, one thread: the cnn's conv1 (1 -> 16, 28x28)
// and conv2 (16 -> 32, 14x14). The `GFLOP/s` counter is the layer's own FLOP
// count (ForwardFlopsPerSample / BackwardFlopsPerSample) per CPU second; on a
// shared machine compare ratios from one run, with repetitions:
//
//   bazel run //benchmarks/nn:conv_bench -- --benchmark_repetitions=5 \
//       --benchmark_report_aggregates_only=true
#include <cstdint>
#include <memory>

#include "benchmark/benchmark.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/gemm.h"
#include "quant/nn/rng.h"

namespace quant::nn {
namespace {

constexpr int64_t kBatch = 128;

Tensor Uniform(const Shape& shape, uint64_t seed) {
  Tensor t(shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.Uniform(-1.0f, 1.0f);
  return t;
}

// A built, initialised layer with an input and an upstream gradient.
struct ConvCase {
  std::unique_ptr<Conv2d> conv;
  Tensor x, y, dy, dx;
};

ConvCase MakeCase(const Conv2dOptions& o, int64_t h, int64_t w) {
  SetGemmThreads(1);
  ConvCase c;
  c.conv = std::make_unique<Conv2d>("conv", o);
  const Shape out = c.conv->Build({o.in_channels, h, w}).value();
  Rng rng(1);
  c.conv->ResetParameters(rng);
  c.x = Uniform({kBatch, o.in_channels, h, w}, 2);
  c.dy = Uniform({kBatch, out[0], out[1], out[2]}, 3);
  c.conv->Forward(c.x, &c.y);
  return c;
}

void Forward(benchmark::State& state, const Conv2dOptions& o, int64_t h, int64_t w) {
  ConvCase c = MakeCase(o, h, w);
  for (auto _ : state) {
    c.conv->Forward(c.x, &c.y);
    benchmark::DoNotOptimize(c.y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      1e-9 * c.conv->ForwardFlopsPerSample() * kBatch * state.iterations(),
      benchmark::Counter::kIsRate);
}

// Backward after one Forward of the same batch (as in training); `input_grad`
// says whether dx is computed (false for a first layer).
void Backward(benchmark::State& state, const Conv2dOptions& o, int64_t h, int64_t w,
              bool input_grad) {
  ConvCase c = MakeCase(o, h, w);
  for (auto _ : state) {
    c.conv->Backward(c.x, c.y, c.dy, input_grad ? &c.dx : nullptr);
    benchmark::DoNotOptimize(c.conv->weight().grad.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      1e-9 * c.conv->BackwardFlopsPerSample(input_grad) * kBatch * state.iterations(),
      benchmark::Counter::kIsRate);
}

const Conv2dOptions kCnnConv1{.in_channels = 1, .out_channels = 16, .kernel = 3, .padding = 1};
const Conv2dOptions kCnnConv2{.in_channels = 16, .out_channels = 32, .kernel = 3, .padding = 1};

BENCHMARK_CAPTURE(Forward, cnn_conv1, kCnnConv1, 28, 28)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Backward, cnn_conv1, kCnnConv1, 28, 28, false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Forward, cnn_conv2, kCnnConv2, 14, 14)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Backward, cnn_conv2, kCnnConv2, 14, 14, true)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace quant::nn

BENCHMARK_MAIN();
