// Epoch-timing benchmark: trains the models of the given configs (default
// configs/mlp_fp32.yaml and configs/cnn_fp32.yaml: the fp32 recipe on real
// Fashion-MNIST) with the same training loop the driver runs, and prints per
// epoch the time, samples/s and achieved GFLOP/s of the whole training pass,
// next to the GEMM library's own single-core GFLOP/s measured in the same
// process, the single-core memory bandwidth (a STREAM triad), and the peak RSS (getrusage).
//
//   bazel run //benchmarks/nn:train_bench -- [--epochs=N] [--threads=T] [--seed=S] [config.yaml ...]
//
// A config written `avx2:path.yaml` is trained with the AVX2 panel kernel
// (quant/nn/panel_gemm.h) even where the CPU has AVX-512: the two give the
// same bits, so `a.yaml avx2:a.yaml a.yaml avx2:a.yaml` measures what the
// wider kernel gains, side by side, with identical losses and accuracies.
//
// Relative config paths are looked up in the workspace (BUILD_WORKSPACE_DIRECTORY)
// when run through `bazel run`.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/data/dataset.h"
#include "quant/nn/gemm.h"
#include "quant/nn/model.h"
#include "quant/nn/panel_gemm.h"
#include "quant/training/training_scheme.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

double PeakRssMiB() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

// Single-core sgemm rate for C[m x n] = A[m x k] B[k x n] (GFLOP/s, best of runs of ~0.3 s).
double SgemmGflops(int m, int n, int k, bool trans_a = false, bool trans_b = false) {
  std::vector<float> a(static_cast<size_t>(m) * k, 0.5f), b(static_cast<size_t>(k) * n, 0.25f),
      c(static_cast<size_t>(m) * n);
  const int lda = trans_a ? m : k, ldb = trans_b ? k : n;
  nn::Sgemm(trans_a, trans_b, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    int iters = 0;
    const auto start = std::chrono::steady_clock::now();
    double elapsed = 0;
    do {
      nn::Sgemm(trans_a, trans_b, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(), n);
      ++iters;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    } while (elapsed < 0.3);
    best = std::max(best, 2.0 * m * n * k * iters / elapsed / 1e9);
  }
  return best;
}

// Single-core memory bandwidth, STREAM's triad a = b + s * c over three 32 MiB arrays (far
// beyond the caches): bytes moved (two reads, one write) per second, best of 5 passes. The
// limit of the memory-bound parts of an epoch (ReLU, pooling, fake quantization passes).
// Measured in a child process, so its 96 MiB do not count in this process's peak RSS.
double TriadGBsInChild();

double TriadGBs() {
  const size_t n = size_t{8} << 20;  // 8 M floats = 32 MiB per array
  std::vector<float> a(n, 0.0f), b(n, 1.0f), c(n, 2.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    float* __restrict pa = a.data();
    const float* __restrict pb = b.data();
    const float* __restrict pc = c.data();
    for (size_t i = 0; i < n; ++i) pa[i] = pb[i] + 0.5f * pc[i];
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, 3.0 * n * sizeof(float) / seconds / 1e9);
  }
  if (a[n / 2] != 2.0f) std::printf("(triad check failed)\n");  // keeps the loop from being dropped
  return best;
}

