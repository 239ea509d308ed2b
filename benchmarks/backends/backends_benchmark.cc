// Speed of the backends, one thread, everything in one run so that ratios are
// measured side by side:
//  * raw GEMM 256x784x256 (and 1x784x256): XNNPACK qs8 vs f32 fully connected,
//    gemmlowp uint8 with the fixed-point output pipeline;
//  * whole mlp- and cnn-shaped models (random weights, min/max calibration,
//    int8 per-channel weights unless marked per-tensor) at batch 1 and 256 on every
//    backend, including quantizing the input and dequantizing the logits;
//  * afterwards: medians, the ratios the issue asks for, and a per-stage profile
//    ("where the time goes").
// Usage: bazel run -c opt //benchmarks/backends:backends_benchmark -- --benchmark_repetitions=5
#include <benchmark/benchmark.h>
#include <gemmlowp/public/gemmlowp.h>
#include <omp.h>
#include <xnnpack.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "quant/backends/backend.h"
#include "quant/backends/gemmlowp_backend.h"
#include "quant/backends/model_builder.h"
#include "quant/backends/xnnpack_util.h"

namespace quant::backends {
namespace {

constexpr int kK = 784, kN = 256;

template <typename T>
std::vector<T> RandomBytes(size_t n, int lo, int hi, uint64_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<T> v(n + XNN_EXTRA_BYTES);
  for (auto& x : v) x = static_cast<T>(u(rng));
  return v;
}

void SetGemmCounters(benchmark::State& state, int64_t m) {
  state.counters["GOP/s"] = benchmark::Counter(2.0 * m * kK * kN * state.iterations(), benchmark::Counter::kIsRate,
                                               benchmark::Counter::OneK::kIs1000);
  state.counters["GOP/s"].value /= 1e9;
}

void BM_GemmXnnpackQs8(benchmark::State& state) {
  const int64_t m = state.range(0);
  (void)xnn::Initialize();
  auto w = RandomBytes<int8_t>(kK * kN, -127, 127, 1);
  auto x = RandomBytes<int8_t>(m * kK, -128, 127, 2);
  std::vector<int8_t> y(m * kN + XNN_EXTRA_BYTES);
  std::vector<int32_t> bias(kN, 0);
  xnn_operator_t op = nullptr;
  xnn_create_fully_connected_nc_qs8(kK, kN, kK, kN, 0, 0.02f, 0.01f, w.data(), bias.data(), 0, 0.5f, -128, 127, 0, &op);
  xnn::Operator owned(op);
  xnn_setup_fully_connected_nc_qs8(op, m, x.data(), y.data(), nullptr);
  for (auto _ : state) {
    xnn_run_operator(op, nullptr);
    benchmark::DoNotOptimize(y.data());
  }
  SetGemmCounters(state, m);
}

void BM_GemmXnnpackF32(benchmark::State& state) {
  const int64_t m = state.range(0);
  (void)xnn::Initialize();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> w(kK * kN), x(m * kK + 16), y(m * kN + 16), bias(kN, 0);
  for (float& v : w) v = u(rng);
  for (float& v : x) v = u(rng);
  xnn_operator_t op = nullptr;
  xnn_create_fully_connected_nc_f32(kK, kN, kK, kN, w.data(), bias.data(), -INFINITY, INFINITY, 0, &op);
  xnn::Operator owned(op);
  xnn_setup_fully_connected_nc_f32(op, m, x.data(), y.data(), nullptr);
  for (auto _ : state) {
    xnn_run_operator(op, nullptr);
    benchmark::DoNotOptimize(y.data());
  }
  SetGemmCounters(state, m);
}

// result[kN x m] = weights[kN x kK] * input[kK x m], uint8 with offsets and the fixed-point stage.
void BM_GemmGemmlowp(benchmark::State& state) {
  const int64_t m = state.range(0);
  auto w = RandomBytes<uint8_t>(kK * kN, 1, 255, 4);
  auto x = RandomBytes<uint8_t>(m * kK, 0, 255, 5);
  std::vector<uint8_t> y(m * kN);
  gemmlowp::GemmContext context;
  context.set_max_num_threads(1);
  gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::RowMajor> lhs(w.data(), kN, kK);
  gemmlowp::MatrixMap<const std::uint8_t, gemmlowp::MapOrder::ColMajor> rhs(x.data(), kK, m);
  gemmlowp::MatrixMap<std::uint8_t, gemmlowp::MapOrder::ColMajor> result(y.data(), kN, m);
  gemmlowp::OutputStageQuantizeDownInt32ByFixedPoint down;
  down.result_fixedpoint_multiplier = 1 << 30;
  down.result_shift = 10;
  down.result_offset_after_shift = 128;
  const auto pipeline = std::make_tuple(down, gemmlowp::OutputStageSaturatingCastToUint8());
  for (auto _ : state) {
    gemmlowp::GemmWithOutputPipeline<std::uint8_t, std::uint8_t, gemmlowp::DefaultL8R8BitDepthParams>(
        &context, lhs, rhs, &result, -128, -128, pipeline);
    benchmark::DoNotOptimize(y.data());
  }
  SetGemmCounters(state, m);
}

// oneDNN's s8 matmul (u8 x s8 -> s8 with output scales and zero points, VNNI): the int8
// GEMM limit of this CPU next to XNNPACK's 16-bit-multiply kernels.
void BM_GemmOnednnS8(benchmark::State& state) {
  const int64_t m = state.range(0);
  omp_set_num_threads(1);
  using dnnl::memory;
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  auto w = RandomBytes<int8_t>(kK * kN, -127, 127, 1);
  auto x = RandomBytes<uint8_t>(m * kK, 0, 255, 2);
  std::vector<uint8_t> y(m * kN);
  const memory::desc src({m, kK}, memory::data_type::u8, memory::format_tag::ab);
  const memory::desc user_w({kK, kN}, memory::data_type::s8, memory::format_tag::ba);
  const memory::desc any_w({kK, kN}, memory::data_type::s8, memory::format_tag::any);
  const memory::desc dst({m, kN}, memory::data_type::u8, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_output_scales(0, {0.001f});
  attr.set_zero_points(DNNL_ARG_SRC, 0, {128});
  attr.set_zero_points(DNNL_ARG_DST, 0, {128});
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, any_w, dst), attr, engine);
  memory packed(pd.weights_desc(), engine), user(user_w, engine, w.data());
  dnnl::reorder(user, packed).execute(stream, user, packed);
  dnnl::matmul mm(pd);
  const std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, memory(src, engine, x.data())},
                                                {DNNL_ARG_WEIGHTS, packed},
                                                {DNNL_ARG_DST, memory(dst, engine, y.data())}};
  for (auto _ : state) {
    mm.execute(stream, args);
    stream.wait();
    benchmark::DoNotOptimize(y.data());
  }
  SetGemmCounters(state, m);
}

