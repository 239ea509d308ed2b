// Float NHWC kernels over the ops of a QuantizedModel graph (FC as one GEMM, conv
// as im2col + GEMM through OpenBLAS, pooling, add, concat, the lookup-table ops'
// float functions, fused ReLU/ReLU6), and a float executor over a whole graph or a
// range of its ops. They run the float model (float_data) for PTQ calibration and
// for the float simulations (`fake_quant` backend, dynamic and weight-only PTQ),
// where the float arithmetic is the point and the integer kernels do not apply.
// The executor is PyTorch FX Interpreter-like: hooks see (and may replace) the
// input and the output of every op, for calibration, dynamic quantization, and
// later bias correction / AdaRound.
#ifndef QUANT_BACKENDS_FLOAT_KERNELS_H_
#define QUANT_BACKENDS_FLOAT_KERNELS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "quant/backends/quantized_model.h"

namespace quant::backends::floatk {

// y[b][o] = bias[o] + sum_i x[b][i] w[o][i]; bias may be null.
void FullyConnected(const float* x, int64_t batch, int in, int out, const float* w, const float* bias, float* y);
// NHWC conv with OHWI weights (groups == 1 through one GEMM; grouped convs by a
// direct loop). `in`/`out` are [H, W, C] shapes; `col` is scratch.
void Conv2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const Conv2DOptions& c,
            const float* w, const float* bias, std::vector<float>* col, float* y);
// NHWC max pooling; padded positions never win.
void MaxPool2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const Pool2DOptions& p, float* y);
// The fused activation in place.
void Activate(Activation a, float* y, int64_t n);

// The float weights and bias of a fully_connected/conv2d op: float_data, or, with
// `dequantize`, the integer weights and bias dequantized (bias at s_in*s_w[o]).
struct OpWeights {
  std::vector<float> weights, bias;
};
OpWeights FloatWeights(const QuantizedModel& m, const Op& op, bool dequantize);

// Runs op `op_index` in float: inputs[k] holds the batch of op.inputs(k) (activations
// only), `w` the op's weights (see FloatWeights), output into `y`; the fused
// activation is applied. `col` is scratch.
void RunOp(const QuantizedModel& m, const std::vector<Shape>& shapes, int op_index, int64_t batch,
           const std::vector<const float*>& inputs, const OpWeights& w, std::vector<float>* col, float* y);

// The float executor. values[t] holds tensor t's batch (activations only). Runs ops
// [first_op, last_op] (last_op -1: to the end); their inputs must be in `values`
// (the model input for first_op 0). `before(op, data, count)` may modify op's first
// input in place before it runs (dynamic quantization); `after(op, data, count)` sees
// and may modify op's output (calibration, fake quantization).
using OpHook = std::function<absl::Status(int op, float* data, int64_t count)>;
struct RunOptions {
  int first_op = 0;
  int last_op = -1;
  bool dequantize = false;  // use the integer weights dequantized instead of float_data
  OpHook before;
  OpHook after;
};
absl::Status RunGraph(const QuantizedModel& m, int64_t batch, std::vector<std::vector<float>>* values,
                      const RunOptions& options = RunOptions());
// The whole graph on `batch` NHWC inputs; the model output into `output`.
absl::Status Forward(const QuantizedModel& m, const float* input, int64_t batch, std::vector<float>* output,
                     const RunOptions& options = RunOptions());

}  // namespace quant::backends::floatk

#endif  // QUANT_BACKENDS_FLOAT_KERNELS_H_
