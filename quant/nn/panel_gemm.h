// The register-blocked float kernel shared by Conv2d's packed and pointwise
// paths and by the Winograd convolution (quant/nn/winograd.h): rows of C for
// one panel of 16 columns, with explicit FMA in a fixed order, so that its
// results are the same on every AVX2 machine.
#ifndef QUANT_NN_PANEL_GEMM_H_
#define QUANT_NN_PANEL_GEMM_H_

#include <cstdint>

namespace quant::nn {

// C[i][0..out_w) = init[i] (or 0 when init is null) + sum_r A[i][r] *
// panel[r][0..16) for i < m, r < kdim, terms added in r order. A is
// row-major (lda), the panel's rows are ldb floats apart, C's rows p floats
// apart. With `spill` every row is stored 16 wide (it may run past out_w into
// memory the caller writes later); otherwise exactly out_w floats are stored.
void PanelRows(int64_t m, int64_t kdim, const float* a, int64_t lda, const float* init, const float* panel, int64_t ldb,
               float* c, int64_t p, int64_t out_w, bool spill);

}  // namespace quant::nn

#endif  // QUANT_NN_PANEL_GEMM_H_
