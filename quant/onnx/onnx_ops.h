// The ONNX operators quantlab's ONNX runner executes, each defined by the ONNX
// operator specification (onnx/docs/Operators.md of ONNX 1.12) in plain loops.
//
// This is the definition against which ONNX's own conformance data is
// checked (tests/onnx/conformance_test.cc): float ops accumulate in double
// and round once to float; integer ops (QuantizeLinear, DequantizeLinear,
// DynamicQuantizeLinear, QLinearConv, QLinearMatMul, ConvInteger,
// MatMulInteger) follow the spec's formulas exactly: round half to even,
// saturate to the output type.
//
// Each op declares the attributes it understands; a node using any other
// attribute, or a value of one that is not implemented, is unsupported, and
// the reason names the attribute.
#ifndef QUANT_ONNX_ONNX_OPS_H_
#define QUANT_ONNX_ONNX_OPS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "onnx/onnx_pb.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {

struct OpCall {
  const onnx::NodeProto* node = nullptr;
  int opset = 0;
  std::vector<const OnnxTensor*> inputs;  // null where an optional input is absent
  int num_outputs = 0;                    // outputs the graph asks for (node.output_size())
  const OnnxTensor* input(int k) const { return k < static_cast<int>(inputs.size()) ? inputs[k] : nullptr; }
};

struct OpSpec {
  const char* op_type;
  int since_opset;                      // the first opset whose definition is implemented
  std::vector<std::string> attributes;  // names understood
  // "" if this node (with this opset) can run, else why not.
  std::string (*check)(const onnx::NodeProto& node, int opset);
  absl::Status (*run)(const OpCall& call, std::vector<OnnxTensor>* outputs);
};

// The spec for `op_type` in the default domain, or null.
const OpSpec* FindOp(const std::string& op_type);
// Every implemented op type, sorted.
std::vector<std::string> SupportedOps();
// "" if `node` can run under `opset`, else the reason (op, attribute, value).
std::string WhyUnsupported(const onnx::NodeProto& node, int opset);

}  // namespace onnx_io
}  // namespace quant

#endif  // QUANT_ONNX_ONNX_OPS_H_
