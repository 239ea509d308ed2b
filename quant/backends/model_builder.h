// Float networks as QuantizedModel v2 graphs (FLOAT32 tensors, float weights), a
// builder for such graphs, a float forward pass over them, and a minimal min/max
// static quantization of them. These exist so that backend tests and benchmarks
// can build realistic integer models (mlp- and cnn-shaped, random weights,
// calibrated activation ranges, residual adds, concats, ...) without the training
// engine; the PTQ package's `static` method is the real converter and produces the
// same format.
#ifndef QUANT_BACKENDS_MODEL_BUILDER_H_
#define QUANT_BACKENDS_MODEL_BUILDER_H_

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"

namespace quant::backends {

// Builds a float graph op by op; each call returns the op's output tensor index.
// Weighted ops get zero float weights and bias (RandomizeFloatWeights fills them).
class GraphBuilder {
 public:
  GraphBuilder(const std::string& source_model, const Shape& input_shape);
  int input() const { return 0; }
  const Shape& shape(int tensor) const { return shapes_[tensor]; }

  int FullyConnected(const std::string& name, int x, int out_features, Activation act = ACTIVATION_NONE);
  // pads: top, bottom, left, right.
  int Conv2D(const std::string& name, int x, int out_channels, int groups, int kh, int kw, int stride,
             std::array<int, 4> pads, Activation act = ACTIVATION_NONE);
  int MaxPool2D(const std::string& name, int x, int kernel, int stride, int pad = 0);
  int AveragePool2D(const std::string& name, int x, int kernel, int stride);
  int GlobalAveragePool(const std::string& name, int x);
  int Add(const std::string& name, int a, int b, Activation act = ACTIVATION_NONE);
  int Concat(const std::string& name, const std::vector<int>& xs);
  // kind: Op::kHardswish, Op::kSigmoid or Op::kTanh.
  int Lookup(const std::string& name, Op::OptionsCase kind, int x);
  int Flatten(const std::string& name, int x);

  // The graph with `output` as the model output.
  QuantizedModel Finish(int output);

 private:
  int AddTensor(const std::string& name, const Shape& shape, bool constant);
  Op* AddOp(const std::string& name, const std::vector<int>& inputs, const Shape& out_shape, Activation act,
            int* output);

  QuantizedModel m_;
  std::vector<Shape> shapes_;
};

// mlp: [28,28,1] -> flatten -> Linear(784,256)-ReLU-Linear(256,128)-ReLU-Linear(128,10).
QuantizedModel MakeFloatMlp(uint64_t seed);
// cnn: Conv(1,16,3,pad1)-ReLU-MaxPool2-Conv(16,32,3,pad1)-ReLU-MaxPool2-Flatten-
//      Linear(1568,128)-ReLU-Linear(128,10), NHWC.
QuantizedModel MakeFloatCnn(uint64_t seed);
// PyTorch's default init bounds: weights and bias uniform in +-1/sqrt(fan_in).
void RandomizeFloatWeights(QuantizedModel* model, uint64_t seed);

// Uniform [0, 1) images of `model`'s input shape, `batch` of them (NHWC).
std::vector<float> RandomImages(const QuantizedModel& model, int64_t batch, uint64_t seed);

// Runs the float model (float_data, fused_activation) on `batch` NHWC inputs.
// `observe(op_index, values, count)` (optional) sees every op's output.
using LayerObserver = std::function<void(int, const float*, int64_t)>;
absl::StatusOr<std::vector<float>> FloatForward(const QuantizedModel& model, const float* input,
                                                int64_t batch, const LayerObserver& observe = nullptr);

struct QuantizeOptions {
  DType activation_dtype = INT8;
  DType weight_dtype = INT8;
  bool per_channel = false;
  bool symmetric_weights = true;  // zero point 0 (int8) / 2^(bits-1) (uint8)
  int weight_bits = 8;
  bool keep_float = true;         // keep float_data for the float backends
};

// Min/max calibration over `calibration` (n NHWC images), affine activations per
// tensor (max pool / flatten / reshape keep their input's qparams; sigmoid and tanh
// get TFLite's fixed output qparams, 1/256 and 1/128), weights per
// `options`, int32 bias, clamps for the fused activations, then
// ComputeRequantization. Returns a validated model.
absl::StatusOr<QuantizedModel> QuantizeMinMax(const QuantizedModel& float_model, const float* calibration,
                                              int64_t n, const QuantizeOptions& options);

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_MODEL_BUILDER_H_
