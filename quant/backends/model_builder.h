// Float networks described as QuantizedModel structure + float weights, a float
// forward pass over them, and a minimal min/max static quantization of them.
// These exist so that backend tests and benchmarks can build realistic integer
// models (mlp- and cnn-shaped, random weights, calibrated activation ranges)
// without the training engine; the PTQ package's `static` method is the real
// converter and produces the same QuantizedModel format.
#ifndef QUANT_BACKENDS_MODEL_BUILDER_H_
#define QUANT_BACKENDS_MODEL_BUILDER_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"

namespace quant::backends {

// A float model: layers carry structure, float_weights/float_bias (same layouts
// as the integer model) and fused_activation; no quantization yet.
// mlp: [28,28,1] -> flatten -> Linear(784,256)-ReLU-Linear(256,128)-ReLU-Linear(128,10).
QuantizedModel MakeFloatMlp(uint64_t seed);
// cnn: Conv(1,16,3,pad1)-ReLU-MaxPool2-Conv(16,32,3,pad1)-ReLU-MaxPool2-Flatten-
//      Linear(1568,128)-ReLU-Linear(128,10), NHWC.
QuantizedModel MakeFloatCnn(uint64_t seed);
// PyTorch's default init bounds: weights and bias uniform in +-1/sqrt(fan_in).
void RandomizeFloatWeights(QuantizedModel* model, uint64_t seed);

// Uniform [0, 1) images of `model`'s input shape, `batch` of them (NHWC).
std::vector<float> RandomImages(const QuantizedModel& model, int64_t batch, uint64_t seed);

// Runs the float model (float_weights, fused_activation) on `batch` NHWC inputs.
// `observe(layer_index, values, count)` (optional) sees every layer's output.
using LayerObserver = std::function<void(int, const float*, int64_t)>;
absl::StatusOr<std::vector<float>> FloatForward(const QuantizedModel& model, const float* input,
                                                int64_t batch, const LayerObserver& observe = nullptr);

struct QuantizeOptions {
  DType activation_dtype = INT8;
  DType weight_dtype = INT8;
  bool per_channel = false;
  bool symmetric_weights = true;  // zero point 0 (int8) / 2^(bits-1) (uint8)
  int weight_bits = 8;
  bool keep_float = true;         // keep float_weights/float_bias for the float backends
};

// Min/max calibration over `calibration` (n NHWC images), affine activations,
// weights per `options`, int32 bias, clamps for the fused activations, then
// ComputeRequantization. Returns a validated model.
absl::StatusOr<QuantizedModel> QuantizeMinMax(const QuantizedModel& float_model, const float* calibration,
                                              int64_t n, const QuantizeOptions& options);

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_MODEL_BUILDER_H_