double TriadGBsInChild() {
  int fds[2];
  if (pipe(fds) != 0) return 0;
  const pid_t pid = fork();
  if (pid == 0) {
    const double gbs = TriadGBs();
    (void)!write(fds[1], &gbs, sizeof gbs);
    _exit(0);
  }
  close(fds[1]);
  double gbs = 0;
  if (pid < 0 || read(fds[0], &gbs, sizeof gbs) != static_cast<ssize_t>(sizeof gbs)) gbs = 0;
  close(fds[0]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  return gbs;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

int Main(int argc, char** argv) {
  int epochs = -1, threads = 1;
  int64_t seed = -1;
  std::vector<std::string> configs;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--epochs=", 0) == 0) {
      epochs = std::atoi(arg.c_str() + 9);
    } else if (arg.rfind("--threads=", 0) == 0) {
      threads = std::atoi(arg.c_str() + 10);
    } else if (arg.rfind("--seed=", 0) == 0) {
      seed = std::atoll(arg.c_str() + 7);
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown flag %s\n", arg.c_str());
      return 2;
    } else {
      configs.push_back(arg);
    }
  }
  if (configs.empty()) configs = {"configs/mlp_fp32.yaml", "configs/cnn_fp32.yaml"};
  const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
  std::vector<bool> avx2_panel;
  for (std::string& c : configs) {
    avx2_panel.push_back(c.rfind("avx2:", 0) == 0);
    if (avx2_panel.back()) c = c.substr(5);
    if (workspace != nullptr && !c.empty() && c[0] != '/') c = std::string(workspace) + "/" + c;
  }

  // First: OpenBLAS's fork handlers rebuild its thread pool at its default size, so the
  // child that measures the bandwidth is forked before the GEMM threads are set.
  const double triad = TriadGBsInChild();
  nn::SetGemmThreads(threads);
  std::printf("gemm library: %s, threads %d\n", nn::GemmLibraryDescription().c_str(), threads);
  std::printf("memory bandwidth, single-core triad (3 x 32 MiB): %.1f GB/s\n", triad);
  nn::SetGemmThreads(1);
  const double peak = SgemmGflops(512, 512, 512);
  std::printf("gemm single-core sgemm 512x512x512: %.1f GFLOP/s (wall; best of 3 x 0.3 s)\n", peak);
  struct Shape3 {
    const char* what;
    int m, n, k;
    bool ta, tb;
  };
  for (const Shape3& s : {Shape3{"mlp fc1 forward   (B=128: 128x256x784, B^T)", 128, 256, 784, false, true},
                          Shape3{"mlp fc1 dW        (256x784x128, A^T)", 256, 784, 128, true, false},
                          Shape3{"cnn conv2 forward (32x196x144, per image)", 32, 196, 144, false, false},
                          Shape3{"cnn conv2 dW      (32x144x196, B^T)", 32, 144, 196, false, true},
                          Shape3{"cnn conv2 dcol    (144x196x32, A^T)", 144, 196, 32, true, false},
                          Shape3{"cnn fc1 forward   (128x128x1568, B^T)", 128, 128, 1568, false, true}}) {
    std::printf("gemm single-core %-45s %.1f GFLOP/s\n", s.what, SgemmGflops(s.m, s.n, s.k, s.ta, s.tb));
  }
  std::printf("peak RSS after the GEMM and bandwidth benchmarks: %.1f MiB\n", PeakRssMiB());
  std::fflush(stdout);

  for (size_t ci = 0; ci < configs.size(); ++ci) {
    const std::string& path = configs[ci];
    nn::SetPanelIsa(avx2_panel[ci] ? nn::PanelIsa::kAvx2 : nn::BestPanelIsa());
    YAML::Node root;
    try {
      root = YAML::LoadFile(path);
    } catch (const YAML::Exception& e) {
      std::fprintf(stderr, "error: %s: %s\n", path.c_str(), e.what());
      return 1;
    }
    const std::string name =
        (root["name"] ? root["name"].as<std::string>() : path) + (avx2_panel[ci] ? "[avx2 panel]" : "");
    const uint64_t run_seed = seed >= 0 ? seed : (root["seed"] ? root["seed"].as<uint64_t>() : 0);
    YAML::Node train = root["train"];
    if (epochs >= 0) train["epochs"] = epochs;
    train["save_checkpoint"] = false;
    ParamReader data_reader(root["dataset"], path, "dataset");
    auto dataset = Registry<Dataset>::Get().CreateFrom(data_reader, "name", "fashion_mnist", "dataset");
    if (!dataset.ok()) return Fail(dataset.status());
    if (absl::Status s = data_reader.Finish(); !s.ok()) return Fail(s);
    ParamReader model_reader(root["model"], path, "model");
    auto model = nn::CreateModel(model_reader);
    if (!model.ok()) return Fail(model.status());
    if (absl::Status s = model_reader.Finish(); !s.ok()) return Fail(s);
    ParamReader train_reader(train, path, "train");
    auto scheme = Registry<TrainingScheme>::Get().CreateFrom(train_reader, "scheme", "fp32", "scheme");
    if (!scheme.ok()) return Fail(scheme.status());
    if (absl::Status s = train_reader.Finish(); !s.ok()) return Fail(s);

    if (absl::Status s = (*dataset)->Load(); !s.ok()) return Fail(s);
    std::printf("\n%s: %s, seed %llu\n", name.c_str(), (*dataset)->Describe().c_str(),
                static_cast<unsigned long long>(run_seed));
    std::printf("peak RSS after loading the data: %.1f MiB\n", PeakRssMiB());
    if (absl::Status s = (*model)->Build((*dataset)->sample_shape(), (*dataset)->num_classes(), run_seed);
        !s.ok()) {
      return Fail(s);
    }
    std::printf("%s%s\n", (*model)->Summary().c_str(), (*scheme)->Describe().c_str());
    const int64_t flops = (*model)->ForwardFlopsPerSample() + (*model)->BackwardFlopsPerSample();
    const double epoch_gflop = static_cast<double>(flops) * (*dataset)->train().size() / 1e9;
    std::printf("training FLOPs: %.3f MFLOP/sample (forward %.3f), %.1f GFLOP/epoch\n", flops / 1e6,
                (*model)->ForwardFlopsPerSample() / 1e6, epoch_gflop);
    std::fflush(stdout);
    TrainContext ctx{.dataset = dataset->get(), .model = model->get(), .seed = run_seed,
                     .threads = threads, .run_dir = "", .name = name,
                     .progress = TrainContext::Progress::kSummary, .log = stderr};
    // Replicas for --threads > 1 (data-parallel float training), as the driver builds them.
    Dataset* data = dataset->get();
    ctx.make_replica = [&root, &path, data, run_seed]() -> absl::StatusOr<std::unique_ptr<nn::Model>> {
      ParamReader reader(root["model"], path, "model");
      absl::StatusOr<std::unique_ptr<nn::Model>> m = nn::CreateModel(reader);
      if (!m.ok()) return m.status();
      if (absl::Status s = (*m)->Build(data->sample_shape(), data->num_classes(), run_seed); !s.ok()) return s;
      return m;
    };
    nn::ResetGemmStats();
    nn::SetGemmCounting(true);
    (*model)->set_profiling(true);
    auto result = (*scheme)->Train(ctx);
    nn::SetGemmCounting(false);
    const nn::GemmStats gemm = nn::GetGemmStats();
    if (!result.ok()) return Fail(result.status());
    std::vector<double> times, cpu_times;
    for (const EpochRecord& e : result->epochs) {
      std::printf("%s epoch %d: %.3f s wall (%.3f s cpu), %.0f samples/s, %.1f GFLOP/s wall "
                  "(%.1f per cpu second = %.0f%% of sgemm 512^3), train loss %.4f, test acc %.2f%%\n",
                  name.c_str(), e.epoch, e.seconds, e.cpu_seconds, e.samples_per_s,
                  epoch_gflop / e.seconds, epoch_gflop / e.cpu_seconds,
                  100.0 * epoch_gflop / e.cpu_seconds / peak, e.train_loss, 100 * e.test_accuracy);
      times.push_back(e.seconds);
      cpu_times.push_back(e.cpu_seconds);
    }
    std::sort(times.begin(), times.end());
    std::sort(cpu_times.begin(), cpu_times.end());
    if (!times.empty()) {
      const double median = times[times.size() / 2];
      std::printf("%s: median epoch %.3f s wall (min %.3f, max %.3f; median cpu %.3f s, min %.3f), "
                  "%.0f samples/s, %.1f GFLOP/s; final test accuracy %.2f%%; peak RSS %.1f MiB\n",
                  name.c_str(), median, times.front(), times.back(), cpu_times[cpu_times.size() / 2],
                  cpu_times.front(),
                  (*dataset)->train().size() / median, epoch_gflop / median,
                  100 * result->final_test_accuracy, PeakRssMiB());
    }
    double train_seconds = 0, eval_seconds = 0;
    for (const EpochRecord& e : result->epochs) {
      train_seconds += e.seconds;
      eval_seconds += e.eval_seconds;
    }
    std::printf("%s: inside sgemm %.2f s of %.2f s (training + evaluation), %.1f GFLOP/s there, %lld calls\n",
                name.c_str(), gemm.seconds, train_seconds + eval_seconds, gemm.flops / gemm.seconds / 1e9,
                static_cast<long long>(gemm.calls));
    double layer_total = 0;
    for (const auto& t : (*model)->layer_times()) layer_total += t.forward + t.backward;
    std::printf("%s: time per layer (training and evaluation, all epochs; %.2f s in layers):\n",
                name.c_str(), layer_total);
    for (int i = 0; i < (*model)->num_layers(); ++i) {
      const auto& t = (*model)->layer_times()[i];
      std::printf("  %-9s forward %6.2f s  backward %6.2f s\n", (*model)->layer(i).name().c_str(),
                  t.forward, t.backward);
    }
    for (const auto& [shape, v] : gemm.by_shape) {
      if (v[2] < 0.01 * gemm.seconds) continue;
      std::printf("  sgemm %-22s %6.0f calls %7.2f s %6.1f GFLOP/s\n", shape.c_str(), v[0], v[2],
                  v[1] / v[2] / 1e9);
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) { return quant::Main(argc, argv); }