BENCHMARK(BM_GemmXnnpackQs8)->Arg(256)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemmXnnpackF32)->Arg(256)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemmGemmlowp)->Arg(256)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GemmOnednnS8)->Arg(256)->Arg(1)->Unit(benchmark::kMicrosecond);

struct ModelCase {
  std::string model;  // mlp | cnn
  bool per_channel;
};

QuantizedModel BuildModel(const ModelCase& c) {
  QuantizedModel f = c.model == "mlp" ? MakeFloatMlp(1) : MakeFloatCnn(1);
  std::vector<float> calib = RandomImages(f, 64, 2);
  QuantizeOptions o;
  o.per_channel = c.per_channel;
  auto m = QuantizeMinMax(f, calib.data(), 64, o);
  if (!m.ok()) {
    std::fprintf(stderr, "%s\n", std::string(m.status().message()).c_str());
    std::exit(1);
  }
  return *m;
}

void BM_Model(benchmark::State& state, std::string backend_name, ModelCase c, int64_t batch) {
  const QuantizedModel m = BuildModel(c);
  auto backend = CreateBackend(backend_name);
  absl::Status s = backend.ok() ? (*backend)->Prepare(m) : backend.status();
  if (!s.ok()) {
    state.SkipWithError(std::string(s.message()).c_str());
    return;
  }
  const std::vector<float> x = RandomImages(m, batch, 3);
  RunOutput out;
  for (auto _ : state) {
    s = (*backend)->Run(x.data(), batch, &out);
    benchmark::DoNotOptimize(out.logits.data());
  }
  if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
  state.SetItemsProcessed(state.iterations() * batch);
}

