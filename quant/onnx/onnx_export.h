// Export of a quantized result (a QuantizedModel v2) to ONNX in QDQ form:
// float ops between QuantizeLinear / DequantizeLinear pairs, laid out the way
// ONNX Runtime's QDQ optimiser recognises them (each weight's and bias's
// DequantizeLinear feeding the Conv / Gemm directly, each op's float output
// quantized and dequantized once), and an encodings JSON in the spirit of
// AIMET's.
//
// The ONNX model is NCHW, as ONNX's operators are: conv weights go back from
// OHWI to OIHW, and the first Gemm after a Flatten gets its columns back in
// NCHW order (quantized_model.proto, "Layout conventions"). Fused ReLU / ReLU6
// and other clamps become Relu or Clip before the output's QuantizeLinear.
// Weights of fewer than 8 bits stay in their int8/uint8 containers; their
// ranges are stated in the model's metadata (`quantlab.bits.<tensor>`) and in
// the encodings.
//
// ONNX's QDQ semantics requantize in float (round half to even) where
// quantlab's reference uses gemmlowp's fixed-point multipliers, so the
// exported model's integer values may differ from the reference backend's by
// one step where a product lands near a rounding tie.
#ifndef QUANT_ONNX_ONNX_EXPORT_H_
#define QUANT_ONNX_ONNX_EXPORT_H_

#include <string>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"
#include "quant/backends/quantized_model.h"

namespace quant {
namespace onnx_io {

inline constexpr int kExportOpset = 13;  // 14 where the model has a hardswish

// The QDQ model, checked by onnx::checker and ONNX's shape inference (strict);
// an op or layout that cannot be exported is Unimplemented naming the op.
absl::StatusOr<onnx::ModelProto> ExportQdq(const backends::QuantizedModel& model);
// The QOperator form: integer values flow between ops. Conv is QLinearConv (it
// requantizes itself); FullyConnected is MatMulInteger + the int32 bias Add,
// dequantized per output channel and quantized; MaxPool and Flatten run on the
// integers; ops without an integer ONNX form at these opsets (Add, Concat,
// AveragePool, GlobalAveragePool, the lookup-table ops) are DequantizeLinear ->
// float op -> QuantizeLinear. Clamps are integer Clips. Checked like ExportQdq.
absl::StatusOr<onnx::ModelProto> ExportQOperator(const backends::QuantizedModel& model);

// Reads a QDQ or QOperator model laid out as ExportQdq / ExportQOperator write
// it back into a QuantizedModel (requantization recomputed, validated):
// exporting and importing gives the same integer model (float_data, which the
// export does not carry, aside). The QOperator form's scales are checked
// (QLinearConv's x_scale / x_zero_point against x's own, an accumulator's
// DequantizeLinear scale against s_x * s_w). Anything else is an error naming
// the node.
absl::StatusOr<backends::QuantizedModel> ImportQuantized(const onnx::ModelProto& model, const std::string& file);

// Whether `a` and `b` are the same integer model: every field but float_data and
// fused_activation (which the export does not carry); else the differences in `diff`.
bool SameIntegerModel(const backends::QuantizedModel& a, const backends::QuantizedModel& b, std::string* diff);

// Per quantized tensor (activations, weights, biases): bitwidth, dtype, scale
// and offset (per channel where the tensor is), is_symmetric, the integer
// range; as a JSON object keyed by tensor name.
std::string EncodingsJson(const backends::QuantizedModel& model);

// Writes `model` to `path` atomically.
absl::Status WriteModelFile(const onnx::ModelProto& model, const std::string& path);

}  // namespace onnx_io
}  // namespace quant

#endif  // QUANT_ONNX_ONNX_EXPORT_H_
