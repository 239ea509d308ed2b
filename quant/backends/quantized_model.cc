#include "quant/backends/quantized_model.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/backends/fixed_point.h"
#include "quant/core/status_macros.h"
#include "zlib.h"

namespace quant::backends {
namespace {

constexpr char kMagic[8] = {'Q', 'L', 'Q', 'M', 'O', 'D', 'E', 'L'};
constexpr size_t kHeaderBytes = 8 + 4 + 8;
constexpr size_t kTrailerBytes = 4;

absl::Status Bad(const QuantizedModel& m, int index, std::string_view field,
                 std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("QuantizedModel: ", LayerLabel(m, index), ": ",
                                                 std::string(field), ": ", std::string(message)));
}

absl::Status BadModel(std::string_view field, std::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat("QuantizedModel: ", std::string(field), ": ", std::string(message)));
}

bool GoodScale(float s) { return std::isfinite(s) && s > 0.0f; }

std::string ShapeStr(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

// Checks a TensorQuant; `dtype` is the model's activation dtype.
absl::Status CheckTensorQuant(const TensorQuant& q, DType dtype, const std::string& field,
                              const std::function<absl::Status(std::string, std::string)>& bad) {
  if (q.dtype() != INT8 && q.dtype() != UINT8) {
    return bad(field + ".dtype", "must be INT8 or UINT8");
  }
  if (q.dtype() != dtype) {
    return bad(field + ".dtype", absl::StrCat(DTypeName(q.dtype()), " differs from the model's activation dtype ",
                                              DTypeName(dtype), " (input.dtype)"));
  }
  if (!GoodScale(q.scale())) {
    return bad(field + ".scale", absl::StrCat(q.scale(), " is not a finite positive number"));
  }
  if (q.zero_point() < DTypeMin(dtype) || q.zero_point() > DTypeMax(dtype)) {
    return bad(field + ".zero_point", absl::StrCat(q.zero_point(), " is outside the ", DTypeName(dtype),
                                                   " range [", DTypeMin(dtype), ", ", DTypeMax(dtype), "]"));
  }
  return absl::OkStatus();
}

// Expected requantization of output channel o.
bool ExpectedRequant(double s_in, const WeightQuant& wq, double s_out, int o, int32_t* m, int* shift) {
  return QuantizeMultiplier(s_in * static_cast<double>(WeightScale(wq, o)) / s_out, m, shift);
}

// Checks the parts FC and conv share. `fan_in` = weights per output channel.
template <typename Op>
absl::Status CheckWeightedLayer(const QuantizedModel& m, int index, const Op& op, int64_t fan_in,
                                float s_in) {
  auto bad = [&](std::string_view field, std::string_view msg) { return Bad(m, index, field, msg); };
  const int64_t out = op.output_channels();
  const WeightQuant& wq = op.weight_quant();
  if (wq.dtype() != INT8 && wq.dtype() != UINT8) return bad("weight_quant.dtype", "must be INT8 or UINT8");
  if (wq.bits() < 2 || wq.bits() > 8) {
    return bad("weight_quant.bits", absl::StrCat(wq.bits(), " is outside [2, 8]"));
  }
  if (wq.scale_size() != 1 && wq.scale_size() != out) {
    return bad("weight_quant.scale", absl::StrCat(wq.scale_size(), " values; expected 1 (per-tensor) or ",
                                                  out, " (per-channel, output_channels)"));
  }
  if (wq.zero_point_size() != wq.scale_size()) {
    return bad("weight_quant.zero_point",
               absl::StrCat(wq.zero_point_size(), " values; expected ", wq.scale_size(), " (as many as scales)"));
  }
  const int32_t qmin = wq.dtype() == INT8 ? -(1 << (wq.bits() - 1)) : 0;
  const int32_t qmax = wq.dtype() == INT8 ? (1 << (wq.bits() - 1)) - 1 : (1 << wq.bits()) - 1;
  for (int i = 0; i < wq.scale_size(); ++i) {
    if (!GoodScale(wq.scale(i))) {
      return bad(absl::StrCat("weight_quant.scale[", i, "]"),
                 absl::StrCat(wq.scale(i), " is not a finite positive number"));
    }
    if (wq.zero_point(i) < qmin || wq.zero_point(i) > qmax) {
      return bad(absl::StrCat("weight_quant.zero_point[", i, "]"),
                 absl::StrCat(wq.zero_point(i), " is outside the ", wq.bits(), "-bit ", DTypeName(wq.dtype()),
                              " range [", qmin, ", ", qmax, "]"));
    }
  }
  const int64_t expected_bytes = out * fan_in;
  if (static_cast<int64_t>(op.weights().size()) != expected_bytes) {
    return bad("weights", absl::StrCat(op.weights().size(), " bytes; expected ", expected_bytes,
                                       " (output_channels ", out, " x ", fan_in, " per channel)"));
  }
  for (int64_t i = 0; i < expected_bytes; ++i) {
    const uint8_t byte = static_cast<uint8_t>(op.weights()[i]);
    const int32_t v = wq.dtype() == INT8 ? static_cast<int8_t>(byte) : byte;
    if (v < qmin || v > qmax) {
      return bad(absl::StrCat("weights[", i, "]"),
                 absl::StrCat(v, " is outside the ", wq.bits(), "-bit ", DTypeName(wq.dtype()), " range [",
                              qmin, ", ", qmax, "]"));
    }
  }
  if (op.bias_size() != 0 && op.bias_size() != out) {
    return bad("bias", absl::StrCat(op.bias_size(), " values; expected ", out, " (output_channels) or none"));
  }
  if (op.float_weights_size() != 0 && op.float_weights_size() != expected_bytes) {
    return bad("float_weights", absl::StrCat(op.float_weights_size(), " values; expected ", expected_bytes, " or none"));
  }
  if (op.float_bias_size() != 0 && op.float_bias_size() != out) {
    return bad("float_bias", absl::StrCat(op.float_bias_size(), " values; expected ", out, " or none"));
  }
  if (op.float_bias_size() != 0 && op.float_weights_size() == 0) {
    return bad("float_bias", "present without float_weights");
  }
  const Requantization& rq = op.requant();
  if (rq.multiplier_size() != out || rq.shift_size() != out) {
    return bad("requant", absl::StrCat(rq.multiplier_size(), " multipliers and ", rq.shift_size(),
                                       " shifts; expected ", out, " each (one per output channel; "
                                       "ComputeRequantization fills them)"));
  }
  const float s_out = m.layers(index).output().scale();
  for (int o = 0; o < out; ++o) {
    int32_t mult;
    int shift;
    if (!ExpectedRequant(s_in, wq, s_out, o, &mult, &shift)) {
      return bad(absl::StrCat("requant[", o, "]"), "s_in*s_w/s_out is not representable");
    }
    if (rq.multiplier(o) != mult || rq.shift(o) != shift) {
      return bad(absl::StrCat("requant[", o, "]"),
                 absl::StrCat("multiplier ", rq.multiplier(o), " shift ", rq.shift(o),
                              " differ from QuantizeMultiplier(s_in*s_w/s_out = ",
                              s_in * static_cast<double>(WeightScale(wq, o)) / s_out, ") = ", mult, " shift ",
                              shift, " (stale or from another model)"));
    }
  }
  return absl::OkStatus();
}

template <typename Pads>
absl::Status CheckWindow(const QuantizedModel& m, int index, const Pads& p, const Shape& in,
                         Shape* out_hw) {
  auto bad = [&](std::string_view field, std::string_view msg) { return Bad(m, index, field, msg); };
  if (in.size() != 3) {
    return bad("input", absl::StrCat("needs an [H, W, C] input, got ", ShapeStr(in), " (after a flatten?)"));
  }
  if (p.kernel_h() <= 0 || p.kernel_w() <= 0) return bad("kernel_h/kernel_w", "must be positive");
  if (p.stride_h() <= 0 || p.stride_w() <= 0) return bad("stride_h/stride_w", "must be positive");
  if (p.pad_top() < 0 || p.pad_bottom() < 0 || p.pad_left() < 0 || p.pad_right() < 0) {
    return bad("pad_*", "must be >= 0");
  }
  if (p.pad_top() >= p.kernel_h() || p.pad_bottom() >= p.kernel_h() || p.pad_left() >= p.kernel_w() ||
      p.pad_right() >= p.kernel_w()) {
    return bad("pad_*", "padding must be smaller than the kernel");
  }
  const int64_t ph = in[0] + p.pad_top() + p.pad_bottom();
  const int64_t pw = in[1] + p.pad_left() + p.pad_right();
  if (ph < p.kernel_h() || pw < p.kernel_w()) {
    return bad("kernel_h/kernel_w", absl::StrCat("kernel ", p.kernel_h(), "x", p.kernel_w(),
                                                 " is larger than the padded input ", ph, "x", pw));
  }
  *out_hw = {(ph - p.kernel_h()) / p.stride_h() + 1, (pw - p.kernel_w()) / p.stride_w() + 1};
  return absl::OkStatus();
}

// Validates layer `index` given its input shape; sets its output shape.
absl::Status CheckLayer(const QuantizedModel& m, int index, const Shape& in, float s_in, int32_t zp_in,
                        Shape* out) {
  const Layer& layer = m.layers(index);
  const DType dtype = m.input().dtype();
  auto bad = [&](std::string_view field, std::string_view msg) { return Bad(m, index, field, msg); };
  RETURN_IF_ERROR(CheckTensorQuant(layer.output(), dtype, "output",
                                   [&](std::string f, std::string msg) { return bad(f, msg); }));
  if (layer.output_min() > layer.output_max()) {
    return bad("output_min/output_max", absl::StrCat("empty clamp [", layer.output_min(), ", ",
                                                     layer.output_max(), "]"));
  }
  if (layer.output_min() < DTypeMin(dtype) || layer.output_max() > DTypeMax(dtype)) {
    return bad("output_min/output_max",
               absl::StrCat("clamp [", layer.output_min(), ", ", layer.output_max(), "] exceeds the ",
                            DTypeName(dtype), " range"));
  }
  switch (layer.op_case()) {
    case Layer::kFullyConnected: {
      const FullyConnected& fc = layer.fully_connected();
      if (in.size() != 1) {
        return bad("input", absl::StrCat("fully_connected needs a flat input, got ", ShapeStr(in),
                                         " (add a flatten layer)"));
      }
      if (fc.input_channels() != in[0]) {
        return bad("input_channels", absl::StrCat(fc.input_channels(), " but the input has ", in[0], " features"));
      }
      if (fc.output_channels() <= 0) return bad("output_channels", "must be positive");
      RETURN_IF_ERROR(CheckWeightedLayer(m, index, fc, fc.input_channels(), s_in));
      *out = {fc.output_channels()};
      return absl::OkStatus();
    }
    case Layer::kConv2D: {
      const Conv2D& c = layer.conv2d();
      Shape hw;
      RETURN_IF_ERROR(CheckWindow(m, index, c, in, &hw));
      if (c.input_channels() != in[2]) {
        return bad("input_channels", absl::StrCat(c.input_channels(), " but the input has ", in[2], " channels"));
      }
      if (c.output_channels() <= 0) return bad("output_channels", "must be positive");
      if (c.groups() <= 0 || c.input_channels() % c.groups() != 0 || c.output_channels() % c.groups() != 0) {
        return bad("groups", absl::StrCat(c.groups(), " must be positive and divide input_channels ",
                                          c.input_channels(), " and output_channels ", c.output_channels()));
      }
      RETURN_IF_ERROR(CheckWeightedLayer(
          m, index, c, int64_t{c.kernel_h()} * c.kernel_w() * (c.input_channels() / c.groups()), s_in));
      *out = {hw[0], hw[1], c.output_channels()};
      return absl::OkStatus();
    }
    case Layer::kMaxPool2D: {
      Shape hw;
      RETURN_IF_ERROR(CheckWindow(m, index, layer.max_pool2d(), in, &hw));
      if (layer.output().scale() != s_in || layer.output().zero_point() != zp_in) {
        return bad("output", "max_pool2d must keep its input's scale and zero point");
      }
      *out = {hw[0], hw[1], in[2]};
      return absl::OkStatus();
    }
    case Layer::kFlatten: {
      if (layer.output().scale() != s_in || layer.output().zero_point() != zp_in) {
        return bad("output", "flatten must keep its input's scale and zero point");
      }
      int64_t n = 1;
      for (int64_t d : in) n *= d;
      *out = {n};
      return absl::OkStatus();
    }
    case Layer::OP_NOT_SET:
      break;
  }
  return bad("op", "no operation set (fully_connected, conv2d, max_pool2d or flatten)");
}

}  // namespace

