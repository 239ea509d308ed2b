// Helpers around the QuantizedModel v2 proto (quantized_model.proto, which states
// the graph rules, the layouts and the arithmetic): shape inference (structure
// only, also for float graphs), validation with errors that name the op and the
// field, the precomputation of requantization multipliers and lookup tables, and
// save/load in a framed file format that detects truncation and corruption.
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

inline constexpr int kQuantizedModelFormatVersion = 2;
// TFLite's left shift of the quantized add (integer_ops/add.h).
inline constexpr int kAddLeftShift = 20;

// "int8" / "uint8" / "int32" / "float32" / "unspecified".
std::string DTypeName(DType dtype);
// Range of an int8/uint8 container.
int32_t DTypeMin(DType dtype);
int32_t DTypeMax(DType dtype);
// "fully_connected", "conv2d", "max_pool2d", "average_pool2d", "global_average_pool",
// "add", "concat", "hardswish", "sigmoid", "tanh", "flatten", "reshape" or "(no op)".
std::string OpKind(const Op& op);
// "op 3 'fc1' (fully_connected)": how every error names an op.
std::string OpLabel(const QuantizedModel& model, int index);

// Per-sample shape: [H, W, C] or [C] for activations; full shape for constants.
using Shape = std::vector<int64_t>;
int64_t Numel(const Shape& s);
Shape TensorShape(const Tensor& t);

bool IsConstant(const Tensor& t);
bool IsPerChannel(const Tensor& t);
// Scale / zero point of channel `c` (per-tensor: entry 0).
float TensorScale(const Tensor& t, int c = 0);
int32_t TensorZeroPoint(const Tensor& t, int c = 0);
// The integer values of a constant: int8/uint8 `data` or int32 `int_data`.
std::vector<int32_t> TensorValues(const Tensor& t);

int InputTensor(const QuantizedModel& m);   // m.inputs(0)
int OutputTensor(const QuantizedModel& m);  // m.outputs(0)
// The weights / bias tensor of a fully_connected or conv2d op (-1 if none).
int WeightTensor(const Op& op);
int BiasTensor(const Op& op);

// Structure only (works on float graphs too): version, tensor indices, one model
// input/output, topological order (an input used before it is produced is "a
// cycle or out of order"), single producers, each op's input count and shapes,
// the declared output shapes. Returns the shape of every tensor.
absl::StatusOr<std::vector<Shape>> InferShapes(const QuantizedModel& model);

// InferShapes, then everything a backend relies on: qparams (finite positive
// scales, zero points and clamps in range, one activation dtype throughout, pooling
// and reshapes keep their input's qparams), weights within their bit width, int32
// biases, and the requantization multipliers / lookup tables equal to what
// ComputeRequantization derives. The error names the op (index, name, kind) and the field.
absl::Status ValidateQuantizedModel(const QuantizedModel& model);

// Fills every op's requantization multipliers (and lookup tables) from the tensors'
// scales: for a converter, after it has set them. A scale of 0, negative, NaN or inf
// (e.g. from a degenerate calibration batch) is an InvalidArgumentError naming the op.
absl::Status ComputeRequantization(QuantizedModel* model);

// The lookup table of a hardswish/sigmoid/tanh op from its input and output qparams
// (see quantized_model.proto); 256 entries indexed by q - DTypeMin(dtype).
std::vector<int32_t> BuildLookupTable(Op::OptionsCase kind, const Tensor& input, const Tensor& output);
// The float function of a lookup-table op.
float LookupFunction(Op::OptionsCase kind, float x);

// Serialised size of the integer model: weights, biases, qparams (what deployment
// stores), excluding the float copies (float_data).
int64_t IntegerModelBytes(const QuantizedModel& model);

// The deployable size with weights packed at their bit width: every int8/uint8
// constant ceil(values * bits / 8) bytes, int32 constants (biases) 4 bytes a value,
// and 4 bytes per scale and per zero point of every tensor. The protobuf stores
// sub-8-bit weights one per byte, so IntegerModelBytes does not shrink below 8 bits;
// this does, and it is additive over tensors (mixed-precision budgets predict it
// exactly).
int64_t PackedModelBytes(const QuantizedModel& model);

// File format: 8-byte magic "QLQMODEL", little-endian uint32 format version,
// uint64 payload size, the serialised proto, little-endian uint32 CRC-32 of the
// payload. Load rejects a wrong magic, another version (naming it), a truncated or
// over-long file, a CRC mismatch, and then runs ValidateQuantizedModel.
absl::Status SaveQuantizedModel(const QuantizedModel& model, const std::string& path);
absl::StatusOr<QuantizedModel> LoadQuantizedModel(const std::string& path);
// The same on bytes in memory.
std::string SerializeQuantizedModel(const QuantizedModel& model);
absl::StatusOr<QuantizedModel> ParseQuantizedModel(std::string_view bytes,
                                                   std::string_view origin = "<memory>");

// Checks that a (loaded) model belongs to the float model the caller expects:
// same source_model name, input shape and number of outputs.
absl::Status CheckModelMatches(const QuantizedModel& model, std::string_view source_model,
                               const Shape& input_shape, int64_t num_outputs);

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_QUANTIZED_MODEL_H_
