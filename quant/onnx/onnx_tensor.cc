#include "quant/onnx/onnx_tensor.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace quant {
namespace onnx_io {

std::string DTypeName(int t) {
  switch (t) {
    case 1:
      return "float";
    case 2:
      return "uint8";
    case 3:
      return "int8";
    case 4:
      return "uint16";
    case 5:
      return "int16";
    case 6:
      return "int32";
    case 7:
      return "int64";
    case 8:
      return "string";
    case 9:
      return "bool";
    case 10:
      return "float16";
    case 11:
      return "double";
    case 12:
      return "uint32";
    case 13:
      return "uint64";
    case 14:
      return "complex64";
    case 15:
      return "complex128";
    case 16:
      return "bfloat16";
    default:
      return absl::StrCat("type ", t);
  }
}

bool IsSupportedDType(int t) { return t == 1 || t == 2 || t == 3 || t == 6 || t == 7 || t == 9; }

int64_t MinOf(DType t) {
  switch (t) {
    case DType::kUint8:
      return 0;
    case DType::kInt8:
      return -128;
    case DType::kInt32:
      return std::numeric_limits<int32_t>::min();
    case DType::kBool:
      return 0;
    default:
      return std::numeric_limits<int64_t>::min();
  }
}

int64_t MaxOf(DType t) {
  switch (t) {
    case DType::kUint8:
      return 255;
    case DType::kInt8:
      return 127;
    case DType::kInt32:
      return std::numeric_limits<int32_t>::max();
    case DType::kBool:
      return 1;
    default:
      return std::numeric_limits<int64_t>::max();
  }
}

int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int64_t OnnxTensor::numel() const { return NumElements(shape); }

OnnxTensor OnnxTensor::Zeros(DType t, std::vector<int64_t> shape) {
  OnnxTensor r;
  r.dtype = t;
  r.shape = std::move(shape);
  if (t == DType::kFloat) {
    r.f.assign(r.numel(), 0.0f);
  } else {
    r.i.assign(r.numel(), 0);
  }
  return r;
}

std::string OnnxTensor::ShapeString() const { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

namespace {

// Little-endian raw bytes (x86 and every ONNX producer) of `n` values of T.
template <typename T>
bool ReadRaw(const std::string& raw, int64_t n, std::vector<T>* out) {
  if (static_cast<int64_t>(raw.size()) != n * static_cast<int64_t>(sizeof(T))) return false;
  out->resize(n);
  if (n > 0) std::memcpy(out->data(), raw.data(), raw.size());  // an empty vector's data() may be null
  return true;
}

}  // namespace

absl::StatusOr<OnnxTensor> FromProto(const onnx::TensorProto& p, const std::string& what) {
  if (p.data_location() == onnx::TensorProto::EXTERNAL || p.external_data_size() > 0) {
    return absl::UnimplementedError(absl::StrCat(what, ": external tensor data is not supported"));
  }
  if (!IsSupportedDType(p.data_type())) {
    return absl::UnimplementedError(absl::StrCat(what, ": element type ", DTypeName(p.data_type()),
                                                 " is not supported (float, uint8, int8, int32, int64, bool)"));
  }
  OnnxTensor t;
  t.dtype = static_cast<DType>(p.data_type());
  // Sizes are checked against the data the file holds before anything is allocated; a product of
  // dims beyond 2^40 could not be held by any file and would overflow on the way.
  int64_t count = 1;
  for (int64_t d : p.dims()) {
    if (d < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative dimension ", d));
    if (d > 0 && count > (int64_t{1} << 40) / d)
      return absl::InvalidArgumentError(absl::StrCat(what, ": more than 2^40 elements"));
    count *= d;
    t.shape.push_back(d);
  }
  const int64_t n = t.numel();
  const bool raw = p.has_raw_data();
  auto bad_size = [&](int64_t got) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": shape ", t.ShapeString(), " needs ", n, " values, the tensor holds ", got));
  };
  switch (t.dtype) {
    case DType::kFloat:
      if (raw) {
        if (!ReadRaw<float>(p.raw_data(), n, &t.f)) return bad_size(p.raw_data().size() / 4);
      } else {
        if (p.float_data_size() != n) return bad_size(p.float_data_size());
        t.f.assign(p.float_data().begin(), p.float_data().end());
      }
      return t;
    case DType::kInt64:
      if (raw) {
        if (!ReadRaw<int64_t>(p.raw_data(), n, &t.i)) return bad_size(p.raw_data().size() / 8);
      } else {
        if (p.int64_data_size() != n) return bad_size(p.int64_data_size());
        t.i.assign(p.int64_data().begin(), p.int64_data().end());
      }
      return t;
    default:
      break;
  }
  if (raw) {
    const std::string& r = p.raw_data();
    if (t.dtype == DType::kInt32) {
      std::vector<int32_t> v;
      if (!ReadRaw<int32_t>(r, n, &v)) return bad_size(r.size() / 4);
      t.i.assign(v.begin(), v.end());
    } else {
      if (static_cast<int64_t>(r.size()) != n) return bad_size(r.size());
      t.i.resize(n);
      for (int64_t k = 0; k < n; ++k) {
        t.i[k] = t.dtype == DType::kInt8 ? static_cast<int8_t>(r[k]) : static_cast<uint8_t>(r[k]);
      }
    }
  } else {
    // int8, uint8, bool and int32 live in int32_data.
    if (p.int32_data_size() != n) return bad_size(p.int32_data_size());
    t.i.assign(p.int32_data().begin(), p.int32_data().end());
  }
  for (int64_t v : t.i) {
    if (v < MinOf(t.dtype) || v > MaxOf(t.dtype)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": value ", v, " out of range for ", DTypeName(p.data_type())));
    }
  }
  return t;
}

