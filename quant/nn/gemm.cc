#include "quant/nn/gemm.h"

#include <cblas.h>

#include <atomic>
#include <chrono>
#include <mutex>

namespace quant::nn {
namespace {

// OpenBLAS defaults to one thread per core; quantlab's default is one thread
// so that sweeps can run one experiment per core. Applied on first use.
std::atomic<int> g_threads{0};

void EnsureThreads() {
  if (g_threads.load(std::memory_order_relaxed) == 0) SetGemmThreads(1);
}

bool g_counting = false;
GemmStats g_stats;
// Data-parallel training calls Sgemm from several threads at once.
std::mutex g_stats_mu;

}  // namespace

void SetGemmCounting(bool on) { g_counting = on; }
GemmStats GetGemmStats() { return g_stats; }
void ResetGemmStats() { g_stats = GemmStats(); }

void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  EnsureThreads();
  std::chrono::steady_clock::time_point start;
  if (g_counting) start = std::chrono::steady_clock::now();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (g_counting) {
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::lock_guard<std::mutex> lock(g_stats_mu);
    g_stats.calls += 1;
    g_stats.flops += 2.0 * m * n * k;
    g_stats.seconds += seconds;
    std::array<double, 3>& s = g_stats.by_shape[std::to_string(m) + "x" + std::to_string(n) + "x" +
                                                std::to_string(k) + (trans_a ? " tA" : "") +
                                                (trans_b ? " tB" : "")];
    s[0] += 1;
    s[1] += 2.0 * m * n * k;
    s[2] += seconds;
  }
}

void SetGemmThreads(int threads) {
  if (threads < 1) threads = 1;
  openblas_set_num_threads(threads);
  g_threads.store(threads, std::memory_order_relaxed);
}

int GemmThreads() {
  EnsureThreads();
  return g_threads.load(std::memory_order_relaxed);
}

std::string GemmLibraryDescription() {
  return std::string("OpenBLAS (") + openblas_get_config() + ", core " + openblas_get_corename() +
         ")";
}

}  // namespace quant::nn
