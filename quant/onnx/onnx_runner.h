// Runs an ONNX model node by node with quantlab's definition of each ONNX
// operator (onnx_ops.h): the executor of ONNX's own conformance data
// (libonnx-testdata) and of exported models in round-trip tests.
//
// Create() accepts any model; Unsupported() says, before anything runs,
// whether every node, attribute, element type and the opset are
// implemented, and if not names the first node that is not and why. Run()
// feeds the graph's real inputs (those without an initializer) in order
// and returns the graph's outputs in order.
#ifndef QUANT_ONNX_ONNX_RUNNER_H_
#define QUANT_ONNX_ONNX_RUNNER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {

// The default-domain opsets the runner implements.
inline constexpr int kMinRunnerOpset = 1;  // each op states its own first opset
inline constexpr int kMaxRunnerOpset = 17;

class OnnxRunner {
 public:
  // `file` names the model in errors.
  OnnxRunner(onnx::ModelProto model, std::string file);

  // The default domain's opset (0 if the model imports none).
  int opset() const { return opset_; }
  // "" if the whole model can run; else e.g. "node 'n3' (MaxPool): attribute storage_order = 1 (column-major indices)".
  const std::string& Unsupported() const { return unsupported_; }
  // Names of the graph's real inputs, in order.
  const std::vector<std::string>& input_names() const { return inputs_; }

  // Errors name the file, the node and its op.
  absl::StatusOr<std::vector<OnnxTensor>> Run(const std::vector<OnnxTensor>& inputs) const;

 private:
  onnx::ModelProto model_;
  std::string file_;
  int opset_ = 0;
  std::string unsupported_;
  std::vector<std::string> inputs_;
};

}  // namespace onnx_io
}  // namespace quant

#endif  // QUANT_ONNX_ONNX_RUNNER_H_
