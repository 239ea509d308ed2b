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
                 float* c, int64_t p, int64_t out_w, bool spill, const float* clamp) {
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
  if (clamp != nullptr) {
    const __m256 lo = _mm256_set1_ps(clamp[0]), hi = _mm256_set1_ps(clamp[1]);
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) {
      acc0[q] = _mm256_min_ps(hi, _mm256_max_ps(lo, acc0[q]));
      acc1[q] = _mm256_min_ps(hi, _mm256_max_ps(lo, acc1[q]));
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
                        bool, const float*);
constexpr Kernel kKernels[7] = {nullptr,        PanelKernel<1>, PanelKernel<2>, PanelKernel<3>,
                                PanelKernel<4>, PanelKernel<5>, PanelKernel<6>};

// The same values with one zmm accumulator per row: R rows, one load of the
// panel row and R FMAs (the A element broadcast from memory) per term, so
// that 8 independent accumulators cover the FMA latency. Only called when
// the CPU has AVX-512F (BestPanelIsa).
template <int R>
__attribute__((target("avx512f"))) void PanelKernel512(int64_t kdim, const float* a, int64_t lda, const float* init,
                                                       const float* panel, int64_t ldb, float* c, int64_t p,
                                                       int64_t out_w, bool spill, const float* clamp) {
  __m512 acc[R];
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q) acc[q] = _mm512_set1_ps(init != nullptr ? init[q] : 0.0f);
  for (int64_t r = 0; r < kdim; ++r) {
    const __m512 b = _mm512_loadu_ps(panel + r * ldb);
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) acc[q] = _mm512_fmadd_ps(_mm512_set1_ps(a[q * lda + r]), b, acc[q]);
  }
  if (clamp != nullptr) {
    const __m512 lo = _mm512_set1_ps(clamp[0]), hi = _mm512_set1_ps(clamp[1]);
#pragma GCC unroll 8
    for (int q = 0; q < R; ++q) acc[q] = _mm512_min_ps(hi, _mm512_max_ps(lo, acc[q]));
  }
  const __mmask16 keep = spill ? __mmask16(0xffff) : __mmask16((1u << out_w) - 1u);
#pragma GCC unroll 8
  for (int q = 0; q < R; ++q) _mm512_mask_storeu_ps(c + q * p, keep, acc[q]);
}

constexpr Kernel kKernels512[9] = {nullptr,           PanelKernel512<1>, PanelKernel512<2>,
                                   PanelKernel512<3>, PanelKernel512<4>, PanelKernel512<5>,
                                   PanelKernel512<6>, PanelKernel512<7>, PanelKernel512<8>};

PanelIsa DetectIsa() { return __builtin_cpu_supports("avx512f") ? PanelIsa::kAvx512 : PanelIsa::kAvx2; }

PanelIsa& IsaInUse() {
  static PanelIsa isa = DetectIsa();
  return isa;
}
}  // namespace

PanelIsa BestPanelIsa() { return DetectIsa(); }
PanelIsa CurrentPanelIsa() { return IsaInUse(); }
bool SetPanelIsa(PanelIsa isa) {
  if (isa == PanelIsa::kAvx512 && DetectIsa() != PanelIsa::kAvx512) return false;
  IsaInUse() = isa;
  return true;
}

// All m rows of C for one panel (rows ldb apart). AVX2: blocks of 6 rows (12
// accumulators), ending 4 + 4 rather than 6 + 2. AVX-512: blocks of 8 rows,
// the remainder as one block. See PanelKernel for `spill`.
void PanelRows(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* panel, int64_t ldb,
               float* c, int64_t p, int64_t out_w, bool spill, const float* clamp) {
  const bool wide = IsaInUse() == PanelIsa::kAvx512;
  int rows = 0;
  for (int64_t i0 = 0; i0 < m; i0 += rows) {
    const int64_t left = m - i0;
    const float* ai = a + i0 * lda;
    const float* bi = init != nullptr ? init + i0 : nullptr;
    float* ci = c + i0 * p;
    if (wide) {
      rows = static_cast<int>(std::min<int64_t>(8, left));
      kKernels512[rows](kdim, ai, lda, bi, panel, ldb, ci, p, out_w, spill, clamp);
    } else {
      rows = static_cast<int>(left == 8 ? 4 : std::min<int64_t>(6, left));
      kKernels[rows](kdim, ai, lda, bi, panel, ldb, ci, p, out_w, spill, clamp);
    }
  }
}

}  // namespace quant::nn