std::string DTypeName(DType dtype) {
  switch (dtype) {
    case INT8: return "int8";
    case UINT8: return "uint8";
    default: return "unspecified";
  }
}

int32_t DTypeMin(DType dtype) { return dtype == UINT8 ? 0 : -128; }
int32_t DTypeMax(DType dtype) { return dtype == UINT8 ? 255 : 127; }

std::string LayerKind(const Layer& layer) {
  switch (layer.op_case()) {
    case Layer::kFullyConnected: return "fully_connected";
    case Layer::kConv2D: return "conv2d";
    case Layer::kMaxPool2D: return "max_pool2d";
    case Layer::kFlatten: return "flatten";
    default: return "(no op)";
  }
}

std::string LayerLabel(const QuantizedModel& model, int index) {
  if (index < 0 || index >= model.layers_size()) return absl::StrCat("layer ", index);
  const Layer& layer = model.layers(index);
  return absl::StrCat("layer ", index, " '", layer.name(), "' (", LayerKind(layer), ")");
}

bool IsPerChannel(const WeightQuant& wq) { return wq.scale_size() > 1; }
int32_t WeightZeroPoint(const WeightQuant& wq, int o) {
  return wq.zero_point_size() == 1 ? wq.zero_point(0) : wq.zero_point(o);
}
float WeightScale(const WeightQuant& wq, int o) { return wq.scale_size() == 1 ? wq.scale(0) : wq.scale(o); }

