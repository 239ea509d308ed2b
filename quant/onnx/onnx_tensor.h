// Typed tensors as ONNX sees them, the reading of ONNX files, and node attributes.
//
// An OnnxTensor holds float32 values in `f` and every integer type (bool,
// int8, uint8, int32, int64) exactly in `i`, so the ONNX runner's integer ops
// are bit-exact whatever the storage type. Reading goes through Debian's
// libonnx protobufs (libonnx-dev 1.12); errors name the file and, for tensors
// inside a model, the tensor.
#ifndef QUANT_ONNX_ONNX_TENSOR_H_
#define QUANT_ONNX_ONNX_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "onnx/onnx_pb.h"

namespace quant {
namespace onnx_io {

// The element types quantlab's ONNX code handles (ONNX TensorProto codes).
enum class DType { kFloat = 1, kUint8 = 2, kInt8 = 3, kInt32 = 6, kInt64 = 7, kBool = 9 };

// "float", "uint8", ...; for any ONNX TensorProto data type code.
std::string DTypeName(int onnx_type);
bool IsSupportedDType(int onnx_type);
// Saturation bounds of an integer type.
int64_t MinOf(DType t);
int64_t MaxOf(DType t);

struct OnnxTensor {
  DType dtype = DType::kFloat;
  std::vector<int64_t> shape;
  std::vector<float> f;    // when dtype == kFloat
  std::vector<int64_t> i;  // every other dtype

  int64_t numel() const;
  bool is_float() const { return dtype == DType::kFloat; }
  // A zero-filled tensor of this type and shape.
  static OnnxTensor Zeros(DType t, std::vector<int64_t> shape);
  // Value k as double (exact for every integer here and every float).
  double at(int64_t k) const { return is_float() ? f[k] : static_cast<double>(i[k]); }
  std::string ShapeString() const;
};

// Product of dims (1 for a scalar).
int64_t NumElements(const std::vector<int64_t>& shape);

// A TensorProto's values; `what` names it in errors ("initializer fc.weight in m.onnx").
absl::StatusOr<OnnxTensor> FromProto(const onnx::TensorProto& proto, const std::string& what);
onnx::TensorProto ToProto(const OnnxTensor& t, const std::string& name);

// A serialized ModelProto / TensorProto file. A missing, truncated or
// corrupt file is an InvalidArgument error naming it.
absl::StatusOr<onnx::ModelProto> ReadModelFile(const std::string& path);
absl::StatusOr<OnnxTensor> ReadTensorFile(const std::string& path);

// A node's attributes: the attribute named `name`, or null; typed readers with defaults.
const onnx::AttributeProto* Attr(const onnx::NodeProto& n, const std::string& name);
int64_t IntAttr(const onnx::NodeProto& n, const std::string& name, int64_t dflt);
float FloatAttr(const onnx::NodeProto& n, const std::string& name, float dflt);
std::string StringAttr(const onnx::NodeProto& n, const std::string& name, const std::string& dflt);
std::vector<int64_t> IntsAttr(const onnx::NodeProto& n, const std::string& name);

}  // namespace onnx_io
}  // namespace quant

#endif  // QUANT_ONNX_ONNX_TENSOR_H_
