#include "quant/onnx/onnx_ops.h"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <limits>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace onnx_io {
namespace {

absl::Status Bad(const std::string& what) { return absl::InvalidArgumentError(what); }
absl::Status Unimpl(const std::string& what) { return absl::UnimplementedError(what); }

absl::Status NeedInputs(const OpCall& c, int n) {
  for (int k = 0; k < n; ++k) {
    if (c.input(k) == nullptr) return Bad(absl::StrCat("input ", k, " is required"));
  }
  return absl::OkStatus();
}

absl::Status NeedFloat(const OnnxTensor& t, const char* which) {
  if (!t.is_float()) return Unimpl(absl::StrCat(which, " must be float, got ", DTypeName(static_cast<int>(t.dtype))));
  return absl::OkStatus();
}

int64_t NormAxis(int64_t axis, int64_t rank) { return axis < 0 ? axis + rank : axis; }

// Round half to even, as ONNX's QuantizeLinear and numpy's rint (the default FE_TONEAREST mode).
double RoundHalfEven(double v) { return std::nearbyint(v); }

int64_t Saturate(double v, DType t) {
  return static_cast<int64_t>(std::min<double>(std::max<double>(v, static_cast<double>(MinOf(t))), MaxOf(t)));
}

// ---------------------------------------------------------------- broadcasting

absl::Status BroadcastShape(const std::vector<int64_t>& a, const std::vector<int64_t>& b, std::vector<int64_t>* out) {
  const size_t r = std::max(a.size(), b.size());
  out->assign(r, 1);
  for (size_t k = 0; k < r; ++k) {
    const int64_t da = k < r - a.size() ? 1 : a[k - (r - a.size())];
    const int64_t db = k < r - b.size() ? 1 : b[k - (r - b.size())];
    if (da != db && da != 1 && db != 1) {
      return Bad(
          absl::StrCat("shapes [", absl::StrJoin(a, ", "), "] and [", absl::StrJoin(b, ", "), "] do not broadcast"));
    }
    (*out)[k] = da == 1 ? db : da;
  }
  return absl::OkStatus();
}

// Element strides of `in` read at the coordinates of `out` (0 on broadcast dims).
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  std::vector<int64_t> s(out.size(), 0);
  int64_t stride = 1;
  for (int k = static_cast<int>(in.size()) - 1; k >= 0; --k) {
    const size_t o = k + (out.size() - in.size());
    s[o] = in[k] == 1 ? 0 : stride;
    stride *= in[k];
  }
  return s;
}

// Offset into a tensor with `strides` of the flat output index `k` of shape `out`.
int64_t OffsetOf(int64_t k, const std::vector<int64_t>& out, const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (int d = static_cast<int>(out.size()) - 1; d >= 0; --d) {
    off += (k % out[d]) * strides[d];
    k /= out[d];
  }
  return off;
}

// ---------------------------------------------------------------- elementwise

std::string NoCheck(const onnx::NodeProto&, int) { return ""; }