std::vector<int32_t> WeightValues(const Layer& layer) {
  const std::string* bytes = nullptr;
  DType dtype = INT8;
  if (layer.has_fully_connected()) {
    bytes = &layer.fully_connected().weights();
    dtype = layer.fully_connected().weight_quant().dtype();
  } else if (layer.has_conv2d()) {
    bytes = &layer.conv2d().weights();
    dtype = layer.conv2d().weight_quant().dtype();
  } else {
    return {};
  }
  std::vector<int32_t> v(bytes->size());
  for (size_t i = 0; i < v.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>((*bytes)[i]);
    v[i] = dtype == UINT8 ? b : static_cast<int8_t>(b);
  }
  return v;
}

absl::Status ValidateQuantizedModel(const QuantizedModel& model) {
  if (model.format_version() != kQuantizedModelFormatVersion) {
    return BadModel("format_version", absl::StrCat(model.format_version(), "; this build reads version ",
                                                   kQuantizedModelFormatVersion));
  }
  if (model.input_shape_size() != 1 && model.input_shape_size() != 3) {
    return BadModel("input_shape", absl::StrCat(model.input_shape_size(), " dims; expected [H, W, C] or [C]"));
  }
  for (int d : model.input_shape()) {
    if (d <= 0) return BadModel("input_shape", "dimensions must be positive");
  }
  const DType dtype = model.input().dtype();
  RETURN_IF_ERROR(CheckTensorQuant(model.input(), dtype == DTYPE_UNSPECIFIED ? INT8 : dtype, "input",
                                   [](std::string f, std::string msg) { return BadModel(f, msg); }));
  if (model.layers_size() == 0) return BadModel("layers", "the model has no layers");
  std::set<std::string> names;
  Shape shape(model.input_shape().begin(), model.input_shape().end());
  float s = model.input().scale();
  int32_t zp = model.input().zero_point();
  for (int i = 0; i < model.layers_size(); ++i) {
    const Layer& layer = model.layers(i);
    if (layer.name().empty()) return Bad(model, i, "name", "empty");
    if (!names.insert(layer.name()).second) return Bad(model, i, "name", "used by an earlier layer");
    Shape out;
    RETURN_IF_ERROR(CheckLayer(model, i, shape, s, zp, &out));
    shape = out;
    s = layer.output().scale();
    zp = layer.output().zero_point();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Shape>> InferShapes(const QuantizedModel& model) {
  std::vector<Shape> shapes;
  shapes.emplace_back(model.input_shape().begin(), model.input_shape().end());
  float s = model.input().scale();
  int32_t zp = model.input().zero_point();
  for (int i = 0; i < model.layers_size(); ++i) {
    Shape out;
    RETURN_IF_ERROR(CheckLayer(model, i, shapes.back(), s, zp, &out));
    shapes.push_back(out);
    s = model.layers(i).output().scale();
    zp = model.layers(i).output().zero_point();
  }
  return shapes;
}

absl::Status ComputeRequantization(QuantizedModel* model) {
  float s_in = model->input().scale();
  if (!GoodScale(s_in)) {
    return BadModel("input.scale", absl::StrCat(s_in, " is not a finite positive number (degenerate calibration?)"));
  }
  for (int i = 0; i < model->layers_size(); ++i) {
    Layer* layer = model->mutable_layers(i);
    const float s_out = layer->output().scale();
    if (!GoodScale(s_out)) {
      return Bad(*model, i, "output.scale",
                 absl::StrCat(s_out, " is not a finite positive number (degenerate calibration batch?)"));
    }
    auto fill = [&](auto* op) -> absl::Status {
      const WeightQuant& wq = op->weight_quant();
      Requantization* rq = op->mutable_requant();
      rq->Clear();
      for (int o = 0; o < op->output_channels(); ++o) {
        if (wq.scale_size() == 0 || !GoodScale(WeightScale(wq, wq.scale_size() == 1 ? 0 : o))) {
          return Bad(*model, i, absl::StrCat("weight_quant.scale[", o, "]"),
                     "is missing, 0, negative or not finite (an all-zero weight channel?)");
        }
        int32_t mult;
        int shift;
        if (!ExpectedRequant(s_in, wq, s_out, o, &mult, &shift)) {
          return Bad(*model, i, absl::StrCat("requant[", o, "]"), "s_in*s_w/s_out is not representable");
        }
        rq->add_multiplier(mult);
        rq->add_shift(shift);
      }
      return absl::OkStatus();
    };
    if (layer->has_fully_connected()) RETURN_IF_ERROR(fill(layer->mutable_fully_connected()));
    if (layer->has_conv2d()) RETURN_IF_ERROR(fill(layer->mutable_conv2d()));
    s_in = s_out;
  }
  return absl::OkStatus();
}

int64_t IntegerModelBytes(const QuantizedModel& model) {
  QuantizedModel copy = model;
  for (Layer& layer : *copy.mutable_layers()) {
    if (layer.has_fully_connected()) {
      layer.mutable_fully_connected()->clear_float_weights();
      layer.mutable_fully_connected()->clear_float_bias();
    }
    if (layer.has_conv2d()) {
      layer.mutable_conv2d()->clear_float_weights();
      layer.mutable_conv2d()->clear_float_bias();
    }
  }
  return static_cast<int64_t>(copy.ByteSizeLong());
}

std::string SerializeQuantizedModel(const QuantizedModel& model) {
  const std::string payload = model.SerializeAsString();
  std::string out(kMagic, sizeof(kMagic));
  auto put = [&out](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put(kQuantizedModelFormatVersion, 4);
  put(payload.size(), 8);
  out += payload;
  put(crc32(0L, reinterpret_cast<const Bytef*>(payload.data()), payload.size()), 4);
  return out;
}

absl::StatusOr<QuantizedModel> ParseQuantizedModel(std::string_view bytes, std::string_view origin) {
  const std::string where = absl::StrCat("QuantizedModel file ", std::string(origin), ": ");
  if (bytes.size() < kHeaderBytes || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, bytes.size() < sizeof(kMagic) ? "too short to be" : "does not start like",
                     " a QuantizedModel file (magic \"QLQMODEL\")"));
  }
  auto get = [&bytes](size_t at, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[at + i])) << (8 * i);
    return v;
  };
  const uint64_t version = get(8, 4);
  if (version != kQuantizedModelFormatVersion) {
    return absl::InvalidArgumentError(absl::StrCat(where, "format version ", version, "; this build reads ",
                                                   kQuantizedModelFormatVersion));
  }
  const uint64_t size = get(12, 8);
  const uint64_t expected = kHeaderBytes + size + kTrailerBytes;
  if (bytes.size() < expected) {
    return absl::InvalidArgumentError(absl::StrCat(where, "truncated: ", bytes.size(), " bytes, the header announces ",
                                                   expected));
  }
  if (bytes.size() > expected) {
    return absl::InvalidArgumentError(absl::StrCat(where, bytes.size() - expected,
                                                   " unexpected bytes after the model"));
  }
  const std::string_view payload = bytes.substr(kHeaderBytes, size);
  const uint32_t crc = crc32(0L, reinterpret_cast<const Bytef*>(payload.data()), payload.size());
  if (crc != get(kHeaderBytes + size, 4)) {
    return absl::InvalidArgumentError(absl::StrCat(where, "checksum mismatch: the file is corrupted"));
  }
  QuantizedModel model;
  if (!model.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError(absl::StrCat(where, "the payload is not a QuantizedModel protobuf"));
  }
  absl::Status s = ValidateQuantizedModel(model);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat(where, s.message()));
  return model;
}

