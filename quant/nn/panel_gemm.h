// The register-blocked float kernel shared by Conv2d's packed and pointwise
// paths and by the Winograd convolution (quant/nn/winograd.h): rows of C for
// one panel of 16 columns, with explicit FMA in a fixed order, so that its
// results are the same on every AVX2 machine.
//
// Two implementations compute exactly the same values: an AVX2 one (two ymm
// accumulators per row) and, where the CPU has AVX-512F, one with a single
// zmm accumulator per row and 8-row blocks. Each element of C is init +
// A[i][0]*panel[0][j] + A[i][1]*panel[1][j] + ..., one fused multiply-add
// per term in r order, in both; the vector width only decides how many
// elements are computed at once, so the choice never changes a bit
// (tests/nn/panel_gemm_test.cc checks it, and that training is unchanged).
#ifndef QUANT_NN_PANEL_GEMM_H_
#define QUANT_NN_PANEL_GEMM_H_

#include <cstdint>

namespace quant::nn {

// C[i][0..out_w) = init[i] (or 0 when init is null) + sum_r A[i][r] *
// panel[r][0..16) for i < m, r < kdim, terms added in r order. A is
// row-major (lda), the panel's rows are ldb floats apart, C's rows p floats
// apart. With `spill` every row is stored 16 wide (it may run past out_w into
// memory the caller writes later); otherwise exactly out_w floats are stored.
// With `clamp` ({lo, hi}) each value is stored as min(hi, max(lo, v)), the
// formula of nn::Clamp::Forward (ReLU, ReLU6, Hardtanh) with the same operand
// order, so that a ReLU fused into the store gives the ReLU layer's bits.
void PanelRows(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* panel, int64_t ldb,
               float* c, int64_t p, int64_t out_w, bool spill, const float* clamp = nullptr);

// Which implementation PanelRows runs.
enum class PanelIsa { kAvx2, kAvx512 };
// The widest one this CPU has (kAvx512 when it reports AVX-512F).
PanelIsa BestPanelIsa();
// The one in use: BestPanelIsa() unless changed by SetPanelIsa.
PanelIsa CurrentPanelIsa();
// For tests and benchmarks that compare the two. kAvx512 on a CPU without
// AVX-512F is refused (returns false, nothing changes). Not thread-safe:
// call it while no kernel runs.
bool SetPanelIsa(PanelIsa isa);

}  // namespace quant::nn

#endif  // QUANT_NN_PANEL_GEMM_H_
