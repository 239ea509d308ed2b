// Helpers around the QuantizedModel proto (quantized_model.proto, which states
// the layouts and the arithmetic): validation with errors that name the layer and
// the field, shape inference, the precomputation of requantization multipliers,
// and save/load in a framed file format that detects truncation and corruption.
#ifndef QUANT_BACKENDS_QUANTIZED_MODEL_H_
#define QUANT_BACKENDS_QUANTIZED_MODEL_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.pb.h"

namespace quant::backends {

inline constexpr int kQuantizedModelFormatVersion = 1;

// "int8" / "uint8" / "unspecified".
std::string DTypeName(DType dtype);
// Range of the container type.
int32_t DTypeMin(DType dtype);
int32_t DTypeMax(DType dtype);
// "fully_connected", "conv2d", "max_pool2d", "flatten" or "(no op)".
std::string LayerKind(const Layer& layer);
// "layer 3 'fc1' (fully_connected)": how every error names a layer.
std::string LayerLabel(const QuantizedModel& model, int index);

// Shape of one image's activations after each layer: [H, W, C] or [C].
// shapes[0] is the input; shapes[i + 1] the output of layer i.
using Shape = std::vector<int64_t>;

// Checks everything a backend relies on: version, shapes chain from layer to layer,
// byte/element counts, qparams (finite positive scales, zero points and clamps in
// range, one activation dtype throughout, pooling/flatten keep their input's
// qparams), weights within their bit width, and the requantization multipliers equal
// to QuantizeMultiplier(s_in*s_w/s_out). The error names the layer and the field.
absl::Status ValidateQuantizedModel(const QuantizedModel& model);

// The activation shapes (see Shape); requires a valid model.
absl::StatusOr<std::vector<Shape>> InferShapes(const QuantizedModel& model);

// Fills every layer's requantization from the scales: for a converter, after it
// has set scales. A scale of 0, negative, NaN or inf (e.g. from a degenerate
// calibration batch) is an InvalidArgumentError naming the layer.
absl::Status ComputeRequantization(QuantizedModel* model);

// Weight bytes of layer `layer` (FC or conv) as integers, honouring the dtype.
std::vector<int32_t> WeightValues(const Layer& layer);
// Zero point / scale of output channel `o` of a weight tensor (per-tensor or per-channel).
int32_t WeightZeroPoint(const WeightQuant& wq, int o);
float WeightScale(const WeightQuant& wq, int o);
bool IsPerChannel(const WeightQuant& wq);

// Serialised size of the integer model: weights, biases, qparams (what deployment
// stores), excluding the optional float weights.
int64_t IntegerModelBytes(const QuantizedModel& model);

// File format: 8-byte magic "QLQMODEL", little-endian uint32 format version,
// uint64 payload size, the serialised proto, little-endian uint32 CRC-32 of the
// payload. Load rejects a wrong magic, a truncated or over-long file, a CRC
// mismatch, and then runs ValidateQuantizedModel.
absl::Status SaveQuantizedModel(const QuantizedModel& model, const std::string& path);
absl::StatusOr<QuantizedModel> LoadQuantizedModel(const std::string& path);
// The same on bytes in memory.
std::string SerializeQuantizedModel(const QuantizedModel& model);
absl::StatusOr<QuantizedModel> ParseQuantizedModel(std::string_view bytes,
                                                   std::string_view origin = "<memory>");

// Checks that a (loaded) model belongs to the float model the caller expects:
// same source_model name, input shape and number of outputs. Rejects a file
// written for another model with a message saying what differs.
absl::Status CheckModelMatches(const QuantizedModel& model, std::string_view source_model,
                               const Shape& input_shape, int64_t num_outputs);

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_QUANTIZED_MODEL_H_
