#include "quant/nn/gemm.h"

#include <cblas.h>

#include <atomic>

namespace quant::nn {
namespace {

// OpenBLAS defaults to one thread per core; quantlab's default is one thread
// so that sweeps can run one experiment per core. Applied on first use.
std::atomic<int> g_threads{0};

void EnsureThreads() {
  if (g_threads.load(std::memory_order_relaxed) == 0) SetGemmThreads(1);
}

}  // namespace

void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc) {
  EnsureThreads();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
              m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