// Collects the median (or only) items/s and GOP/s of every benchmark for the summary.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      if (!r.aggregate_name.empty() && r.aggregate_name != "median") continue;
      const std::string name = r.run_name.str();
      auto it = r.counters.find("items_per_second");
      if (it != r.counters.end()) items_[name] = it->second.value;
      auto g = r.counters.find("GOP/s");
      if (g != r.counters.end()) gops_[name] = g->second.value;
    }
  }
  double Items(const std::string& name) const {
    auto it = items_.find(name);
    return it == items_.end() ? 0.0 : it->second;
  }
  double Gops(const std::string& name) const {
    auto it = gops_.find(name);
    return it == gops_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> items_, gops_;
};

std::string ModelName(const std::string& backend, const ModelCase& c, int64_t batch) {
  return absl::StrCat("Model/", backend, "/", c.model, c.per_channel ? "" : "_per_tensor", "/batch:", batch);
}

const std::vector<std::string> kBackends = {"reference", "gemmlowp", "xnnpack", "onednn", "xnnpack_f32", "xnnpack_f16"};

// Runs each fast backend with stage timing on and prints the share of each stage.
void PrintWhereTheTimeGoes() {
  std::printf(
      "\nWhere the time goes (share of wall time per stage, fastest of 7 trials per stage; "
      "'input' = input quantization/conversion):\n");
  struct Entry {
    const char* backend;
    bool per_channel;
  };
  for (const char* model : {"mlp", "cnn"}) {
    for (int64_t batch : {int64_t{1}, int64_t{256}}) {
      for (const Entry& e : {Entry{"gemmlowp", true}, Entry{"xnnpack", true}, Entry{"xnnpack", false},
                             Entry{"onednn", true}, Entry{"xnnpack_f32", true}}) {
        const QuantizedModel m = BuildModel({model, e.per_channel});
        const std::string name = absl::StrCat(e.backend, e.per_channel ? "" : "(pt)");
        auto b = CreateBackend(e.backend);
        if (!b.ok() || !(*b)->Prepare(m).ok()) continue;
        const std::vector<float> x = RandomImages(m, batch, 3);
        RunOutput out;
        (void)(*b)->Run(x.data(), batch, &out);  // warm up and set up
        // Several trials; per stage the fastest trial, which filters out preemption on a
        // shared machine (wall-clock timing).
        const int reps = batch == 1 ? 2000 : 20;
        std::vector<double> t;
        for (int trial = 0; trial < 7; ++trial) {
          (*b)->set_profiling(true);
          for (int i = 0; i < reps; ++i) (void)(*b)->Run(x.data(), batch, &out);
          const std::vector<double>& s = (*b)->stage_seconds();
          if (t.empty()) t = s;
          for (size_t i = 0; i < s.size(); ++i) t[i] = std::min(t[i], s[i]);
        }
        double total = 0;
        for (double v : t) total += v;
        std::printf("  %-16s %s batch %-3lld  %8.1f us/run:", name.c_str(), model, static_cast<long long>(batch),
                    1e6 * total / reps);
        for (size_t i = 0; i < t.size(); ++i) {
          std::printf(" %s %.0f%%", i == 0 ? "input" : m.ops(static_cast<int>(i) - 1).name().c_str(),
                      100 * t[i] / total);
        }
        std::printf("\n");
      }
    }
  }
}

void PrintSummary(const SummaryReporter& r) {
  std::printf("\nSummary (medians when --benchmark_repetitions > 1; gemmlowp kernels: %s)\n",
              GemmlowpBackend::KernelPath());
  for (int64_t m : {256, 1}) {
    const double q = r.Gops(absl::StrCat("BM_GemmXnnpackQs8/", m)), f = r.Gops(absl::StrCat("BM_GemmXnnpackF32/", m)),
                 g = r.Gops(absl::StrCat("BM_GemmGemmlowp/", m)), d = r.Gops(absl::StrCat("BM_GemmOnednnS8/", m));
    std::printf(
        "raw GEMM %lldx784x256: xnnpack qs8 %.1f GOP/s, f32 %.1f GOP/s, gemmlowp %.1f GOP/s, onednn s8 (VNNI) "
        "%.1f GOP/s; qs8/f32 = %.2fx, gemmlowp/f32 = %.2fx, onednn s8/f32 = %.2fx\n",
        static_cast<long long>(m), q, f, g, d, f > 0 ? q / f : 0, f > 0 ? g / f : 0, f > 0 ? d / f : 0);
  }
  for (const char* model : {"mlp", "cnn"}) {
    for (int64_t batch : {int64_t{1}, int64_t{256}}) {
      std::printf("%s batch %lld images/s:", model, static_cast<long long>(batch));
      for (const std::string& b : kBackends) {
        std::printf(" %s %.0f;", b.c_str(), r.Items(ModelName(b, {model, true}, batch)));
      }
      const double pt = r.Items(ModelName("xnnpack", {model, false}, batch));
      const double x8 = r.Items(ModelName("xnnpack", {model, true}, batch));
      const double f32 = r.Items(ModelName("xnnpack_f32", {model, true}, batch));
      const double dnn = r.Items(ModelName("onednn", {model, true}, batch));
      std::printf(
          " xnnpack per-tensor %.0f\n  ratio xnnpack int8 / xnnpack_f32 = %.2fx (per-tensor %.2fx); "
          "onednn int8 / xnnpack_f32 = %.2fx; onednn / xnnpack int8 = %.2fx\n",
          pt, f32 > 0 ? x8 / f32 : 0, f32 > 0 ? pt / f32 : 0, f32 > 0 ? dnn / f32 : 0, x8 > 0 ? dnn / x8 : 0);
    }
  }
}

