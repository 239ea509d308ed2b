// What the results database and the report cost (issue 15's targets: writing a record adds
// under 50 ms per run; a report over 1,000 runs takes under 30 s):
//
//   bazel run -c opt //benchmarks/results:results_benchmark
//
// BM_WriteRecord opens the database and writes one large record (10 epochs, 6 backends,
// 160 sensitivity entries, 20 debugger tensors with histograms), as a worker does at the
// end of a run. BM_Report1000 builds a database of 1,000 such runs (50 sweeps of 10
// configurations x 2 seeds) and times the report binary over it, plots included.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "experiments/results_db.h"

namespace quant {
namespace {

std::string Scratch(const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() / ("quantlab_results_bench_" + name)).string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

quantlab::ResultRecord LargeRecord(const std::string& name, int seed, int bits) {
  quantlab::ResultRecord r;
  r.set_name(name);
  r.set_config_id("0123456789abcdef");
  r.set_status(quantlab::ResultRecord::OK);
  r.set_seed(seed);
  r.set_start_time(absl::StrCat("2026-12-02T00:00:", seed, "Z"));
  r.add_overrides(absl::StrCat("quant.weights.bits=", bits));
  r.add_overrides(absl::StrCat("seed=", seed));
  for (int e = 0; e < 10; ++e) {
    auto* epoch = r.add_epochs();
    epoch->set_epoch(e + 1);
    epoch->set_test_accuracy(0.8 + 0.01 * e);
    epoch->set_seconds(6.5);
  }
  (*r.mutable_metrics())["final_test_accuracy"] = 0.9;
  (*r.mutable_metrics())["ptq_packed_model_bytes"] = 10000 * bits;
  for (const char* b : {"reference", "gemmlowp", "xnnpack", "fake_quant", "xnnpack_f32", "xnnpack_f16"}) {
    auto* backend = r.add_backends();
    backend->set_backend(b);
    backend->set_test_accuracy(0.85 + 0.001 * seed);
    backend->set_images_per_s_batch1(5000);
    backend->set_images_per_s_batch256(40000);
    for (int op = 0; op < 10; ++op) backend->add_per_op()->set_op(absl::StrCat("op", op));
  }
  for (int layer = 0; layer < 10; ++layer) {
    for (int b : {2, 3, 4, 8}) {
      for (const char* target : {"weights", "activations", "both", "all"}) {
        auto* s = r.add_sensitivity();
        s->set_layer(absl::StrCat("conv", layer));
        s->set_bits(b);
        s->set_target(target);
        s->set_metric("one_layer_loss_increase");
        s->set_value(0.01 * layer / b);
      }
    }
  }
  for (int t = 0; t < 20; ++t) {
    auto* d = r.add_debug_tensors();
    d->set_tensor(absl::StrCat("conv", t));
    d->set_op(absl::StrCat("conv", t));
    d->set_kind("conv2d");
    d->set_scale(0.05f);
    d->set_quant_max(127);
    d->set_quant_min(-128);
    d->set_sqnr_db(30);
    d->set_histogram_max(6);
    for (int k = 0; k < 64; ++k) d->add_histogram(1000 - k);
  }
  for (int n = 0; n < 30; ++n) r.add_ptq_notes(absl::StrCat("layer ", n, ": per_channel_minmax, 1024 images"));
  return r;
}

void BM_WriteRecord(benchmark::State& state) {
  const std::string dir = Scratch("write");
  const std::string path = dir + "/results.db";
  const quantlab::ResultRecord record = LargeRecord("x__seed=0", 0, 4);
  int i = 0;
  for (auto _ : state) {
    auto db = ResultsDb::Open(path);  // a worker opens it once per run
    if (!db.ok() || !db->Insert(record, absl::StrCat(dir, "/run", i++), "name: x\n").ok()) {
      state.SkipWithError("write failed");
      break;
    }
  }
  state.counters["runs_in_db"] = i;
}
BENCHMARK(BM_WriteRecord)->Unit(benchmark::kMillisecond)->Iterations(200)->Repetitions(3)->ReportAggregatesOnly(true);

void BM_Report1000(benchmark::State& state) {
  const std::string dir = Scratch("report");
  {
    auto db = ResultsDb::Open(dir + "/results.db");
    const char* config = "model: {name: cnn}\nquant: {weights: {bits: 4}, activations: {bits: 8}}\nptq: {}\n";
    for (int sweep = 0; sweep < 50; ++sweep) {
      for (int member = 0; member < 10; ++member) {
        for (int seed = 0; seed < 2; ++seed) {
          const std::string name = absl::StrCat("sweep", sweep, "__bits=", member, "__seed=", seed);
          (void)db->Insert(LargeRecord(name, seed, 2 + member % 7), dir + "/" + name + "-0123456789abcdef", config);
        }
      }
    }
  }
  const std::string command =
      absl::StrCat("experiments/report --db=", dir, "/results.db --out=", dir, "/report > ", dir, "/log.txt 2>&1");
  for (auto _ : state) {
    if (std::system(command.c_str()) != 0) {
      state.SkipWithError(("report failed: see " + dir + "/log.txt").c_str());
      break;
    }
  }
  state.counters["runs"] = 1000;
}
BENCHMARK(BM_Report1000)->Unit(benchmark::kSecond)->Iterations(1)->Repetitions(3)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace quant

BENCHMARK_MAIN();
