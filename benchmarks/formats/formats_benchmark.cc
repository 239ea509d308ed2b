// Throughput of every registered number format on 1M float32 values drawn from
// N(0,1) (fixed seed): RoundSpan (fake-quant), EncodeSpan (float -> pattern)
// and DecodeSpan (pattern -> float; block formats decode elements with a unit
// scale). Reported as items (values) per second.
//
//   bazel run -c opt //benchmarks/formats:formats_benchmark -- \
//       --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//   (--benchmark_filter=fp16 to pick formats)
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "benchmark/benchmark.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/formats/number_format.h"

namespace quant {
namespace {

constexpr int kValues = 1 << 20;

const std::vector<float>& Data() {
  static const std::vector<float>* data = [] {
    auto* v = new std::vector<float>(kValues);
    std::mt19937_64 gen(0);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& x : *v) x = normal(gen);
    return v;
  }();
  return *data;
}

std::unique_ptr<NumberFormat> Make(const std::string& name) {
  ParamReader p(YAML::Node(), "benchmark", name);
  auto f = Registry<NumberFormat>::Get().Create(name, p);
  return f.ok() ? std::move(*f) : nullptr;
}

void BM_Round(benchmark::State& state, std::string name) {
  auto f = Make(name);
  std::vector<float> out(kValues);
  for (auto _ : state) {
    f->RoundSpan(Data(), absl::MakeSpan(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kValues);
}

void BM_Encode(benchmark::State& state, std::string name) {
  auto f = Make(name);
  std::vector<uint32_t> out(kValues);
  for (auto _ : state) {
    f->EncodeSpan(Data(), absl::MakeSpan(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kValues);
}

void BM_Decode(benchmark::State& state, std::string name) {
  auto f = Make(name);
  std::vector<uint32_t> codes(kValues);
  f->EncodeSpan(Data(), absl::MakeSpan(codes));
  std::vector<float> out(kValues);
  for (auto _ : state) {
    f->DecodeSpan(codes, absl::MakeSpan(out));
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kValues);
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) {
  for (const std::string& name : quant::Registry<quant::NumberFormat>::Get().Names()) {
    benchmark::RegisterBenchmark(("Round/" + name).c_str(), quant::BM_Round, name)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("Encode/" + name).c_str(), quant::BM_Encode, name)
        ->Unit(benchmark::kMillisecond);
    benchmark::RegisterBenchmark(("Decode/" + name).c_str(), quant::BM_Decode, name)
        ->Unit(benchmark::kMillisecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