// Multiply-accumulates per image of the model's convs and fully connected layers.
int64_t MacsPerImage(const QuantizedModel& m) {
  absl::StatusOr<std::vector<Shape>> shapes = InferShapes(m);
  if (!shapes.ok()) return 0;
  int64_t macs = 0;
  for (const Op& op : m.ops()) {
    if (op.options_case() != Op::kConv2D && op.options_case() != Op::kFullyConnected) continue;
    const Shape w = TensorShape(m.tensors(WeightTensor(op)));  // OHWI (I per group) or [O, I]
    const int64_t per_output = Numel(w) / w[0];
    macs += Numel((*shapes)[op.outputs(0)]) * per_output;
  }
  return macs;
}

// Every model figure next to the limit measured in this run: the best int8 GEMM rate (oneDNN s8 or
// XNNPACK qs8 at 256x784x256) for the int8 backends, XNNPACK's f32 GEMM for the float ones.
void PrintDistanceToTheLimit(const SummaryReporter& r) {
  const double int8_limit = std::max(r.Gops("BM_GemmOnednnS8/256"), r.Gops("BM_GemmXnnpackQs8/256"));
  const double f32_limit = r.Gops("BM_GemmXnnpackF32/256");
  std::printf(
      "\nDistance to the limit (achieved GOP/s = images/s x 2 x MACs per image; limit = the best raw GEMM "
      "of this run: int8 %.1f GOP/s, f32 %.1f GOP/s):\n",
      int8_limit, f32_limit);
  for (const char* model : {"mlp", "cnn"}) {
    const int64_t macs = MacsPerImage(BuildModel({model, true}));
    for (int64_t batch : {int64_t{1}, int64_t{256}}) {
      std::printf("  %s (%.2f MMAC/image) batch %-3lld:", model, macs / 1e6, static_cast<long long>(batch));
      for (const std::string& b : kBackends) {
        const double gops = r.Items(ModelName(b, {model, true}, batch)) * 2.0 * macs / 1e9;
        const double limit = b.rfind("xnnpack_f", 0) == 0 ? f32_limit : int8_limit;
        std::printf(" %s %.1f (%.0f%%);", b.c_str(), gops, limit > 0 ? 100 * gops / limit : 0);
      }
      std::printf("\n");
    }
  }
}

}  // namespace
}  // namespace quant::backends

int main(int argc, char** argv) {
  using namespace quant::backends;
  for (const char* model : {"mlp", "cnn"}) {
    for (int64_t batch : {int64_t{1}, int64_t{256}}) {
      for (const std::string& b : kBackends) {
        const ModelCase c{model, true};
        benchmark::RegisterBenchmark(ModelName(b, c, batch).c_str(), BM_Model, b, c, batch)
            ->Unit(benchmark::kMicrosecond);
      }
      const ModelCase pt{model, false};
      benchmark::RegisterBenchmark(ModelName("xnnpack", pt, batch).c_str(), BM_Model, std::string("xnnpack"), pt, batch)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  SummaryReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  PrintSummary(reporter);
  PrintDistanceToTheLimit(reporter);
  PrintWhereTheTimeGoes();
  benchmark::Shutdown();
  return 0;
}
