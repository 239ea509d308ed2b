#include "quant/nn/panel_gemm.h"

#include <immintrin.h>

#include <algorithm>

namespace quant::nn {

namespace {
// R rows of C for one panel: acc = init + sum_r A[i][r] * panel[r][0..16), one
// explicit FMA per term in r order; then out_w values per row to c (rows p
// apart). The q loops are unrolled so that the accumulators live in
// registers (without it GCC -O2 stored them to the stack every step). A
// store of 16 may run into the next output row when `spill` is set: that row
// is written later.
// The panel's rows are `ldb` floats apart (16 for PackRowPanels' panels).
template <int R>
void PanelKernel(int64_t kdim, const float* a, int64_t lda, const float* init, const float* panel, int64_t ldb,
                 float* c, int64_t p, int64_t out_w, bool spill) {
  __m256 acc0[R], acc1[R];
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q) acc0[q] = acc1[q] = _mm256_set1_ps(init != nullptr ? init[q] : 0.0f);
  for (int64_t r = 0; r < kdim; ++r) {
    const __m256 b0 = _mm256_loadu_ps(panel + r * ldb), b1 = _mm256_loadu_ps(panel + r * ldb + 8);
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) {
      const __m256 av = _mm256_broadcast_ss(a + q * lda + r);
      acc0[q] = _mm256_fmadd_ps(av, b0, acc0[q]);
      acc1[q] = _mm256_fmadd_ps(av, b1, acc1[q]);
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q) {
    float* d = c + q * p;
    if (spill) {
      _mm256_storeu_ps(d, acc0[q]);
      _mm256_storeu_ps(d + 8, acc1[q]);
    } else {
      alignas(32) float tmp[16];
      _mm256_store_ps(tmp, acc0[q]);
      _mm256_store_ps(tmp + 8, acc1[q]);
      for (int64_t j = 0; j < out_w; ++j) d[j] = tmp[j];
    }
  }
}

using Kernel = void (*)(int64_t, const float*, int64_t, const float*, const float*, int64_t, float*, int64_t, int64_t,
                        bool);
constexpr Kernel kKernels[7] = {nullptr,        PanelKernel<1>, PanelKernel<2>, PanelKernel<3>,
                                PanelKernel<4>, PanelKernel<5>, PanelKernel<6>};
}  // namespace

// All m rows of C for one panel (rows ldb apart), in blocks of 6 rows (12
// accumulators), ending 4 + 4 rather than 6 + 2; see PanelKernel for `spill`.
void PanelRows(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* panel, int64_t ldb,
               float* c, int64_t p, int64_t out_w, bool spill) {
  int rows = 0;
  for (int64_t i0 = 0; i0 < m; i0 += rows) {
    const int64_t left = m - i0;
    rows = static_cast<int>(left == 8 ? 4 : std::min<int64_t>(6, left));
    const float* ai = a + i0 * lda;
    const float* bi = init != nullptr ? init + i0 : nullptr;
    float* ci = c + i0 * p;
    kKernels[rows](kdim, ai, lda, bi, panel, ldb, ci, p, out_w, spill);
  }
}

}  // namespace quant::nn
