// `model: {name: onnx, path: model.onnx}`: a float ONNX model (opsets 11 to
// 17) imported as a quantlab graph, its initializers as the parameters and
// buffers (trainable: an imported model can be fine-tuned, QAT-trained and
// quantized like a built-in one).
//
// Imported ops: Conv (2-D, square kernel, equal strides and symmetric pads,
// groups, dilation 1), Gemm and MatMul with a constant weight (+ Add of a
// constant bias; a Mul by a constant after them is folded into the weights), BatchNormalization, Relu, Clip (ReLU6 or a
// hardtanh), HardSwish, Sigmoid, Tanh, LeakyRelu, MaxPool and AveragePool (no padding, floor mode), GlobalAveragePool,
// Flatten, Reshape to [batch, -1], Add of two values, Concat on channels, Identity, Dropout. Anything else, and any
// attribute value outside that, is an error naming the file, the node, the
// op, the attribute and the opset. The input must be NCHW with static C, H, W
// equal to the dataset's sample shape (the batch dimension may be dynamic).
#ifndef QUANT_ONNX_ONNX_MODEL_H_
#define QUANT_ONNX_ONNX_MODEL_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"
#include "quant/core/params.h"
#include "quant/nn/model.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {

inline constexpr int kMinImportOpset = 11;
inline constexpr int kMaxImportOpset = 17;

class OnnxModel : public nn::Model {
 public:
  static absl::StatusOr<std::unique_ptr<nn::Model>> Create(ParamReader& p);
  // From an already-read model; `file` names it in errors.
  static absl::StatusOr<std::unique_ptr<OnnxModel>> FromProto(onnx::ModelProto model, std::string file);
  std::string name() const override { return "onnx"; }

 protected:
  absl::StatusOr<nn::GraphSpec> MakeGraph(const nn::Shape& sample_shape, int num_classes) override;
  absl::Status AfterBuild() override;

 private:
  onnx::ModelProto proto_;
  std::string file_;
  // "<layer>.<tensor>" -> the values MakeGraph took from the file, in quantlab's layout.
  std::map<std::string, OnnxTensor> state_;
};

}  // namespace onnx_io
}  // namespace quant

#endif  // QUANT_ONNX_ONNX_MODEL_H_
