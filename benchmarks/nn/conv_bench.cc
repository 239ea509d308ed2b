// Speed of nn::Conv2d's forward and backward on the shapes quantlab trains
// (Google Benchmark), batch 128, one thread: the cnn's conv1 (1 -> 16, 28x28)
// and conv2 (16 -> 32, 14x14), and mobilenet_mini's 3x3 depthwise convs
// (padding 1) with the dedicated kernel (`dw_*`) and through the generic
// per-group loop of groups = 1 layers (`dw_loop_*`); `*_avx2` cases run the
// AVX2 panel kernel where the CPU has AVX-512 (quant/nn/panel_gemm.h). The `GFLOP/s` counter is the layer's own FLOP
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
#include "quant/nn/panel_gemm.h"
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

// How a case runs. `group_loop`: a depthwise layer through the per-group
// loop; `winograd`: Conv2d::set_winograd (3x3 stride-1 layers); `avx2_panel`:
// the AVX2 panel kernel even where the CPU has AVX-512 (same results; the
// `*_avx2` cases next to the default ones show what the wider kernel gains).
struct Variant {
  bool group_loop = false;
  bool winograd = false;
  bool avx2_panel = false;
};

// Sets the panel kernel for one case and restores the best one after it.
class PanelIsaScope {
 public:
  explicit PanelIsaScope(bool avx2) { SetPanelIsa(avx2 ? PanelIsa::kAvx2 : BestPanelIsa()); }
  ~PanelIsaScope() { SetPanelIsa(BestPanelIsa()); }
};

ConvCase MakeCase(const Conv2dOptions& o, int64_t h, int64_t w, const Variant& v) {
  SetGemmThreads(1);
  ConvCase c;
  c.conv = std::make_unique<Conv2d>("conv", o);
  c.conv->set_force_group_loop(v.group_loop);
  c.conv->set_winograd(v.winograd);
  const Shape out = c.conv->Build({o.in_channels, h, w}).value();
  Rng rng(1);
  c.conv->ResetParameters(rng);
  c.x = Uniform({kBatch, o.in_channels, h, w}, 2);
  c.dy = Uniform({kBatch, out[0], out[1], out[2]}, 3);
  c.conv->Forward(c.x, &c.y);
  return c;
}

void Forward(benchmark::State& state, const Conv2dOptions& o, int64_t h, int64_t w, Variant v = {}) {
  PanelIsaScope isa(v.avx2_panel);
  ConvCase c = MakeCase(o, h, w, v);
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
void Backward(benchmark::State& state, const Conv2dOptions& o, int64_t h, int64_t w, bool input_grad, Variant v = {}) {
  PanelIsaScope isa(v.avx2_panel);
  ConvCase c = MakeCase(o, h, w, v);
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
BENCHMARK_CAPTURE(Forward, cnn_conv2_avx2, kCnnConv2, 14, 14, Variant{.avx2_panel = true})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Backward, cnn_conv2_avx2, kCnnConv2, 14, 14, true, Variant{.avx2_panel = true})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Forward, cnn_conv2_winograd, kCnnConv2, 14, 14, Variant{.winograd = true})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Backward, cnn_conv2_winograd, kCnnConv2, 14, 14, true, Variant{.winograd = true})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Forward, cnn_conv2_winograd_avx2, kCnnConv2, 14, 14, Variant{.winograd = true, .avx2_panel = true})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(Backward, cnn_conv2_winograd_avx2, kCnnConv2, 14, 14, true,
                  Variant{.winograd = true, .avx2_panel = true})
    ->Unit(benchmark::kMillisecond);

// Depthwise 3x3, padding 1: C = 48 on 14x14, C = 96 14x14 -> 7x7 (stride 2), C = 32 on 28x28.
Conv2dOptions Depthwise(int64_t c, int64_t stride) {
  return {.in_channels = c, .out_channels = c, .kernel = 3, .stride = stride, .padding = 1,
          .groups = c};
}
const Conv2dOptions kDw48 = Depthwise(48, 1), kDw96s2 = Depthwise(96, 2), kDw32 = Depthwise(32, 1);

#define QUANTLAB_DEPTHWISE_BENCH(name, options, size)                                                 \
  BENCHMARK_CAPTURE(Forward, dw_##name, options, size, size)->Unit(benchmark::kMillisecond);          \
  BENCHMARK_CAPTURE(Forward, dw_loop_##name, options, size, size, Variant{.group_loop = true})        \
      ->Unit(benchmark::kMillisecond);                                                                \
  BENCHMARK_CAPTURE(Backward, dw_##name, options, size, size, true)->Unit(benchmark::kMillisecond);   \
  BENCHMARK_CAPTURE(Backward, dw_loop_##name, options, size, size, true, Variant{.group_loop = true}) \
      ->Unit(benchmark::kMillisecond)

QUANTLAB_DEPTHWISE_BENCH(c48_14x14_s1, kDw48, 14);
QUANTLAB_DEPTHWISE_BENCH(c96_14x14_s2, kDw96s2, 14);
QUANTLAB_DEPTHWISE_BENCH(c32_28x28_s1, kDw32, 28);

}  // namespace
}  // namespace quant::nn

BENCHMARK_MAIN();
