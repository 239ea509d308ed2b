// The one place quantlab's float training calls a BLAS: row-major single
// precision GEMM through OpenBLAS (Debian's build, runtime CPU dispatch).
// Keeping the library behind this header means a layer never includes cblas.h
// and the library could be swapped (Eigen, XNNPACK) in one file.
//
// Reproducibility: OpenBLAS's sgemm splits work over the output, never over
// the reduction dimension, so for a fixed thread count the result is the same
// bit for bit from run to run.
#ifndef QUANT_NN_GEMM_H_
#define QUANT_NN_GEMM_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace quant::nn {

// C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X or X^T.
// lda/ldb/ldc are row strides of the stored (untransposed) matrices.
void Sgemm(bool trans_a, bool trans_b, int m, int n, int k, float alpha, const float* a, int lda,
           const float* b, int ldb, float beta, float* c, int ldc);

// Sets the library's intra-op thread count (>= 1). Called by the training loop
// with the experiment's `threads`; the default of the process is 1.
void SetGemmThreads(int threads);
int GemmThreads();

// Time and work spent in Sgemm since the last reset, when counting is on
// (off by default; benchmarks turn it on to split an epoch into GEMM and the rest).
struct GemmStats {
  int64_t calls = 0;
  double flops = 0;
  double seconds = 0;
  // Per call shape, "MxNxK tA tB" -> {calls, flops, seconds}.
  std::map<std::string, std::array<double, 3>> by_shape;
};
void SetGemmCounting(bool on);
GemmStats GetGemmStats();
void ResetGemmStats();

// e.g. "OpenBLAS 0.3.21 (Haswell kernels)" for logs and benchmark output.
std::string GemmLibraryDescription();

}  // namespace quant::nn

#endif  // QUANT_NN_GEMM_H_
