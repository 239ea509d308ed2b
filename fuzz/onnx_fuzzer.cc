// Fuzzes the ONNX readers on untrusted .onnx files: ReadModelFile (truncated or
// garbled bytes), the float importer (model: {name: onnx}, built into a quantlab
// graph with its initializers copied in) and the reader of quantized exports
// (ImportQuantized, QDQ and QOperator form), whose result has been validated and
// so must export again without crashing.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_util.h"
#include "quant/onnx/onnx_export.h"
#include "quant/onnx/onnx_model.h"
#include "quant/onnx/onnx_tensor.h"

namespace {

// The graph input's static [C, H, W] when it has one of a sane size, else Fashion-MNIST's.
quant::nn::Shape SampleShape(const onnx::ModelProto& m) {
  if (m.graph().input_size() > 0) {
    const onnx::TensorShapeProto& s = m.graph().input(0).type().tensor_type().shape();
    if (s.dim_size() == 4) {
      quant::nn::Shape shape;
      for (int d = 1; d < 4; ++d) {
        if (!s.dim(d).has_dim_value() || s.dim(d).dim_value() < 1 || s.dim(d).dim_value() > 64) break;
        shape.push_back(s.dim(d).dim_value());
      }
      if (shape.size() == 3) return shape;
    }
  }
  return {1, 28, 28};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = quant::fuzz::ScratchPath(".onnx");
  quant::fuzz::WriteScratch(path, data, size);
  absl::StatusOr<onnx::ModelProto> proto = quant::onnx_io::ReadModelFile(path);
  if (!proto.ok()) return 0;
  auto model = quant::onnx_io::OnnxModel::FromProto(*proto, path);
  if (model.ok()) (*model)->Build(SampleShape(*proto), 10, 0).IgnoreError();
  absl::StatusOr<quant::backends::QuantizedModel> q = quant::onnx_io::ImportQuantized(*proto, path);
  if (q.ok()) {
    quant::onnx_io::ExportQdq(*q).status().IgnoreError();
    quant::onnx_io::ExportQOperator(*q).status().IgnoreError();
  }
  return 0;
}