onnx::TensorProto ToProto(const OnnxTensor& t, const std::string& name) {
  onnx::TensorProto p;
  p.set_name(name);
  p.set_data_type(static_cast<int>(t.dtype));
  for (int64_t d : t.shape) p.add_dims(d);
  std::string raw;
  switch (t.dtype) {
    case DType::kFloat:
      raw.assign(reinterpret_cast<const char*>(t.f.data()), t.f.size() * sizeof(float));
      break;
    case DType::kInt64:
      raw.assign(reinterpret_cast<const char*>(t.i.data()), t.i.size() * sizeof(int64_t));
      break;
    case DType::kInt32:
      for (int64_t v : t.i) {
        const int32_t x = static_cast<int32_t>(v);
        raw.append(reinterpret_cast<const char*>(&x), sizeof(x));
      }
      break;
    default:
      for (int64_t v : t.i) raw.push_back(static_cast<char>(v));
      break;
  }
  p.set_raw_data(raw);
  return p;
}

namespace {

absl::StatusOr<std::string> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the file"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::StatusOr<onnx::ModelProto> ReadModelFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadBytes(path);
  if (!bytes.ok()) return bytes.status();
  onnx::ModelProto m;
  if (bytes->empty() || !m.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid ONNX model (", bytes->size(),
                                                   " bytes that do not parse as onnx.ModelProto; truncated?)"));
  }
  if (!m.has_graph()) return absl::InvalidArgumentError(absl::StrCat(path, ": the ONNX model has no graph"));
  return m;
}

absl::StatusOr<OnnxTensor> ReadTensorFile(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadBytes(path);
  if (!bytes.ok()) return bytes.status();
  onnx::TensorProto p;
  if (!p.ParseFromString(*bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": does not parse as onnx.TensorProto"));
  }
  return FromProto(p, path);
}

const onnx::AttributeProto* Attr(const onnx::NodeProto& n, const std::string& name) {
  for (const onnx::AttributeProto& a : n.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t IntAttr(const onnx::NodeProto& n, const std::string& name, int64_t dflt) {
  const onnx::AttributeProto* a = Attr(n, name);
  return a != nullptr ? a->i() : dflt;
}

float FloatAttr(const onnx::NodeProto& n, const std::string& name, float dflt) {
  const onnx::AttributeProto* a = Attr(n, name);
  return a != nullptr ? a->f() : dflt;
}

std::string StringAttr(const onnx::NodeProto& n, const std::string& name, const std::string& dflt) {
  const onnx::AttributeProto* a = Attr(n, name);
  return a != nullptr ? a->s() : dflt;
}

std::vector<int64_t> IntsAttr(const onnx::NodeProto& n, const std::string& name) {
  const onnx::AttributeProto* a = Attr(n, name);
  if (a == nullptr) return {};
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

}  // namespace onnx_io
}  // namespace quant