template <int kOp>  // 0 Add, 1 Sub, 2 Mul, 3 Div
absl::Status RunBinary(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  const OnnxTensor& a = *c.input(0);
  const OnnxTensor& b = *c.input(1);
  if (a.dtype != b.dtype) return Bad("both inputs must have the same element type");
  if (a.dtype == DType::kBool) return Unimpl("bool arithmetic is not implemented");
  if (kOp == 3 && !a.is_float()) {
    for (int64_t v : b.i) {
      if (v == 0) return Bad("integer division by zero");
    }
  }
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(BroadcastShape(a.shape, b.shape, &shape));
  OnnxTensor y = OnnxTensor::Zeros(a.dtype, shape);
  const std::vector<int64_t> sa = BroadcastStrides(a.shape, shape), sb = BroadcastStrides(b.shape, shape);
  for (int64_t k = 0; k < y.numel(); ++k) {
    const int64_t ia = OffsetOf(k, shape, sa), ib = OffsetOf(k, shape, sb);
    if (a.is_float()) {
      const float x = a.f[ia], z = b.f[ib];
      y.f[k] = kOp == 0 ? x + z : kOp == 1 ? x - z : kOp == 2 ? x * z : x / z;
    } else {
      const int64_t x = a.i[ia], z = b.i[ib];
      // Wrap-around as the fixed-width type does.
      // Integer Div truncates toward zero.
      int64_t v = kOp == 0 ? x + z : kOp == 1 ? x - z : kOp == 2 ? x * z : x / z;
      if (a.dtype == DType::kInt32) v = static_cast<int32_t>(static_cast<uint32_t>(v));
      if (a.dtype == DType::kInt8) v = static_cast<int8_t>(static_cast<uint8_t>(v));
      if (a.dtype == DType::kUint8) v = static_cast<uint8_t>(v);
      y.i[k] = v;
    }
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunRelu(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  OnnxTensor y = *c.input(0);
  for (float& v : y.f) v = v > 0.0f ? v : 0.0f;
  for (int64_t& v : y.i) v = std::max<int64_t>(v, 0);
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunClip(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  OnnxTensor y = *c.input(0);
  double lo = -std::numeric_limits<double>::infinity(), hi = std::numeric_limits<double>::infinity();
  if (c.opset < 11) {
    lo = FloatAttr(*c.node, "min", -std::numeric_limits<float>::max());
    hi = FloatAttr(*c.node, "max", std::numeric_limits<float>::max());
  } else {
    for (int k = 1; k <= 2; ++k) {
      const OnnxTensor* b = c.input(k);
      if (b == nullptr) continue;
      if (b->numel() != 1 || b->dtype != y.dtype)
        return Bad(absl::StrCat("input ", k, " must be a scalar of the input's type"));
      (k == 1 ? lo : hi) = b->at(0);
    }
  }
  for (float& v : y.f) v = static_cast<float>(std::min<double>(std::max<double>(v, lo), hi));
  for (int64_t& v : y.i) v = static_cast<int64_t>(std::min<double>(std::max<double>(v, lo), hi));
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunHardSwish(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  RETURN_IF_ERROR(NeedFloat(*c.input(0), "X"));
  OnnxTensor y = *c.input(0);
  const float alpha = 1.0f / 6.0f, beta = 0.5f;
  for (float& v : y.f) v = v * std::max(0.0f, std::min(1.0f, alpha * v + beta));
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// Sigmoid 1 / (1 + exp(-x)) and Tanh, in double, rounded once.
template <bool kSigmoid>
absl::Status RunSigmoidTanh(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  RETURN_IF_ERROR(NeedFloat(*c.input(0), "X"));
  OnnxTensor y = *c.input(0);
  for (float& v : y.f)
    v = static_cast<float>(kSigmoid ? 1.0 / (1.0 + std::exp(-static_cast<double>(v)))
                                    : std::tanh(static_cast<double>(v)));
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunIdentity(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  out->push_back(*c.input(0));
  return absl::OkStatus();
}

std::string CheckDropout(const onnx::NodeProto& n, int opset) {
  if (opset >= 12 && n.input_size() >= 3 && !n.input(2).empty()) {
    return "input training_mode (training-mode dropout draws random masks)";
  }
  if (opset < 12 && IntAttr(n, "is_test", 1) == 0) return "attribute is_test = 0 (training-mode dropout)";
  return "";
}

// Inference: Y = X and, when asked, a mask of ones (bool from opset 10, X's type before).
absl::Status RunDropout(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  out->push_back(*c.input(0));
  if (c.num_outputs > 1) {
    OnnxTensor mask = OnnxTensor::Zeros(c.opset >= 10 ? DType::kBool : c.input(0)->dtype, c.input(0)->shape);
    for (float& v : mask.f) v = 1.0f;
    for (int64_t& v : mask.i) v = 1;
    out->push_back(std::move(mask));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- shape ops

absl::Status RunFlatten(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  OnnxTensor y = *c.input(0);
  const int64_t rank = static_cast<int64_t>(y.shape.size());
  const int64_t axis = NormAxis(IntAttr(*c.node, "axis", 1), rank);
  if (axis < 0 || axis > rank)
    return Bad(absl::StrCat("axis ", IntAttr(*c.node, "axis", 1), " out of range for rank ", rank));
  int64_t outer = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= y.shape[k];
  y.shape = {outer, outer == 0 ? 0 : y.numel() / std::max<int64_t>(outer, 1)};
  if (outer == 0) y.shape[1] = 0;
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunReshape(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  const OnnxTensor& s = *c.input(1);
  if (s.dtype != DType::kInt64 || s.shape.size() != 1) return Bad("shape must be a 1-D int64 tensor");
  OnnxTensor y = *c.input(0);
  const bool allowzero = IntAttr(*c.node, "allowzero", 0) != 0;
  std::vector<int64_t> shape(s.i.begin(), s.i.end());
  int infer = -1;
  int64_t known = 1;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 0 && !allowzero) {
      if (k >= y.shape.size())
        return Bad(absl::StrCat("shape[", k, "] = 0 copies a dimension the input does not have"));
      shape[k] = y.shape[k];
    }
    if (shape[k] == -1) {
      if (infer >= 0) return Bad("shape has more than one -1");
      infer = static_cast<int>(k);
    } else if (shape[k] < 0) {
      return Bad(absl::StrCat("shape[", k, "] = ", shape[k]));
    } else {
      known *= shape[k];
    }
  }
  if (infer >= 0) {
    if (known == 0 || y.numel() % known != 0) return Bad("cannot infer the -1 dimension");
    shape[infer] = y.numel() / known;
  }
  if (NumElements(shape) != y.numel()) {
    return Bad(absl::StrCat("cannot reshape ", y.ShapeString(), " (", y.numel(), " elements) to [",
                            absl::StrJoin(shape, ", "), "]"));
  }
  y.shape = shape;
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunConcat(const OpCall& c, std::vector<OnnxTensor>* out) {
  if (c.inputs.empty() || c.input(0) == nullptr) return Bad("needs at least one input");
  const OnnxTensor& first = *c.input(0);
  const int64_t rank = static_cast<int64_t>(first.shape.size());
  const int64_t axis = NormAxis(IntAttr(*c.node, "axis", 0), rank);
  if (axis < 0 || axis >= rank) return Bad(absl::StrCat("axis out of range for rank ", rank));
  std::vector<int64_t> shape = first.shape;
  shape[axis] = 0;
  for (const OnnxTensor* t : c.inputs) {
    if (t == nullptr || t->dtype != first.dtype || static_cast<int64_t>(t->shape.size()) != rank) {
      return Bad("every input needs the first one's type and rank");
    }
    for (int64_t d = 0; d < rank; ++d) {
      if (d != axis && t->shape[d] != first.shape[d]) return Bad(absl::StrCat("inputs differ in dimension ", d));
    }
    shape[axis] += t->shape[axis];
  }
  OnnxTensor y = OnnxTensor::Zeros(first.dtype, shape);
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= shape[d];
  for (int64_t d = axis + 1; d < rank; ++d) inner *= shape[d];
  int64_t at = 0;
  for (const OnnxTensor* t : c.inputs) {
    const int64_t chunk = t->shape[axis] * inner;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t k = 0; k < chunk; ++k) {
        const int64_t dst = o * shape[axis] * inner + at + k, src = o * chunk + k;
        if (y.is_float()) {
          y.f[dst] = t->f[src];
        } else {
          y.i[dst] = t->i[src];
        }
      }
    }
    at += chunk;
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

std::string CheckConstant(const onnx::NodeProto& n, int) {
  if (n.attribute_size() != 1) return "exactly one value attribute";
  return "";
}

absl::Status RunConstant(const OpCall& c, std::vector<OnnxTensor>* out) {
  const onnx::AttributeProto& a = c.node->attribute(0);
  OnnxTensor t;
  if (a.name() == "value") {
    absl::StatusOr<OnnxTensor> v = FromProto(a.t(), "attribute value");
    if (!v.ok()) return v.status();
    t = std::move(v).value();
  } else if (a.name() == "value_float") {
    t = OnnxTensor::Zeros(DType::kFloat, {});
    t.f[0] = a.f();
  } else if (a.name() == "value_floats") {
    t = OnnxTensor::Zeros(DType::kFloat, {a.floats_size()});
    for (int k = 0; k < a.floats_size(); ++k) t.f[k] = a.floats(k);
  } else if (a.name() == "value_int") {
    t = OnnxTensor::Zeros(DType::kInt64, {});
    t.i[0] = a.i();
  } else if (a.name() == "value_ints") {
    t = OnnxTensor::Zeros(DType::kInt64, {a.ints_size()});
    for (int k = 0; k < a.ints_size(); ++k) t.i[k] = a.ints(k);
  } else {
    return Unimpl(absl::StrCat("attribute ", a.name()));
  }
  out->push_back(std::move(t));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- windows (conv, pools)

// Up to 3 spatial dims; fewer are padded with size-1 dims that change nothing.
struct Window {
  int rank = 0;
  int64_t in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, stride[3] = {1, 1, 1}, dil[3] = {1, 1, 1};
  int64_t pb[3] = {0, 0, 0}, pe[3] = {0, 0, 0}, out[3] = {1, 1, 1};
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t k_size() const { return k[0] * k[1] * k[2]; }
};

std::string CheckWindowAttrs(const onnx::NodeProto& n) {
  const std::string pad = StringAttr(n, "auto_pad", "NOTSET");
  if (pad != "NOTSET" && pad != "VALID" && pad != "SAME_UPPER" && pad != "SAME_LOWER") {
    return absl::StrCat("attribute auto_pad = ", pad);
  }
  const std::vector<int64_t> ks = IntsAttr(n, "kernel_shape");
  if (ks.size() > 3) return absl::StrCat("attribute kernel_shape of rank ", ks.size(), " (at most 3 spatial dims)");
  return "";
}

// `x_shape` is [N, C, spatial...]; `kernel` the spatial kernel size.
absl::Status MakeWindow(const onnx::NodeProto& n, const std::vector<int64_t>& x_shape,
                        const std::vector<int64_t>& kernel, bool ceil_mode, Window* w) {
  const int r = static_cast<int>(x_shape.size()) - 2;
  if (r < 1 || r > 3)
    return Unimpl(absl::StrCat("input of rank ", x_shape.size(), " (1 to 3 spatial dims are implemented)"));
  if (static_cast<int>(kernel.size()) != r)
    return Bad(absl::StrCat("kernel rank ", kernel.size(), " does not match the input's ", r, " spatial dims"));
  w->rank = r;
  const std::vector<int64_t> strides = IntsAttr(n, "strides"), dil = IntsAttr(n, "dilations"),
                             pads = IntsAttr(n, "pads");
  if ((!strides.empty() && static_cast<int>(strides.size()) != r) ||
      (!dil.empty() && static_cast<int>(dil.size()) != r) ||
      (!pads.empty() && static_cast<int>(pads.size()) != 2 * r)) {
    return Bad("strides, dilations and pads must match the spatial rank");
  }
  const std::string auto_pad = StringAttr(n, "auto_pad", "NOTSET");
  for (int d = 0; d < r; ++d) {
    w->in[d] = x_shape[2 + d];
    w->k[d] = kernel[d];
    w->stride[d] = strides.empty() ? 1 : strides[d];
    w->dil[d] = dil.empty() ? 1 : dil[d];
    if (w->stride[d] < 1 || w->dil[d] < 1 || w->k[d] < 1) return Bad("kernel, strides and dilations must be positive");
    const int64_t span = w->dil[d] * (w->k[d] - 1) + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      w->out[d] = (w->in[d] + w->stride[d] - 1) / w->stride[d];
      const int64_t total = std::max<int64_t>(0, (w->out[d] - 1) * w->stride[d] + span - w->in[d]);
      w->pb[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      w->pe[d] = total - w->pb[d];
      continue;
    }
    if (auto_pad == "NOTSET" && !pads.empty()) {
      w->pb[d] = pads[d];
      w->pe[d] = pads[r + d];
    }
    const int64_t room = w->in[d] + w->pb[d] + w->pe[d] - span;
    if (room < 0)
      return Bad(absl::StrCat("the kernel (span ", span, ") is larger than the padded input (",
                              w->in[d] + w->pb[d] + w->pe[d], ")"));
    w->out[d] = (ceil_mode ? (room + w->stride[d] - 1) / w->stride[d] : room / w->stride[d]) + 1;
  }
  return absl::OkStatus();
}

std::vector<int64_t> OutShape(int64_t n, int64_t c, const Window& w) {
  std::vector<int64_t> s = {n, c};
  for (int d = 0; d < w.rank; ++d) s.push_back(w.out[d]);
  return s;
}

std::vector<int64_t> Spatial(const std::vector<int64_t>& shape) {
  return std::vector<int64_t>(shape.begin() + 2, shape.end());
}

// Per-output-channel (or per-tensor) value of a scale or zero point tensor.
absl::Status PerChannel(const OnnxTensor* t, int64_t channels, const char* what, std::vector<double>* v, double dflt) {
  v->assign(channels, dflt);
  if (t == nullptr) return absl::OkStatus();
  if (t->numel() == 1) {
    v->assign(channels, t->at(0));
  } else if (t->shape.size() == 1 && t->numel() == channels) {
    for (int64_t k = 0; k < channels; ++k) (*v)[k] = t->at(k);
  } else {
    return Bad(
        absl::StrCat(what, " must be a scalar or hold one value per channel (", channels, "), got ", t->ShapeString()));
  }
  return absl::OkStatus();
}

// The convolution of X [N, C, ...] with W [M, C/group, k...]: float (double
// accumulation) or integer (x - x_zp)(w - w_zp[m]) summed exactly. Writes
// one accumulator per output element into `acc`.
absl::Status Convolve(const OpCall& c, const OnnxTensor& x, const OnnxTensor& w, const std::vector<double>& x_zp,
                      const std::vector<double>& w_zp, std::vector<double>* acc, std::vector<int64_t>* shape) {
  if (x.shape.size() < 3 || w.shape.size() != x.shape.size()) return Bad("X and W need the same rank, at least 3");
  const int64_t group = IntAttr(*c.node, "group", 1);
  const int64_t n = x.shape[0], ch = x.shape[1], m = w.shape[0];
  if (group < 1 || ch % group != 0 || m % group != 0 || w.shape[1] != ch / group) {
    return Bad(absl::StrCat("X has ", ch, " channels, W is ", w.ShapeString(), ", group ", group, ": they do not fit"));
  }
  std::vector<int64_t> kernel = IntsAttr(*c.node, "kernel_shape");
  if (kernel.empty()) kernel = Spatial(w.shape);
  if (kernel != Spatial(w.shape)) return Bad("kernel_shape differs from W's spatial shape");
  Window win;
  RETURN_IF_ERROR(MakeWindow(*c.node, x.shape, kernel, false, &win));
  *shape = OutShape(n, m, win);
  acc->assign(NumElements(*shape), 0.0);
  const int64_t cg = ch / group, mg = m / group;
  const bool integer = !x.is_float();
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t oc = 0; oc < m; ++oc) {
      const int64_t g = oc / mg;
      for (int64_t o0 = 0; o0 < win.out[0]; ++o0) {
        for (int64_t o1 = 0; o1 < win.out[1]; ++o1) {
          for (int64_t o2 = 0; o2 < win.out[2]; ++o2) {
            double sum = 0.0;
            int64_t isum = 0;
            for (int64_t ic = 0; ic < cg; ++ic) {
              const int64_t xc = g * cg + ic;
              const int64_t xbase = (b * ch + xc) * win.in_size();
              const int64_t wbase = (oc * cg + ic) * win.k_size();
              for (int64_t k0 = 0; k0 < win.k[0]; ++k0) {
                const int64_t i0 = o0 * win.stride[0] - win.pb[0] + k0 * win.dil[0];
                if (i0 < 0 || i0 >= win.in[0]) continue;
                for (int64_t k1 = 0; k1 < win.k[1]; ++k1) {
                  const int64_t i1 = o1 * win.stride[1] - win.pb[1] + k1 * win.dil[1];
                  if (i1 < 0 || i1 >= win.in[1]) continue;
                  for (int64_t k2 = 0; k2 < win.k[2]; ++k2) {
                    const int64_t i2 = o2 * win.stride[2] - win.pb[2] + k2 * win.dil[2];
                    if (i2 < 0 || i2 >= win.in[2]) continue;
                    const int64_t xi = xbase + (i0 * win.in[1] + i1) * win.in[2] + i2;
                    const int64_t wi = wbase + (k0 * win.k[1] + k1) * win.k[2] + k2;
                    if (integer) {
                      isum += (x.i[xi] - static_cast<int64_t>(x_zp[0])) * (w.i[wi] - static_cast<int64_t>(w_zp[oc]));
                    } else {
                      sum += static_cast<double>(x.f[xi]) * w.f[wi];
                    }
                  }
                }
              }
            }
            const int64_t oi = (((b * m + oc) * win.out[0] + o0) * win.out[1] + o1) * win.out[2] + o2;
            (*acc)[oi] = integer ? static_cast<double>(isum) : sum;
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

std::string CheckConv(const onnx::NodeProto& n, int) { return CheckWindowAttrs(n); }

absl::Status RunConv(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  const OnnxTensor& x = *c.input(0);
  const OnnxTensor& w = *c.input(1);
  RETURN_IF_ERROR(NeedFloat(x, "X"));
  RETURN_IF_ERROR(NeedFloat(w, "W"));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(Convolve(c, x, w, {0.0}, std::vector<double>(w.shape.empty() ? 0 : w.shape[0], 0.0), &acc, &shape));
  const OnnxTensor* bias = c.input(2);
  if (bias != nullptr && (bias->numel() != shape[1] || !bias->is_float()))
    return Bad("B must hold one float per output channel");
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, shape);
  const int64_t plane = NumElements(shape) / std::max<int64_t>(shape[0] * shape[1], 1);
  for (int64_t k = 0; k < y.numel(); ++k) {
    const int64_t oc = (k / plane) % shape[1];
    y.f[k] = static_cast<float>(acc[k] + (bias != nullptr ? bias->f[oc] : 0.0));
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status NeedInt8(const OnnxTensor* t, const char* what) {
  if (t != nullptr && t->dtype != DType::kInt8 && t->dtype != DType::kUint8) {
    return Unimpl(absl::StrCat(what, " must be int8 or uint8, got ", DTypeName(static_cast<int>(t->dtype))));
  }
  return absl::OkStatus();
}

// ConvInteger: Y(int32) = sum (x - x_zero_point)(w - w_zero_point[m]).
absl::Status RunConvInteger(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  RETURN_IF_ERROR(NeedInt8(c.input(0), "x"));
  RETURN_IF_ERROR(NeedInt8(c.input(1), "w"));
  std::vector<double> xzp, wzp;
  RETURN_IF_ERROR(PerChannel(c.input(2), 1, "x_zero_point", &xzp, 0.0));
  RETURN_IF_ERROR(
      PerChannel(c.input(3), c.input(1)->shape.empty() ? 0 : c.input(1)->shape[0], "w_zero_point", &wzp, 0.0));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(Convolve(c, *c.input(0), *c.input(1), xzp, wzp, &acc, &shape));
  OnnxTensor y = OnnxTensor::Zeros(DType::kInt32, shape);
  for (int64_t k = 0; k < y.numel(); ++k) y.i[k] = static_cast<int64_t>(acc[k]);
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// The requantization of QLinearConv and QLinearMatMul:
// y = saturate(round_half_even(acc * (s_a * s_b[c] / s_y)) + y_zp), the
// multiplier in double precision.
int64_t Requantize(double acc, double multiplier, double y_zp, DType t) {
  return Saturate(RoundHalfEven(acc * multiplier) + y_zp, t);
}

absl::Status Scalar(const OpCall& c, int k, const char* what, double* v) {
  const OnnxTensor* t = c.input(k);
  if (t == nullptr || t->numel() != 1) return Bad(absl::StrCat(what, " must be a scalar"));
  *v = t->at(0);
  return absl::OkStatus();
}

absl::Status RunQLinearConv(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 8));
  const OnnxTensor& x = *c.input(0);
  const OnnxTensor& w = *c.input(3);
  RETURN_IF_ERROR(NeedInt8(&x, "x"));
  RETURN_IF_ERROR(NeedInt8(&w, "w"));
  RETURN_IF_ERROR(NeedInt8(c.input(7), "y_zero_point"));
  const int64_t m = w.shape.empty() ? 0 : w.shape[0];
  double xs, xzp, ys, yzp;
  RETURN_IF_ERROR(Scalar(c, 1, "x_scale", &xs));
  RETURN_IF_ERROR(Scalar(c, 2, "x_zero_point", &xzp));
  RETURN_IF_ERROR(Scalar(c, 6, "y_scale", &ys));
  RETURN_IF_ERROR(Scalar(c, 7, "y_zero_point", &yzp));
  std::vector<double> ws, wzp;
  RETURN_IF_ERROR(PerChannel(c.input(4), m, "w_scale", &ws, 1.0));
  RETURN_IF_ERROR(PerChannel(c.input(5), m, "w_zero_point", &wzp, 0.0));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(Convolve(c, x, w, {xzp}, wzp, &acc, &shape));
  const OnnxTensor* bias = c.input(8);
  if (bias != nullptr && (bias->dtype != DType::kInt32 || bias->numel() != m))
    return Bad("B must hold one int32 per output channel");
  const DType yt = c.input(7)->dtype;
  OnnxTensor y = OnnxTensor::Zeros(yt, shape);
  const int64_t plane = NumElements(shape) / std::max<int64_t>(shape[0] * shape[1], 1);
  for (int64_t k = 0; k < y.numel(); ++k) {
    const int64_t oc = (k / plane) % m;
    const double a = acc[k] + (bias != nullptr ? static_cast<double>(bias->i[oc]) : 0.0);
    y.i[k] = Requantize(
        a, static_cast<double>(static_cast<float>(xs)) * static_cast<float>(ws[oc]) / static_cast<float>(ys), yzp, yt);
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- pools

std::string CheckMaxPool(const onnx::NodeProto& n, int) {
  const int64_t order = IntAttr(n, "storage_order", 0);
  if (order != 0 && order != 1) return absl::StrCat("attribute storage_order = ", order);
  return CheckWindowAttrs(n);
}

absl::Status RunMaxPool(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  if (x.dtype == DType::kBool || x.dtype == DType::kInt32 || x.dtype == DType::kInt64)
    return Unimpl("MaxPool on this type");
  Window w;
  RETURN_IF_ERROR(
      MakeWindow(*c.node, x.shape, IntsAttr(*c.node, "kernel_shape"), IntAttr(*c.node, "ceil_mode", 0) != 0, &w));
  const int64_t planes = x.shape[0] * x.shape[1];
  OnnxTensor y = OnnxTensor::Zeros(x.dtype, OutShape(x.shape[0], x.shape[1], w));
  OnnxTensor idx = OnnxTensor::Zeros(DType::kInt64, y.shape);
  // Indices count over the whole tensor: planes row-major, the spatial
  // position row-major (storage_order 0) or column-major (1).
  const bool column_major = IntAttr(*c.node, "storage_order", 0) == 1;
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t o0 = 0; o0 < w.out[0]; ++o0) {
      for (int64_t o1 = 0; o1 < w.out[1]; ++o1) {
        for (int64_t o2 = 0; o2 < w.out[2]; ++o2) {
          double best = -std::numeric_limits<double>::infinity();
          int64_t best_at = -1;
          for (int64_t k0 = 0; k0 < w.k[0]; ++k0) {
            const int64_t i0 = o0 * w.stride[0] - w.pb[0] + k0 * w.dil[0];
            if (i0 < 0 || i0 >= w.in[0]) continue;
            for (int64_t k1 = 0; k1 < w.k[1]; ++k1) {
              const int64_t i1 = o1 * w.stride[1] - w.pb[1] + k1 * w.dil[1];
              if (i1 < 0 || i1 >= w.in[1]) continue;
              for (int64_t k2 = 0; k2 < w.k[2]; ++k2) {
                const int64_t i2 = o2 * w.stride[2] - w.pb[2] + k2 * w.dil[2];
                if (i2 < 0 || i2 >= w.in[2]) continue;
                const int64_t xi = p * w.in_size() + (i0 * w.in[1] + i1) * w.in[2] + i2;
                const double v = x.at(xi);
                if (best_at < 0 || v > best) {
                  best = v;
                  best_at = column_major ? p * w.in_size() + i0 + w.in[0] * (i1 + w.in[1] * i2) : xi;
                }
              }
            }
          }
          const int64_t oi = p * w.out_size() + (o0 * w.out[1] + o1) * w.out[2] + o2;
          if (y.is_float()) {
            y.f[oi] = static_cast<float>(best);
          } else {
            y.i[oi] = static_cast<int64_t>(best);
          }
          idx.i[oi] = best_at;
        }
      }
    }
  }
  out->push_back(std::move(y));
  if (c.num_outputs > 1) out->push_back(std::move(idx));
  return absl::OkStatus();
}

std::string CheckAveragePool(const onnx::NodeProto& n, int) { return CheckWindowAttrs(n); }

// count_include_pad = 1 divides by the window's positions inside the padded
// input; 0 by those inside the input.
absl::Status RunAveragePool(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  RETURN_IF_ERROR(NeedFloat(x, "X"));
  Window w;
  RETURN_IF_ERROR(
      MakeWindow(*c.node, x.shape, IntsAttr(*c.node, "kernel_shape"), IntAttr(*c.node, "ceil_mode", 0) != 0, &w));
  const bool include_pad = IntAttr(*c.node, "count_include_pad", 0) != 0;
  const int64_t planes = x.shape[0] * x.shape[1];
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, OutShape(x.shape[0], x.shape[1], w));
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t o0 = 0; o0 < w.out[0]; ++o0) {
      for (int64_t o1 = 0; o1 < w.out[1]; ++o1) {
        for (int64_t o2 = 0; o2 < w.out[2]; ++o2) {
          double sum = 0.0;
          int64_t count = 0;
          for (int64_t k0 = 0; k0 < w.k[0]; ++k0) {
            const int64_t i0 = o0 * w.stride[0] - w.pb[0] + k0 * w.dil[0];
            const bool in0 = i0 >= 0 && i0 < w.in[0], pad0 = i0 >= -w.pb[0] && i0 < w.in[0] + w.pe[0];
            for (int64_t k1 = 0; k1 < w.k[1]; ++k1) {
              const int64_t i1 = o1 * w.stride[1] - w.pb[1] + k1 * w.dil[1];
              const bool in1 = i1 >= 0 && i1 < w.in[1], pad1 = i1 >= -w.pb[1] && i1 < w.in[1] + w.pe[1];
              for (int64_t k2 = 0; k2 < w.k[2]; ++k2) {
                const int64_t i2 = o2 * w.stride[2] - w.pb[2] + k2 * w.dil[2];
                const bool in2 = i2 >= 0 && i2 < w.in[2], pad2 = i2 >= -w.pb[2] && i2 < w.in[2] + w.pe[2];
                if (in0 && in1 && in2) {
                  sum += x.f[p * w.in_size() + (i0 * w.in[1] + i1) * w.in[2] + i2];
                  ++count;
                } else if (include_pad && pad0 && pad1 && pad2) {
                  ++count;
                }
              }
            }
          }
          y.f[p * w.out_size() + (o0 * w.out[1] + o1) * w.out[2] + o2] =
              static_cast<float>(count > 0 ? sum / count : 0.0);
        }
      }
    }
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

template <bool kMax>
absl::Status RunGlobalPool(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  RETURN_IF_ERROR(NeedFloat(x, "X"));
  if (x.shape.size() < 3) return Bad("X needs at least one spatial dim");
  std::vector<int64_t> shape = x.shape;
  for (size_t d = 2; d < shape.size(); ++d) shape[d] = 1;
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, shape);
  const int64_t planes = x.shape[0] * x.shape[1], size = x.numel() / std::max<int64_t>(planes, 1);
  for (int64_t p = 0; p < planes; ++p) {
    double acc = kMax ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t k = 0; k < size; ++k) {
      const double v = x.f[p * size + k];
      acc = kMax ? std::max(acc, v) : acc + v;
    }
    y.f[p] = static_cast<float>(kMax ? acc : acc / size);
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- normalisation

std::string CheckBatchNorm(const onnx::NodeProto& n, int opset) {
  if (IntAttr(n, "training_mode", 0) != 0) return "attribute training_mode = 1";
  if (opset < 9 && IntAttr(n, "spatial", 1) != 1) return "attribute spatial = 0";
  if (opset < 7 && IntAttr(n, "is_test", 0) == 0) return "attribute is_test = 0 (batch statistics)";
  for (int k = 1; k < n.output_size(); ++k) {
    if (!n.output(k).empty()) return "outputs beyond Y (training statistics)";
  }
  return "";
}

// Y = (X - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1), in float32 as the spec's reference.
absl::Status RunBatchNorm(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 5));
  const OnnxTensor& x = *c.input(0);
  for (int k = 0; k < 5; ++k) RETURN_IF_ERROR(NeedFloat(*c.input(k), "every input"));
  if (x.shape.size() < 2) return Bad("X needs a channel dimension");
  const int64_t ch = x.shape[1];
  for (int k = 1; k < 5; ++k) {
    if (c.input(k)->numel() != ch) return Bad(absl::StrCat("input ", k, " must hold one value per channel (", ch, ")"));
  }
  const float eps = FloatAttr(*c.node, "epsilon", 1e-5f);
  OnnxTensor y = x;
  const int64_t plane = x.numel() / std::max<int64_t>(x.shape[0] * ch, 1);
  for (int64_t k = 0; k < y.numel(); ++k) {
    const int64_t cc = (k / plane) % ch;
    y.f[k] = (x.f[k] - c.input(3)->f[cc]) / std::sqrt(c.input(4)->f[cc] + eps) * c.input(1)->f[cc] + c.input(2)->f[cc];
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- matmul, gemm

// A [..., M, K] x B [..., K, N] with numpy's rank-1 promotion and batch
// broadcasting. Integer operands subtract zero points (a per row of A, b per
// column of B); accumulators are exact.
absl::Status MatMulAcc(const OnnxTensor& a0, const OnnxTensor& b0, const std::vector<double>& a_zp,
                       const std::vector<double>& b_zp, std::vector<double>* acc, std::vector<int64_t>* shape) {
  std::vector<int64_t> as = a0.shape, bs = b0.shape;
  if (as.empty() || bs.empty()) return Bad("MatMul of a scalar");
  const bool a_vec = as.size() == 1, b_vec = bs.size() == 1;
  if (a_vec) as.insert(as.begin(), 1);
  if (b_vec) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  if (bs[bs.size() - 2] != k) {
    return Bad(absl::StrCat("inner dimensions differ: ", a0.ShapeString(), " x ", b0.ShapeString()));
  }
  const std::vector<int64_t> abatch(as.begin(), as.end() - 2), bbatch(bs.begin(), bs.end() - 2);
  std::vector<int64_t> batch;
  RETURN_IF_ERROR(BroadcastShape(abatch, bbatch, &batch));
  const std::vector<int64_t> sa = BroadcastStrides(abatch, batch), sb = BroadcastStrides(bbatch, batch);
  const int64_t nb = NumElements(batch);
  acc->assign(nb * m * n, 0.0);
  const bool integer = !a0.is_float();
  for (int64_t bi = 0; bi < nb; ++bi) {
    const int64_t aoff = OffsetOf(bi, batch, sa) * m * k, boff = OffsetOf(bi, batch, sb) * k * n;
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t col = 0; col < n; ++col) {
        double sum = 0.0;
        int64_t isum = 0;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t ai = aoff + r * k + j, bidx = boff + j * n + col;
          if (integer) {
            isum += (a0.i[ai] - static_cast<int64_t>(a_zp[a_zp.size() == 1 ? 0 : r])) *
                    (b0.i[bidx] - static_cast<int64_t>(b_zp[b_zp.size() == 1 ? 0 : col]));
          } else {
            sum += static_cast<double>(a0.f[ai]) * b0.f[bidx];
          }
        }
        (*acc)[(bi * m + r) * n + col] = integer ? static_cast<double>(isum) : sum;
      }
    }
  }
  *shape = batch;
  if (!a_vec) shape->push_back(m);
  if (!b_vec) shape->push_back(n);
  return absl::OkStatus();
}

absl::Status RunMatMul(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  RETURN_IF_ERROR(NeedFloat(*c.input(0), "A"));
  RETURN_IF_ERROR(NeedFloat(*c.input(1), "B"));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(MatMulAcc(*c.input(0), *c.input(1), {0.0}, {0.0}, &acc, &shape));
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, shape);
  for (int64_t k = 0; k < y.numel(); ++k) y.f[k] = static_cast<float>(acc[k]);
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// Rows of A (per-row zero point) and columns of B (per-column).
absl::Status ZeroPoints(const OnnxTensor* t, int64_t count, const char* what, std::vector<double>* v) {
  if (t == nullptr || t->numel() == 1) {
    v->assign(1, t == nullptr ? 0.0 : t->at(0));
    return absl::OkStatus();
  }
  if (t->shape.size() != 1 || t->numel() != count) {
    return Unimpl(absl::StrCat(what, " ", t->ShapeString(), ": a scalar or one value per ", count, " is implemented"));
  }
  v->resize(count);
  for (int64_t k = 0; k < count; ++k) (*v)[k] = t->at(k);
  return absl::OkStatus();
}

int64_t Rows(const OnnxTensor& a) { return a.shape.size() >= 2 ? a.shape[a.shape.size() - 2] : 1; }
int64_t Cols(const OnnxTensor& b) { return b.shape.empty() ? 1 : b.shape.back(); }

absl::Status RunMatMulInteger(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  RETURN_IF_ERROR(NeedInt8(c.input(0), "A"));
  RETURN_IF_ERROR(NeedInt8(c.input(1), "B"));
  std::vector<double> azp, bzp;
  RETURN_IF_ERROR(ZeroPoints(c.input(2), Rows(*c.input(0)), "a_zero_point", &azp));
  RETURN_IF_ERROR(ZeroPoints(c.input(3), Cols(*c.input(1)), "b_zero_point", &bzp));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(MatMulAcc(*c.input(0), *c.input(1), azp, bzp, &acc, &shape));
  OnnxTensor y = OnnxTensor::Zeros(DType::kInt32, shape);
  for (int64_t k = 0; k < y.numel(); ++k) y.i[k] = static_cast<int64_t>(acc[k]);
  out->push_back(std::move(y));
  return absl::OkStatus();
}

absl::Status RunQLinearMatMul(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 8));
  RETURN_IF_ERROR(NeedInt8(c.input(0), "a"));
  RETURN_IF_ERROR(NeedInt8(c.input(3), "b"));
  RETURN_IF_ERROR(NeedInt8(c.input(7), "y_zero_point"));
  double as, ys, yzp;
  RETURN_IF_ERROR(Scalar(c, 1, "a_scale", &as));
  RETURN_IF_ERROR(Scalar(c, 6, "y_scale", &ys));
  RETURN_IF_ERROR(Scalar(c, 7, "y_zero_point", &yzp));
  std::vector<double> azp, bzp, bs;
  RETURN_IF_ERROR(ZeroPoints(c.input(2), Rows(*c.input(0)), "a_zero_point", &azp));
  RETURN_IF_ERROR(ZeroPoints(c.input(5), Cols(*c.input(3)), "b_zero_point", &bzp));
  RETURN_IF_ERROR(ZeroPoints(c.input(4), Cols(*c.input(3)), "b_scale", &bs));
  std::vector<double> acc;
  std::vector<int64_t> shape;
  RETURN_IF_ERROR(MatMulAcc(*c.input(0), *c.input(3), azp, bzp, &acc, &shape));
  const DType yt = c.input(7)->dtype;
  OnnxTensor y = OnnxTensor::Zeros(yt, shape);
  const int64_t n = shape.empty() ? 1 : shape.back();
  for (int64_t k = 0; k < y.numel(); ++k) {
    const double b_scale = bs[bs.size() == 1 ? 0 : k % n];
    y.i[k] = Requantize(
        acc[k], static_cast<double>(static_cast<float>(as)) * static_cast<float>(b_scale) / static_cast<float>(ys), yzp,
        yt);
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// Y = alpha * A' B' + beta * C, C broadcast to [M, N].
absl::Status RunGemm(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, c.opset < 11 ? 3 : 2));
  const OnnxTensor& a = *c.input(0);
  const OnnxTensor& b = *c.input(1);
  RETURN_IF_ERROR(NeedFloat(a, "A"));
  RETURN_IF_ERROR(NeedFloat(b, "B"));
  if (a.shape.size() != 2 || b.shape.size() != 2) return Bad("A and B must be 2-D");
  const bool ta = IntAttr(*c.node, "transA", 0) != 0, tb = IntAttr(*c.node, "transB", 0) != 0;
  const float alpha = FloatAttr(*c.node, "alpha", 1.0f), beta = FloatAttr(*c.node, "beta", 1.0f);
  const int64_t m = ta ? a.shape[1] : a.shape[0], k = ta ? a.shape[0] : a.shape[1];
  const int64_t kb = tb ? b.shape[1] : b.shape[0], n = tb ? b.shape[0] : b.shape[1];
  if (k != kb) return Bad(absl::StrCat("inner dimensions differ: A ", a.ShapeString(), ", B ", b.ShapeString()));
  const OnnxTensor* cc = c.input(2);
  std::vector<int64_t> cs;
  if (cc != nullptr) {
    RETURN_IF_ERROR(NeedFloat(*cc, "C"));
    std::vector<int64_t> bshape;
    RETURN_IF_ERROR(BroadcastShape(cc->shape, {m, n}, &bshape));
    if (bshape != std::vector<int64_t>{m, n})
      return Bad(absl::StrCat("C ", cc->ShapeString(), " does not broadcast to [", m, ", ", n, "]"));
    cs = BroadcastStrides(cc->shape, {m, n});
  }
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, {m, n});
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t col = 0; col < n; ++col) {
      double sum = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        sum += static_cast<double>(a.f[ta ? j * m + r : r * k + j]) * b.f[tb ? col * k + j : j * n + col];
      }
      double v = alpha * sum;
      if (cc != nullptr) v += static_cast<double>(beta) * cc->f[OffsetOf(r * n + col, {m, n}, cs)];
      y.f[r * n + col] = static_cast<float>(v);
    }
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- quantization

// The per-axis index of element k of `shape` along `axis`.
int64_t AxisIndex(int64_t k, const std::vector<int64_t>& shape, int64_t axis) {
  int64_t inner = 1;
  for (size_t d = axis + 1; d < shape.size(); ++d) inner *= shape[d];
  return (k / inner) % shape[axis];
}

// Scale and zero point per element: per tensor (scalars) or per `axis` (1-D).
absl::Status AxisParams(const OpCall& c, const OnnxTensor& x, const OnnxTensor& scale, const OnnxTensor* zp,
                        int64_t* axis, bool* per_axis) {
  *per_axis = scale.shape.size() == 1 && scale.numel() > 1;
  if (!scale.shape.empty() && !*per_axis && scale.numel() != 1) return Bad("the scale must be a scalar or 1-D");
  *axis = NormAxis(IntAttr(*c.node, "axis", 1), static_cast<int64_t>(x.shape.size()));
  if (*per_axis) {
    if (c.opset < 13) return Bad("a per-axis scale needs opset 13");
    if (*axis < 0 || *axis >= static_cast<int64_t>(x.shape.size()) || x.shape[*axis] != scale.numel()) {
      return Bad(
          absl::StrCat("the scale holds ", scale.numel(), " values, the input's axis ", *axis, " is not that long"));
    }
  }
  if (zp != nullptr && zp->numel() != scale.numel()) return Bad("the zero point must have the scale's shape");
  return absl::OkStatus();
}

// y = saturate(round_half_even(x / y_scale) + y_zero_point), in float32.
absl::Status RunQuantizeLinear(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  const OnnxTensor& x = *c.input(0);
  const OnnxTensor& s = *c.input(1);
  const OnnxTensor* zp = c.input(2);
  RETURN_IF_ERROR(NeedFloat(x, "x"));
  RETURN_IF_ERROR(NeedFloat(s, "y_scale"));
  RETURN_IF_ERROR(NeedInt8(zp, "y_zero_point"));
  int64_t axis;
  bool per_axis;
  RETURN_IF_ERROR(AxisParams(c, x, s, zp, &axis, &per_axis));
  const DType t = zp != nullptr ? zp->dtype : DType::kUint8;
  OnnxTensor y = OnnxTensor::Zeros(t, x.shape);
  for (int64_t k = 0; k < x.numel(); ++k) {
    const int64_t j = per_axis ? AxisIndex(k, x.shape, axis) : 0;
    const float q = std::nearbyint(x.f[k] / s.f[j]);
    y.i[k] = Saturate(static_cast<double>(q) + (zp != nullptr ? zp->i[j] : 0), t);
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// y = (x - x_zero_point) * x_scale, in float32.
absl::Status RunDequantizeLinear(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 2));
  const OnnxTensor& x = *c.input(0);
  const OnnxTensor& s = *c.input(1);
  const OnnxTensor* zp = c.input(2);
  if (x.dtype != DType::kInt8 && x.dtype != DType::kUint8 && x.dtype != DType::kInt32) {
    return Unimpl("x must be int8, uint8 or int32");
  }
  RETURN_IF_ERROR(NeedFloat(s, "x_scale"));
  if (zp != nullptr && zp->dtype != x.dtype) return Bad("x_zero_point must have x's type");
  int64_t axis;
  bool per_axis;
  RETURN_IF_ERROR(AxisParams(c, x, s, zp, &axis, &per_axis));
  OnnxTensor y = OnnxTensor::Zeros(DType::kFloat, x.shape);
  for (int64_t k = 0; k < x.numel(); ++k) {
    const int64_t j = per_axis ? AxisIndex(k, x.shape, axis) : 0;
    y.f[k] = static_cast<float>(x.i[k] - (zp != nullptr ? zp->i[j] : 0)) * s.f[j];
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// uint8 with the range widened to include 0, in float32:
// scale = (max - min) / 255, zero point = saturate(round(0 - min / scale)),
// y = saturate(round(x / scale) + zero point).
absl::Status RunDynamicQuantizeLinear(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  RETURN_IF_ERROR(NeedFloat(x, "x"));
  float lo = 0.0f, hi = 0.0f;
  for (float v : x.f) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const float scale = (hi - lo) / 255.0f;
  const float zpf = scale == 0.0f ? 0.0f : std::nearbyint(0.0f - lo / scale);
  const int64_t zp = Saturate(zpf, DType::kUint8);
  OnnxTensor y = OnnxTensor::Zeros(DType::kUint8, x.shape);
  for (int64_t k = 0; k < x.numel(); ++k) {
    const float q = scale == 0.0f ? 0.0f : std::nearbyint(x.f[k] / scale);
    y.i[k] = Saturate(static_cast<double>(q) + zp, DType::kUint8);
  }
  OnnxTensor ys = OnnxTensor::Zeros(DType::kFloat, {});
  ys.f[0] = scale;
  OnnxTensor yz = OnnxTensor::Zeros(DType::kUint8, {});
  yz.i[0] = zp;
  out->push_back(std::move(y));
  out->push_back(std::move(ys));
  out->push_back(std::move(yz));
  return absl::OkStatus();
}

// ---------------------------------------------------------------- Min, Max, Round, Cast, reductions

template <bool kMax>
absl::Status RunMinMax(const OpCall& c, std::vector<OnnxTensor>* out) {
  if (c.inputs.empty()) return Bad("needs at least one input");
  std::vector<int64_t> shape;
  for (const OnnxTensor* t : c.inputs) {
    if (t == nullptr || t->dtype != c.inputs[0]->dtype) return Bad("every input needs the first one's type");
    if (t->dtype == DType::kBool) return Unimpl("Min/Max on bool");
    std::vector<int64_t> next;
    RETURN_IF_ERROR(BroadcastShape(shape, t->shape, &next));
    shape = next;
  }
  OnnxTensor y = OnnxTensor::Zeros(c.inputs[0]->dtype, shape);
  std::vector<std::vector<int64_t>> strides;
  for (const OnnxTensor* t : c.inputs) strides.push_back(BroadcastStrides(t->shape, shape));
  for (int64_t k = 0; k < y.numel(); ++k) {
    for (size_t j = 0; j < c.inputs.size(); ++j) {
      const int64_t at = OffsetOf(k, shape, strides[j]);
      if (y.is_float()) {
        const float v = c.inputs[j]->f[at];
        y.f[k] = j == 0 ? v : kMax ? std::max(y.f[k], v) : std::min(y.f[k], v);
      } else {
        const int64_t v = c.inputs[j]->i[at];
        y.i[k] = j == 0 ? v : kMax ? std::max(y.i[k], v) : std::min(y.i[k], v);
      }
    }
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// Round half to even.
absl::Status RunRound(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  RETURN_IF_ERROR(NeedFloat(*c.input(0), "X"));
  OnnxTensor y = *c.input(0);
  for (float& v : y.f) v = std::nearbyint(v);
  out->push_back(std::move(y));
  return absl::OkStatus();
}

std::string CheckCast(const onnx::NodeProto& n, int) {
  const int64_t to = IntAttr(n, "to", 0);
  if (!IsSupportedDType(static_cast<int>(to))) return absl::StrCat("attribute to = ", DTypeName(static_cast<int>(to)));
  return "";
}

// float -> integer truncates toward zero (then wraps to the type, as a C cast);
// integer -> float rounds to nearest; anything -> bool is (v != 0).
absl::Status RunCast(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  const DType to = static_cast<DType>(IntAttr(*c.node, "to", 1));
  OnnxTensor y = OnnxTensor::Zeros(to, x.shape);
  for (int64_t k = 0; k < x.numel(); ++k) {
    if (to == DType::kFloat) {
      y.f[k] = x.is_float() ? x.f[k] : static_cast<float>(x.i[k]);
      continue;
    }
    if (to == DType::kBool) {
      y.i[k] = x.at(k) != 0.0;
      continue;
    }
    int64_t v;
    if (x.is_float()) {
      if (!std::isfinite(x.f[k])) return Bad(absl::StrCat("element ", k, " (", x.f[k], ") has no integer value"));
      v = static_cast<int64_t>(x.f[k]);
    } else {
      v = x.i[k];
    }
    if (to == DType::kInt32) v = static_cast<int32_t>(static_cast<uint32_t>(v));
    if (to == DType::kInt8) v = static_cast<int8_t>(static_cast<uint8_t>(v));
    if (to == DType::kUint8) v = static_cast<uint8_t>(v);
    y.i[k] = v;
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

// ReduceMin / ReduceMax over `axes` (all when absent), keepdims default 1.
template <bool kMax>
absl::Status RunReduce(const OpCall& c, std::vector<OnnxTensor>* out) {
  RETURN_IF_ERROR(NeedInputs(c, 1));
  const OnnxTensor& x = *c.input(0);
  if (x.dtype == DType::kBool) return Unimpl("reduction of bool");
  const int64_t rank = static_cast<int64_t>(x.shape.size());
  std::vector<bool> reduce(rank, false);
  std::vector<int64_t> axes = IntsAttr(*c.node, "axes");
  if (axes.empty()) {
    reduce.assign(rank, true);
  }
  for (int64_t a : axes) {
    const int64_t n = NormAxis(a, rank);
    if (n < 0 || n >= rank) return Bad(absl::StrCat("axis ", a, " out of range for rank ", rank));
    reduce[n] = true;
  }
  const bool keep = IntAttr(*c.node, "keepdims", 1) != 0;
  std::vector<int64_t> kept_shape(rank), out_shape;
  for (int64_t d = 0; d < rank; ++d) {
    kept_shape[d] = reduce[d] ? 1 : x.shape[d];
    if (keep || !reduce[d]) out_shape.push_back(kept_shape[d]);
  }
  if (x.numel() == 0) return Unimpl("reduction of an empty tensor");
  OnnxTensor y = OnnxTensor::Zeros(x.dtype, out_shape);
  std::vector<bool> seen(y.numel(), false);
  std::vector<int64_t> kept_strides(rank, 0);
  for (int64_t d = rank - 1, s = 1; d >= 0; --d) {
    kept_strides[d] = reduce[d] ? 0 : s;
    s *= kept_shape[d];
  }
  for (int64_t k = 0; k < x.numel(); ++k) {
    const int64_t o = OffsetOf(k, x.shape, kept_strides);
    if (x.is_float()) {
      y.f[o] = !seen[o] ? x.f[k] : kMax ? std::max(y.f[o], x.f[k]) : std::min(y.f[o], x.f[k]);
    } else {
      y.i[o] = !seen[o] ? x.i[k] : kMax ? std::max(y.i[o], x.i[k]) : std::min(y.i[o], x.i[k]);
    }
    seen[o] = true;
  }
  out->push_back(std::move(y));
  return absl::OkStatus();
}

const std::vector<OpSpec>& Specs() {
  static const std::vector<OpSpec> kSpecs = {
      {"Add", 7, {}, NoCheck, RunBinary<0>},
      {"AveragePool",
       1,
       {"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"},
       CheckAveragePool,
       RunAveragePool},
      {"BatchNormalization",
       6,
       {"epsilon", "is_test", "momentum", "spatial", "training_mode"},
       CheckBatchNorm,
       RunBatchNorm},
      {"Clip", 6, {"min", "max"}, NoCheck, RunClip},
      {"Cast", 6, {"to"}, CheckCast, RunCast},
      {"Concat", 4, {"axis"}, NoCheck, RunConcat},
      {"Constant", 1, {"value", "value_float", "value_floats", "value_int", "value_ints"}, CheckConstant, RunConstant},
      {"Conv", 1, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}, CheckConv, RunConv},
      {"ConvInteger",
       10,
       {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
       CheckConv,
       RunConvInteger},
      {"DequantizeLinear", 10, {"axis"}, NoCheck, RunDequantizeLinear},
      {"Div", 7, {}, NoCheck, RunBinary<3>},
      {"Dropout", 6, {"ratio", "seed", "is_test"}, CheckDropout, RunDropout},
      {"DynamicQuantizeLinear", 11, {}, NoCheck, RunDynamicQuantizeLinear},
      {"Flatten", 1, {"axis"}, NoCheck, RunFlatten},
      {"Gemm", 6, {"alpha", "beta", "broadcast", "transA", "transB"}, NoCheck, RunGemm},
      {"GlobalAveragePool", 1, {}, NoCheck, RunGlobalPool<false>},
      {"GlobalMaxPool", 1, {}, NoCheck, RunGlobalPool<true>},
      {"HardSwish", 14, {}, NoCheck, RunHardSwish},
      {"Identity", 1, {}, NoCheck, RunIdentity},
      {"MatMul", 1, {}, NoCheck, RunMatMul},
      {"MatMulInteger", 10, {}, NoCheck, RunMatMulInteger},
      {"MaxPool",
       1,
       {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
       CheckMaxPool,
       RunMaxPool},
      {"Max", 8, {}, NoCheck, RunMinMax<true>},
      {"Min", 8, {}, NoCheck, RunMinMax<false>},
      {"Mul", 7, {}, NoCheck, RunBinary<2>},
      {"QLinearConv",
       10,
       {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
       CheckConv,
       RunQLinearConv},
      {"QLinearMatMul", 10, {}, NoCheck, RunQLinearMatMul},
      {"QuantizeLinear", 10, {"axis"}, NoCheck, RunQuantizeLinear},
      {"ReduceMax", 1, {"axes", "keepdims"}, NoCheck, RunReduce<true>},
      {"ReduceMin", 1, {"axes", "keepdims"}, NoCheck, RunReduce<false>},
      {"Relu", 6, {}, NoCheck, RunRelu},
      {"Reshape", 5, {"allowzero"}, NoCheck, RunReshape},
      {"Round", 11, {}, NoCheck, RunRound},
      {"Sigmoid", 6, {}, NoCheck, RunSigmoidTanh<true>},
      {"Sub", 7, {}, NoCheck, RunBinary<1>},
      {"Tanh", 6, {}, NoCheck, RunSigmoidTanh<false>},
  };
  return kSpecs;
}

}  // namespace

const OpSpec* FindOp(const std::string& op_type) {
  for (const OpSpec& s : Specs()) {
    if (op_type == s.op_type) return &s;
  }
  return nullptr;
}

std::vector<std::string> SupportedOps() {
  std::vector<std::string> ops;
  for (const OpSpec& s : Specs()) ops.push_back(s.op_type);
  return ops;
}

std::string WhyUnsupported(const onnx::NodeProto& node, int opset) {
  if (!node.domain().empty() && node.domain() != "ai.onnx") return absl::StrCat("op domain ", node.domain());
  const OpSpec* spec = FindOp(node.op_type());
  if (spec == nullptr) return absl::StrCat("op ", node.op_type());
  if (opset < spec->since_opset) {
    return absl::StrCat("op ", node.op_type(), " at opset ", opset, " (implemented from opset ", spec->since_opset,
                        ")");
  }
  for (const onnx::AttributeProto& a : node.attribute()) {
    if (std::find(spec->attributes.begin(), spec->attributes.end(), a.name()) == spec->attributes.end()) {
      return absl::StrCat("op ", node.op_type(), ": attribute ", a.name());
    }
  }
  const std::string why = spec->check(node, opset);
  return why.empty() ? "" : absl::StrCat("op ", node.op_type(), ": ", why);
}

}  // namespace onnx_io
}  // namespace quant