absl::Status SaveQuantizedModel(const QuantizedModel& model, const std::string& path) {
  RETURN_IF_ERROR(ValidateQuantizedModel(model));
  const std::string bytes = SerializeQuantizedModel(model);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot write QuantizedModel file ", path));
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("error while writing QuantizedModel file ", path));
  return absl::OkStatus();
}

absl::StatusOr<QuantizedModel> LoadQuantizedModel(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError(absl::StrCat("cannot open QuantizedModel file ", path));
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return ParseQuantizedModel(bytes, path);
}

absl::Status CheckModelMatches(const QuantizedModel& model, std::string_view source_model,
                               const Shape& input_shape, int64_t num_outputs) {
  if (model.source_model() != source_model) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizedModel was converted from model '", model.source_model(),
                                                   "', not '", std::string(source_model), "'"));
  }
  const Shape got(model.input_shape().begin(), model.input_shape().end());
  if (got != input_shape) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizedModel input_shape ", ShapeStr(got), " differs from the expected ",
                                                   ShapeStr(input_shape)));
  }
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(model));
  int64_t n = 1;
  for (int64_t d : shapes.back()) n *= d;
  if (n != num_outputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizedModel has ", n, " outputs, expected ", num_outputs));
  }
  return absl::OkStatus();
}

}  // namespace quant::backends
