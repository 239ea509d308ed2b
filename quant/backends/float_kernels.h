// Float NHWC kernels over the layers of a QuantizedModel (FC as one GEMM, conv
// as im2col + GEMM through OpenBLAS, max pooling, fused ReLU/ReLU6). They run
// the float model (float_weights/float_bias) for PTQ calibration and for the
// float simulations (`fake_quant` backend, dynamic and weight-only PTQ), where
// the float arithmetic is the point and the integer kernels do not apply.
#ifndef QUANT_BACKENDS_FLOAT_KERNELS_H_
#define QUANT_BACKENDS_FLOAT_KERNELS_H_

#include <cstdint>
#include <vector>

#include "quant/backends/quantized_model.h"

namespace quant::backends::floatk {

// y[b][o] = bias[o] + sum_i x[b][i] w[o][i]; bias may be null.
void FullyConnected(const float* x, int64_t batch, int in, int out, const float* w, const float* bias,
                    float* y);
// NHWC conv with OHWI weights (groups == 1 through one GEMM; grouped convs by
// a direct loop). `in`/`out` are [H, W, C] shapes; `col` is scratch.
void Conv2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const ::quant::backends::Conv2D& c,
            const float* w, const float* bias, std::vector<float>* col, float* y);
// NHWC max pooling; padded positions never win.
void MaxPool2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const ::quant::backends::Pool2D& p, float* y);
// The fused activation in place.
void Activate(Activation a, float* y, int64_t n);

}  // namespace quant::backends::floatk

#endif  // QUANT_BACKENDS_FLOAT_KERNELS_H_
