// Epoch time of the low-bit and mixed-precision schemes relative to fp32:
// one epoch of `mlp` (or `cnn`) on 4096 synthetic 28x28 samples, batch 128,
// 1 thread, per scheme. Run with random interleaving so that a loaded machine
// slows every scheme alike, and compare medians:
//
//   bazel run //tests/training:lowbit_epoch_benchmark -- --benchmark_repetitions=5
//     --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
#include <memory>
#include <string>

#include "benchmark/benchmark.h"
#include "quant/core/registry.h"
#include "quant/data/synthetic.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/training_scheme.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

const Dataset& Data() {
  static Dataset* ds = [] {
    ParamReader p(YAML::Load("{train_size: 4096, test_size: 128, image_size: 28}"), "b", "dataset");
    auto d = SyntheticDataset::Create(p);
    (void)(*d)->Load();
    return d->release();
  }();
  return *ds;
}

struct Case {
  const char* train;
  const char* quant;  // "" = none
};

void RunEpoch(benchmark::State& state, const char* model_name, Case c) {
  const Dataset& ds = Data();
  std::unique_ptr<QuantConfig> quant;
  if (c.quant[0] != '\0') {
    ParamReader q(YAML::Load(c.quant), "b", "quant");
    quant = std::move(QuantConfig::Read(q)).value();
  }
  for (auto _ : state) {
    state.PauseTiming();
    ParamReader mp(YAML::Load(std::string("{name: ") + model_name + "}"), "b", "model");
    auto model = std::move(Registry<nn::Model>::Get().CreateFrom(mp, "name", "", "m")).value();
    (void)model->Build(ds.sample_shape(), ds.num_classes(), 0);
    ParamReader tp(YAML::Load(c.train), "b", "train");
    auto scheme = std::move(Registry<TrainingScheme>::Get().CreateFrom(tp, "scheme", "fp32", "s")).value();
    TrainContext ctx{.dataset = &ds, .model = model.get(), .seed = 0, .threads = 1,
                     .quant = quant.get(), .progress = TrainContext::Progress::kQuiet};
    state.ResumeTiming();
    auto r = scheme->Train(ctx);
    if (!r.ok()) state.SkipWithError(std::string(r.status().message()).c_str());
  }
}

constexpr char kOpt[] = "epochs: 1, batch_size: 128, optimizer: {name: sgd, lr: 0.005, momentum: 0.9}";

void Register() {
  const std::string opt = kOpt;
  static std::vector<std::string> keep;  // the strings outlive the benchmarks
  struct Named {
    const char* name;
    std::string train;
    const char* quant;
  };
  const std::vector<Named> cases = {
      {"fp32", "{scheme: fp32, " + opt + "}", ""},
      {"binary", "{scheme: binary, " + opt + "}",
       "{weights: {quantizer: binary}, activations: {quantizer: binary}}"},
      {"xnor", "{scheme: xnor, " + opt + "}",
       "{weights: {quantizer: xnor}, activations: {quantizer: xnor}}"},
      {"ternary", "{scheme: ternary, " + opt + "}", "{weights: {quantizer: ternary}}"},
      {"bf16", "{scheme: mixed_precision, precision: bf16, " + opt + "}", ""},
      {"fp16", "{scheme: mixed_precision, precision: fp16, " + opt + "}", ""},
  };
  for (const char* model : {"mlp", "cnn"}) {
    for (const Named& n : cases) {
      keep.push_back(n.train);
      const char* train = keep.back().c_str();
      benchmark::RegisterBenchmark((std::string("epoch/") + model + "/" + n.name).c_str(),
                                   [model, train, q = n.quant](benchmark::State& s) {
                                     RunEpoch(s, model, Case{train, q});
                                   })
          ->Unit(benchmark::kMillisecond)
          ->Iterations(1)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) {
  quant::Register();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
