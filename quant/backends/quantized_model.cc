#include "quant/backends/quantized_model.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/backends/fixed_point.h"
#include "quant/core/atomic_file.h"
#include "quant/core/status_macros.h"
#include "zlib.h"

namespace quant::backends {
namespace {

constexpr char kMagic[8] = {'Q', 'L', 'Q', 'M', 'O', 'D', 'E', 'L'};
constexpr size_t kHeaderBytes = 8 + 4 + 8;
constexpr size_t kTrailerBytes = 4;

absl::Status BadModel(std::string_view field, std::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat("QuantizedModel: ", std::string(field), ": ", std::string(message)));
}

bool GoodScale(float s) { return std::isfinite(s) && s > 0.0f; }

std::string ShapeStr(const Shape& s) { return absl::StrCat("[", absl::StrJoin(s, ", "), "]"); }

std::string TensorLabel(const QuantizedModel& m, int t) {
  return absl::StrCat("tensor ", t, " '", m.tensors(t).name(), "'");
}

std::string VersionError(int version) {
  if (version == 1) {
    return "1: this is a version 1 QuantizedModel (a chain of layers); this build reads version 2 "
           "(tensors + ops) only: re-convert the float model";
  }
  return absl::StrCat(version, "; this build reads version ", kQuantizedModelFormatVersion);
}

// Output window of a conv/pool; `in` is [H, W, C].
template <typename P>
absl::Status Window(const P& p, const Shape& in, const std::function<absl::Status(std::string, std::string)>& bad,
                    Shape* hw) {
  if (in.size() != 3) return bad("inputs[0]", absl::StrCat("needs an [H, W, C] input, got ", ShapeStr(in)));
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
  *hw = {(ph - p.kernel_h()) / p.stride_h() + 1, (pw - p.kernel_w()) / p.stride_w() + 1};
  return absl::OkStatus();
}

using BadFn = std::function<absl::Status(std::string, std::string)>;

// Shape rules of one op; `in` = shapes of its inputs.
absl::Status OpShape(const QuantizedModel& m, const Op& op, const std::vector<Shape>& in, const BadFn& bad,
                     Shape* out) {
  auto need_inputs = [&](int lo, int hi) -> absl::Status {
    if (op.inputs_size() < lo || op.inputs_size() > hi) {
      return bad("inputs", absl::StrCat(op.inputs_size(), " inputs; ", OpKind(op), " takes ",
                                        lo == hi ? absl::StrCat(lo) : absl::StrCat(lo, "..", hi)));
    }
    return absl::OkStatus();
  };
  auto need_const = [&](int k, const char* what) -> absl::Status {
    if (!IsConstant(m.tensors(op.inputs(k)))) {
      return bad(absl::StrCat("inputs[", k, "]"),
                 absl::StrCat(TensorLabel(m, op.inputs(k)), " must be a constant (", what, ")"));
    }
    return absl::OkStatus();
  };
  switch (op.options_case()) {
    case Op::kFullyConnected: {
      RETURN_IF_ERROR(need_inputs(2, 3));
      RETURN_IF_ERROR(need_const(1, "the weights"));
      const Shape& x = in[0];
      const Shape& w = in[1];
      if (x.size() != 1) {
        return bad("inputs[0]", absl::StrCat("fully_connected needs a flat input, got ", ShapeStr(x),
                                             " (add a flatten op)"));
      }
      if (w.size() != 2 || w[1] != x[0] || w[0] <= 0) {
        return bad("inputs[1]", absl::StrCat("weights ", ShapeStr(w), " do not fit an input of ", x[0],
                                             " features (expected [O, ", x[0], "])"));
      }
      if (op.inputs_size() == 3) {
        RETURN_IF_ERROR(need_const(2, "the bias"));
        if (in[2] != Shape{w[0]}) return bad("inputs[2]", absl::StrCat("bias ", ShapeStr(in[2]), " != [", w[0], "]"));
      }
      *out = {w[0]};
      return absl::OkStatus();
    }
    case Op::kConv2D: {
      RETURN_IF_ERROR(need_inputs(2, 3));
      RETURN_IF_ERROR(need_const(1, "the weights"));
      const Conv2DOptions& c = op.conv2d();
      Shape hw;
      RETURN_IF_ERROR(Window(c, in[0], bad, &hw));
      const Shape& w = in[1];
      const int64_t C = in[0][2];
      if (c.groups() <= 0 || C % c.groups() != 0) {
        return bad("groups", absl::StrCat(c.groups(), " must be positive and divide the input channels ", C));
      }
      const Shape expect_tail = {c.kernel_h(), c.kernel_w(), C / c.groups()};
      if (w.size() != 4 || w[0] <= 0 || w[0] % c.groups() != 0 || Shape(w.begin() + 1, w.end()) != expect_tail) {
        return bad("inputs[1]", absl::StrCat("weights ", ShapeStr(w), " expected [O, ", c.kernel_h(), ", ", c.kernel_w(),
                                             ", ", C / c.groups(), "] (OHWI) with O a multiple of groups ", c.groups()));
      }
      if (op.inputs_size() == 3) {
        RETURN_IF_ERROR(need_const(2, "the bias"));
        if (in[2] != Shape{w[0]}) return bad("inputs[2]", absl::StrCat("bias ", ShapeStr(in[2]), " != [", w[0], "]"));
      }
      *out = {hw[0], hw[1], w[0]};
      return absl::OkStatus();
    }
    case Op::kMaxPool2D:
    case Op::kAveragePool2D: {
      RETURN_IF_ERROR(need_inputs(1, 1));
      const Pool2DOptions& p = op.has_max_pool2d() ? op.max_pool2d() : op.average_pool2d();
      Shape hw;
      RETURN_IF_ERROR(Window(p, in[0], bad, &hw));
      if (op.has_average_pool2d() && (p.pad_top() || p.pad_bottom() || p.pad_left() || p.pad_right())) {
        return bad("pad_*", "average_pool2d takes no padding");
      }
      *out = {hw[0], hw[1], in[0][2]};
      return absl::OkStatus();
    }
    case Op::kGlobalAveragePool:
      RETURN_IF_ERROR(need_inputs(1, 1));
      if (in[0].size() != 3) return bad("inputs[0]", absl::StrCat("needs an [H, W, C] input, got ", ShapeStr(in[0])));
      *out = {in[0][2]};
      return absl::OkStatus();
    case Op::kAdd:
      RETURN_IF_ERROR(need_inputs(2, 2));
      if (in[0] != in[1]) {
        return bad("inputs", absl::StrCat("add needs equal shapes, got ", ShapeStr(in[0]), " and ", ShapeStr(in[1])));
      }
      *out = in[0];
      return absl::OkStatus();
    case Op::kConcat: {
      RETURN_IF_ERROR(need_inputs(1, 64));
      Shape s = in[0];
      for (int k = 1; k < op.inputs_size(); ++k) {
        if (in[k].size() != s.size() || !std::equal(s.begin(), s.end() - 1, in[k].begin())) {
          return bad(absl::StrCat("inputs[", k, "]"), absl::StrCat("shape ", ShapeStr(in[k]), " does not concatenate with ",
                                                                  ShapeStr(in[0]), " along the channel (last) axis"));
        }
        s.back() += in[k].back();
      }
      *out = s;
      return absl::OkStatus();
    }
    case Op::kHardswish:
    case Op::kSigmoid:
    case Op::kTanh:
      RETURN_IF_ERROR(need_inputs(1, 1));
      *out = in[0];
      return absl::OkStatus();
    case Op::kFlatten:
      RETURN_IF_ERROR(need_inputs(1, 1));
      *out = {Numel(in[0])};
      return absl::OkStatus();
    case Op::kReshape: {
      RETURN_IF_ERROR(need_inputs(1, 1));
      Shape s(op.reshape().shape().begin(), op.reshape().shape().end());
      if (s.empty() || Numel(s) != Numel(in[0])) {
        return bad("reshape.shape", absl::StrCat(ShapeStr(s), " does not hold the ", Numel(in[0]), " values of ",
                                                 ShapeStr(in[0])));
      }
      *out = s;
      return absl::OkStatus();
    }
    case Op::OPTIONS_NOT_SET:
      break;
  }
  return bad("options", "no operation set");
}

// Expected multiplier/shift of a real multiplier; false if not representable.
bool Expected(double real, int32_t* m, int* shift) { return QuantizeMultiplier(real, m, shift); }

// The real multipliers every requantization of `op` encodes, in proto order.
std::vector<std::pair<const Requantization*, std::vector<double>>> RealMultipliers(const QuantizedModel& m,
                                                                                   const Op& op,
                                                                                   const std::vector<Shape>& shapes) {
  std::vector<std::pair<const Requantization*, std::vector<double>>> out;
  const Tensor& y = m.tensors(op.outputs(0));
  const double s_out = TensorScale(y);
  const double s_in = TensorScale(m.tensors(op.inputs(0)));
  switch (op.options_case()) {
    case Op::kFullyConnected:
    case Op::kConv2D: {
      const Tensor& w = m.tensors(op.inputs(1));
      const int64_t O = shapes[op.inputs(1)][0];
      std::vector<double> r(O);
      for (int64_t o = 0; o < O; ++o) r[o] = s_in * static_cast<double>(TensorScale(w, IsPerChannel(w) ? o : 0)) / s_out;
      out.emplace_back(op.has_conv2d() ? &op.conv2d().requant() : &op.fully_connected().requant(), r);
      break;
    }
    case Op::kAveragePool2D: {
      const Pool2DOptions& p = op.average_pool2d();
      out.push_back({&p.requant(), {s_in / (s_out * p.kernel_h() * p.kernel_w())}});
      break;
    }
    case Op::kGlobalAveragePool: {
      const Shape& x = shapes[op.inputs(0)];
      out.push_back({&op.global_average_pool().requant(), {s_in / (s_out * static_cast<double>(x[0] * x[1]))}});
      break;
    }
    case Op::kAdd: {
      const double s1 = s_in, s2 = TensorScale(m.tensors(op.inputs(1)));
      const double twice_max = 2.0 * std::max(s1, s2);
      out.push_back({&op.add().input1(), {s1 / twice_max}});
      out.push_back({&op.add().input2(), {s2 / twice_max}});
      out.push_back({&op.add().output(), {twice_max / (static_cast<double>(1 << kAddLeftShift) * s_out)}});
      break;
    }
    case Op::kConcat: {
      std::vector<double> r;
      for (int k = 0; k < op.inputs_size(); ++k) r.push_back(TensorScale(m.tensors(op.inputs(k))) / s_out);
      out.emplace_back(&op.concat().requant(), r);
      break;
    }
    default:
      break;
  }
  return out;
}

// The requantizations of `op`, mutable, in RealMultipliers' order.
std::vector<Requantization*> MutableRequants(Op* op) {
  switch (op->options_case()) {
    case Op::kFullyConnected: return {op->mutable_fully_connected()->mutable_requant()};
    case Op::kConv2D: return {op->mutable_conv2d()->mutable_requant()};
    case Op::kAveragePool2D: return {op->mutable_average_pool2d()->mutable_requant()};
    case Op::kGlobalAveragePool: return {op->mutable_global_average_pool()->mutable_requant()};
    case Op::kAdd:
      return {op->mutable_add()->mutable_input1(), op->mutable_add()->mutable_input2(), op->mutable_add()->mutable_output()};
    case Op::kConcat: return {op->mutable_concat()->mutable_requant()};
    default: return {};
  }
}

const LookupTableOptions* TableOf(const Op& op) {
  if (op.has_hardswish()) return &op.hardswish();
  if (op.has_sigmoid()) return &op.sigmoid();
  if (op.has_tanh()) return &op.tanh();
  return nullptr;
}

absl::Status CheckActivationQuant(const Tensor& t, DType dtype, const BadFn& bad, const std::string& field) {
  if (t.dtype() != INT8 && t.dtype() != UINT8) {
    return bad(field, absl::StrCat("activation dtype ", DTypeName(t.dtype()), "; must be INT8 or UINT8"));
  }
  if (t.dtype() != dtype) {
    return bad(field, absl::StrCat(DTypeName(t.dtype()), " differs from the model's activation dtype ",
                                   DTypeName(dtype), " (the model input's)"));
  }
  if (t.scale_size() != 1 || t.zero_point_size() != 1) {
    return bad(field, absl::StrCat(t.scale_size(), " scales and ", t.zero_point_size(),
                                   " zero points; activations are per-tensor (one each)"));
  }
  if (!GoodScale(t.scale(0))) return bad(field + ".scale", absl::StrCat(t.scale(0), " is not a finite positive number"));
  if (t.zero_point(0) < DTypeMin(dtype) || t.zero_point(0) > DTypeMax(dtype)) {
    return bad(field + ".zero_point", absl::StrCat(t.zero_point(0), " is outside the ", DTypeName(dtype), " range [",
                                                   DTypeMin(dtype), ", ", DTypeMax(dtype), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckWeights(const Tensor& w, const Shape& shape, const BadFn& bad) {
  const std::string f = "inputs[1] (weights)";
  if (w.dtype() != INT8 && w.dtype() != UINT8) return bad(f + ".dtype", "must be INT8 or UINT8");
  const int bits = w.bits() == 0 ? 8 : w.bits();
  if (bits < 2 || bits > 8) return bad(f + ".bits", absl::StrCat(bits, " is outside [2, 8]"));
  const int64_t O = shape[0];
  if (w.scale_size() != 1 && w.scale_size() != O) {
    return bad(f + ".scale", absl::StrCat(w.scale_size(), " values; expected 1 (per-tensor) or ", O,
                                          " (per-channel, output channels)"));
  }
  if (w.scale_size() > 1 && w.quantized_dimension() != 0) {
    return bad(f + ".quantized_dimension", absl::StrCat(w.quantized_dimension(), "; per-channel weights use axis 0"));
  }
  if (w.zero_point_size() != w.scale_size()) {
    return bad(f + ".zero_point", absl::StrCat(w.zero_point_size(), " values; expected ", w.scale_size(),
                                               " (as many as scales)"));
  }
  const int32_t qmin = w.dtype() == INT8 ? -(1 << (bits - 1)) : 0;
  const int32_t qmax = w.dtype() == INT8 ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
  for (int i = 0; i < w.scale_size(); ++i) {
    if (!GoodScale(w.scale(i))) {
      return bad(absl::StrCat(f, ".scale[", i, "]"), absl::StrCat(w.scale(i), " is not a finite positive number"));
    }
    if (w.zero_point(i) < qmin || w.zero_point(i) > qmax) {
      return bad(absl::StrCat(f, ".zero_point[", i, "]"),
                 absl::StrCat(w.zero_point(i), " is outside the ", bits, "-bit ", DTypeName(w.dtype()), " range [",
                              qmin, ", ", qmax, "]"));
    }
  }
  const int64_t n = Numel(shape);
  if (static_cast<int64_t>(w.data().size()) != n) {
    return bad(f + ".data", absl::StrCat(w.data().size(), " bytes; expected ", n, " (", ShapeStr(shape), ")"));
  }
  const std::vector<int32_t> v = TensorValues(w);
  for (int64_t i = 0; i < n; ++i) {
    if (v[i] < qmin || v[i] > qmax) {
      return bad(absl::StrCat(f, ".data[", i, "]"), absl::StrCat(v[i], " is outside the ", bits, "-bit ",
                                                                DTypeName(w.dtype()), " range [", qmin, ", ", qmax, "]"));
    }
  }
  if (w.float_data_size() != 0 && w.float_data_size() != n) {
    return bad(f + ".float_data", absl::StrCat(w.float_data_size(), " values; expected ", n, " or none"));
  }
  return absl::OkStatus();
}

// Quantization checks of op i (shapes known).
// The integer kernels accumulate bias + sum (w - z_w)(x - z_x) in int32. Bounded by |bias| +
// sum |w - z_w| * max |x - z_x| over every input the dtype allows, per output channel; a model
// whose bound passes 2^31 - 1 would overflow (undefined behaviour), so it is refused. A bias
// saturated at the int32 limits by a tiny input scale (a fixed observer's 1e-45) is caught here.
absl::Status CheckAccumulatorBound(const QuantizedModel& m, const Op& op, const std::vector<Shape>& shapes,
                                   const BadFn& bad) {
  const Tensor& x = m.tensors(op.inputs(0));
  const Tensor& w = m.tensors(op.inputs(1));
  const int64_t zx = TensorZeroPoint(x);
  const int64_t xspan = std::max<int64_t>(zx - DTypeMin(x.dtype()), DTypeMax(x.dtype()) - zx);
  const std::vector<int32_t> wv = TensorValues(w);
  const int64_t O = shapes[op.inputs(1)][0];
  if (O <= 0 || static_cast<int64_t>(wv.size()) % O != 0) return absl::OkStatus();  // CheckWeights says why
  const std::vector<int32_t> bias =
      op.inputs_size() == 3 ? TensorValues(m.tensors(op.inputs(2))) : std::vector<int32_t>();
  const int64_t per = static_cast<int64_t>(wv.size()) / O;
  for (int64_t o = 0; o < O; ++o) {
    const int64_t zw = TensorZeroPoint(w, static_cast<int>(o));
    int64_t sum = 0;
    for (int64_t j = o * per; j < (o + 1) * per; ++j) sum += std::abs(static_cast<int64_t>(wv[j]) - zw);
    const int64_t b = o < static_cast<int64_t>(bias.size()) ? std::abs(static_cast<int64_t>(bias[o])) : 0;
    const int64_t bound = b + sum * xspan;
    if (bound >= std::numeric_limits<int32_t>::max()) {
      return bad("accumulator",
                 absl::StrCat("output channel ", o, " can reach |acc| = ", bound, " >= 2^31 - 1 (|bias| ", b,
                              " + sum |w - z_w| ", sum, " x max |x - z_x| ", xspan,
                              "): the int32 accumulator would overflow; the input scale ", TensorScale(x),
                              " is too small for this layer's bias and weights (a fixed observer with a tiny scale?)"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckOpQuant(const QuantizedModel& m, int i, const std::vector<Shape>& shapes, DType dtype) {
  const Op& op = m.ops(i);
  BadFn bad = [&](std::string field, std::string msg) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizedModel: ", OpLabel(m, i), ": ", field, ": ", msg));
  };
  const Tensor& y = m.tensors(op.outputs(0));
  RETURN_IF_ERROR(CheckActivationQuant(y, dtype, bad, absl::StrCat("outputs[0] (", TensorLabel(m, op.outputs(0)), ")")));
  if (op.output_min() > op.output_max()) {
    return bad("output_min/output_max", absl::StrCat("empty clamp [", op.output_min(), ", ", op.output_max(), "]"));
  }
  if (op.output_min() < DTypeMin(dtype) || op.output_max() > DTypeMax(dtype)) {
    return bad("output_min/output_max", absl::StrCat("clamp [", op.output_min(), ", ", op.output_max(),
                                                     "] exceeds the ", DTypeName(dtype), " range"));
  }
  const bool weighted = op.has_fully_connected() || op.has_conv2d();
  for (int k = 0; k < op.inputs_size(); ++k) {
    if (weighted && k > 0) continue;
    RETURN_IF_ERROR(CheckActivationQuant(m.tensors(op.inputs(k)), dtype, bad,
                                         absl::StrCat("inputs[", k, "] (", TensorLabel(m, op.inputs(k)), ")")));
  }
  if (weighted) {
    const Tensor& w = m.tensors(op.inputs(1));
    RETURN_IF_ERROR(CheckWeights(w, shapes[op.inputs(1)], bad));
    if (op.inputs_size() == 3) {
      const Tensor& b = m.tensors(op.inputs(2));
      const int64_t O = shapes[op.inputs(1)][0];
      if (b.dtype() != INT32) return bad("inputs[2] (bias).dtype", absl::StrCat(DTypeName(b.dtype()), "; must be INT32"));
      if (b.int_data_size() != O) {
        return bad("inputs[2] (bias).int_data", absl::StrCat(b.int_data_size(), " values; expected ", O));
      }
      if (b.float_data_size() != 0 && b.float_data_size() != O) {
        return bad("inputs[2] (bias).float_data", absl::StrCat(b.float_data_size(), " values; expected ", O, " or none"));
      }
    }
    RETURN_IF_ERROR(CheckAccumulatorBound(m, op, shapes, bad));
  }
  const Tensor& x = m.tensors(op.inputs(0));
  if (op.has_max_pool2d() || op.has_flatten() || op.has_reshape()) {
    if (TensorScale(x) != TensorScale(y) || TensorZeroPoint(x) != TensorZeroPoint(y)) {
      return bad("outputs[0]", absl::StrCat(OpKind(op), " must keep its input's scale and zero point"));
    }
  }
  if (op.has_add() && op.add().left_shift() != kAddLeftShift) {
    return bad("add.left_shift", absl::StrCat(op.add().left_shift(), "; must be ", kAddLeftShift));
  }
  for (const auto& [rq, reals] : RealMultipliers(m, op, shapes)) {
    const int n = static_cast<int>(reals.size());
    if (rq->multiplier_size() != n || rq->shift_size() != n) {
      return bad("requant", absl::StrCat(rq->multiplier_size(), " multipliers and ", rq->shift_size(),
                                         " shifts; expected ", n, " each (ComputeRequantization fills them)"));
    }
    for (int o = 0; o < n; ++o) {
      int32_t mult;
      int shift;
      if (!Expected(reals[o], &mult, &shift)) {
        return bad(absl::StrCat("requant[", o, "]"), absl::StrCat("multiplier ", reals[o], " is not representable"));
      }
      if (rq->multiplier(o) != mult || rq->shift(o) != shift) {
        return bad(absl::StrCat("requant[", o, "]"),
                   absl::StrCat("multiplier ", rq->multiplier(o), " shift ", rq->shift(o), " differ from QuantizeMultiplier(",
                                reals[o], ") = ", mult, " shift ", shift, " (stale or from another model)"));
      }
    }
  }
  if (const LookupTableOptions* t = TableOf(op)) {
    const std::vector<int32_t> want = BuildLookupTable(op.options_case(), x, y);
    if (t->table_size() != 256 || !std::equal(want.begin(), want.end(), t->table().begin())) {
      return bad(absl::StrCat(OpKind(op), ".table"),
                 absl::StrCat(t->table_size(), " entries that differ from BuildLookupTable(input, output qparams) "
                                               "(stale or missing: ComputeRequantization fills it)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string DTypeName(DType dtype) {
  switch (dtype) {
    case INT8: return "int8";
    case UINT8: return "uint8";
    case INT32: return "int32";
    case FLOAT32: return "float32";
    default: return "unspecified";
  }
}

int32_t DTypeMin(DType dtype) { return dtype == UINT8 ? 0 : -128; }
int32_t DTypeMax(DType dtype) { return dtype == UINT8 ? 255 : 127; }

std::string OpKind(const Op& op) {
  switch (op.options_case()) {
    case Op::kFullyConnected: return "fully_connected";
    case Op::kConv2D: return "conv2d";
    case Op::kMaxPool2D: return "max_pool2d";
    case Op::kAveragePool2D: return "average_pool2d";
    case Op::kGlobalAveragePool: return "global_average_pool";
    case Op::kAdd: return "add";
    case Op::kConcat: return "concat";
    case Op::kHardswish: return "hardswish";
    case Op::kSigmoid: return "sigmoid";
    case Op::kTanh: return "tanh";
    case Op::kFlatten: return "flatten";
    case Op::kReshape: return "reshape";
    default: return "(no op)";
  }
}

std::string OpLabel(const QuantizedModel& model, int index) {
  if (index < 0 || index >= model.ops_size()) return absl::StrCat("op ", index);
  const Op& op = model.ops(index);
  return absl::StrCat("op ", index, " '", op.name(), "' (", OpKind(op), ")");
}

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape TensorShape(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end()); }

bool IsConstant(const Tensor& t) { return !t.data().empty() || t.int_data_size() > 0 || t.float_data_size() > 0; }
bool IsPerChannel(const Tensor& t) { return t.scale_size() > 1; }
float TensorScale(const Tensor& t, int c) {
  if (t.scale_size() == 0) return 0.0f;
  return t.scale_size() == 1 ? t.scale(0) : t.scale(c);
}
int32_t TensorZeroPoint(const Tensor& t, int c) {
  if (t.zero_point_size() == 0) return 0;
  return t.zero_point_size() == 1 ? t.zero_point(0) : t.zero_point(c);
}

std::vector<int32_t> TensorValues(const Tensor& t) {
  if (t.dtype() == INT32) return std::vector<int32_t>(t.int_data().begin(), t.int_data().end());
  std::vector<int32_t> v(t.data().size());
  for (size_t i = 0; i < v.size(); ++i) {
    const uint8_t b = static_cast<uint8_t>(t.data()[i]);
    v[i] = t.dtype() == UINT8 ? b : static_cast<int8_t>(b);
  }
  return v;
}

int InputTensor(const QuantizedModel& m) { return m.inputs_size() ? m.inputs(0) : -1; }
int OutputTensor(const QuantizedModel& m) { return m.outputs_size() ? m.outputs(0) : -1; }
int WeightTensor(const Op& op) {
  return (op.has_fully_connected() || op.has_conv2d()) && op.inputs_size() > 1 ? op.inputs(1) : -1;
}
int BiasTensor(const Op& op) {
  return (op.has_fully_connected() || op.has_conv2d()) && op.inputs_size() > 2 ? op.inputs(2) : -1;
}

float LookupFunction(Op::OptionsCase kind, float x) {
  switch (kind) {
    case Op::kSigmoid: return 1.0f / (1.0f + std::exp(-x));
    case Op::kTanh: return std::tanh(x);
    case Op::kHardswish: return x * std::min(std::max(x + 3.0f, 0.0f), 6.0f) / 6.0f;
    default: return x;
  }
}

std::vector<int32_t> BuildLookupTable(Op::OptionsCase kind, const Tensor& input, const Tensor& output) {
  // TFLite's LUTPopulate (kernels/internal/common.h) for int8/uint8.
  const DType d = input.dtype();
  const int32_t qmin = DTypeMin(d), qmax = DTypeMax(d);
  const float s_in = TensorScale(input), inv_out = 1.0f / TensorScale(output);
  const int32_t zp_in = TensorZeroPoint(input), zp_out = TensorZeroPoint(output);
  std::vector<int32_t> table(256);
  for (int32_t q = qmin; q <= qmax; ++q) {
    const float dequantized = s_in * static_cast<float>(q - zp_in);
    const float rescaled = std::round(LookupFunction(kind, dequantized) * inv_out);
    const int32_t v = static_cast<int32_t>(rescaled + static_cast<float>(zp_out));
    table[q - qmin] = std::min(std::max(v, qmin), qmax);
  }
  return table;
}

absl::StatusOr<std::vector<Shape>> InferShapes(const QuantizedModel& m) {
  if (m.format_version() != kQuantizedModelFormatVersion) {
    return BadModel("format_version", VersionError(m.format_version()));
  }
  const int T = m.tensors_size();
  if (m.inputs_size() != 1) return BadModel("inputs", absl::StrCat(m.inputs_size(), " model inputs; expected 1"));
  if (m.outputs_size() != 1) return BadModel("outputs", absl::StrCat(m.outputs_size(), " model outputs; expected 1"));
  for (int t : {m.inputs(0), m.outputs(0)}) {
    if (t < 0 || t >= T) return BadModel("inputs/outputs", absl::StrCat("tensor index ", t, " is not in [0, ", T, ")"));
  }
  if (m.ops_size() == 0) return BadModel("ops", "the model has no ops");
  std::vector<Shape> shapes(T);
  std::vector<int> producer(T, -2);  // -2: none yet, -1: model input, else op index
  for (int t = 0; t < T; ++t) {
    if (IsConstant(m.tensors(t))) {
      shapes[t] = TensorShape(m.tensors(t));
      producer[t] = -3;  // constant
    }
  }
  {
    const int in = m.inputs(0);
    if (producer[in] == -3) return BadModel("inputs", absl::StrCat(TensorLabel(m, in), " is a constant"));
    shapes[in] = TensorShape(m.tensors(in));
    if (shapes[in].empty() || (shapes[in].size() != 1 && shapes[in].size() != 3)) {
      return BadModel("inputs", absl::StrCat(TensorLabel(m, in), " shape ", ShapeStr(shapes[in]),
                                             "; expected [H, W, C] or [C]"));
    }
    for (int64_t d : shapes[in]) {
      if (d <= 0) return BadModel("inputs", absl::StrCat(TensorLabel(m, in), ": dimensions must be positive"));
    }
    producer[in] = -1;
  }
  std::set<std::string> names;
  for (int i = 0; i < m.ops_size(); ++i) {
    const Op& op = m.ops(i);
    BadFn bad = [&](std::string field, std::string msg) {
      return absl::InvalidArgumentError(absl::StrCat("QuantizedModel: ", OpLabel(m, i), ": ", field, ": ", msg));
    };
    if (op.name().empty()) return bad("name", "empty");
    if (!names.insert(op.name()).second) return bad("name", "used by an earlier op");
    if (op.options_case() == Op::OPTIONS_NOT_SET) return bad("options", "no operation set");
    std::vector<Shape> in;
    for (int k = 0; k < op.inputs_size(); ++k) {
      const int t = op.inputs(k);
      if (t < 0 || t >= T) {
        return bad(absl::StrCat("inputs[", k, "]"), absl::StrCat("unknown tensor index ", t, " (the model has ", T,
                                                                " tensors)"));
      }
      if (producer[t] == -2) {
        return bad(absl::StrCat("inputs[", k, "]"),
                   absl::StrCat(TensorLabel(m, t), " is used before any op produces it (a cycle, or ops out of "
                                                   "topological order)"));
      }
      const bool weight_slot = (op.has_fully_connected() || op.has_conv2d()) && k > 0;
      if (!weight_slot && producer[t] == -3) {
        return bad(absl::StrCat("inputs[", k, "]"), absl::StrCat(TensorLabel(m, t), " is a constant; ", OpKind(op),
                                                                " reads activations there"));
      }
      in.push_back(shapes[t]);
    }
    if (op.outputs_size() != 1) return bad("outputs", absl::StrCat(op.outputs_size(), " outputs; every op has one"));
    const int o = op.outputs(0);
    if (o < 0 || o >= T) {
      return bad("outputs[0]", absl::StrCat("unknown tensor index ", o, " (the model has ", T, " tensors)"));
    }
    if (producer[o] == -3) return bad("outputs[0]", absl::StrCat(TensorLabel(m, o), " is a constant"));
    if (producer[o] != -2) {
      return bad("outputs[0]", absl::StrCat(TensorLabel(m, o), " is already produced by ",
                                            producer[o] == -1 ? std::string("the model input") : OpLabel(m, producer[o])));
    }
    Shape out;
    RETURN_IF_ERROR(OpShape(m, op, in, bad, &out));
    const Shape declared = TensorShape(m.tensors(o));
    if (declared != out) {
      return bad("outputs[0]", absl::StrCat(TensorLabel(m, o), " declares shape ", ShapeStr(declared),
                                            " but the op produces ", ShapeStr(out)));
    }
    shapes[o] = out;
    producer[o] = i;
  }
  if (producer[m.outputs(0)] < 0) {
    return BadModel("outputs", absl::StrCat(TensorLabel(m, m.outputs(0)), " is not produced by any op"));
  }
  return shapes;
}

absl::Status ValidateQuantizedModel(const QuantizedModel& m) {
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(m));
  const Tensor& in = m.tensors(m.inputs(0));
  const DType dtype = in.dtype();
  RETURN_IF_ERROR(CheckActivationQuant(in, dtype == INT8 || dtype == UINT8 ? dtype : INT8,
                                       [](std::string f, std::string msg) { return BadModel(f, msg); },
                                       absl::StrCat("inputs[0] (", TensorLabel(m, m.inputs(0)), ")")));
  for (int i = 0; i < m.ops_size(); ++i) RETURN_IF_ERROR(CheckOpQuant(m, i, shapes, dtype));
  return absl::OkStatus();
}

absl::Status ComputeRequantization(QuantizedModel* model) {
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(*model));
  for (int i = 0; i < model->ops_size(); ++i) {
    Op* op = model->mutable_ops(i);
    auto bad = [&](const std::string& field, const std::string& msg) {
      return absl::InvalidArgumentError(absl::StrCat("QuantizedModel: ", OpLabel(*model, i), ": ", field, ": ", msg));
    };
    for (int k = 0; k < op->inputs_size(); ++k) {
      const Tensor& t = model->tensors(op->inputs(k));
      for (int c = 0; c < t.scale_size(); ++c) {
        if (!GoodScale(t.scale(c))) {
          return bad(absl::StrCat("inputs[", k, "] (", TensorLabel(*model, op->inputs(k)), ").scale[", c, "]"),
                     absl::StrCat(t.scale(c), " is not a finite positive number (a degenerate calibration batch, or "
                                              "an all-zero weight channel?)"));
        }
      }
      if (t.dtype() != INT32 && t.scale_size() == 0) {
        return bad(absl::StrCat("inputs[", k, "] (", TensorLabel(*model, op->inputs(k)), ").scale"), "missing");
      }
    }
    const Tensor& y = model->tensors(op->outputs(0));
    if (y.scale_size() != 1 || !GoodScale(y.scale(0))) {
      return bad(absl::StrCat("outputs[0] (", TensorLabel(*model, op->outputs(0)), ").scale"),
                 absl::StrCat(y.scale_size() ? absl::StrCat(y.scale(0)) : std::string("missing"),
                              ": not a finite positive number (degenerate calibration batch?)"));
    }
    const auto real = RealMultipliers(*model, *op, shapes);
    const std::vector<Requantization*> targets = MutableRequants(op);
    for (size_t r = 0; r < real.size(); ++r) {
      // (RealMultipliers' pointers may be default instances: write through the mutable ones.)
      Requantization* rq = targets[r];
      const std::vector<double>& reals = real[r].second;
      rq->Clear();
      for (size_t o = 0; o < reals.size(); ++o) {
        int32_t mult;
        int shift;
        if (!Expected(reals[o], &mult, &shift)) {
          return bad(absl::StrCat("requant[", o, "]"), absl::StrCat("multiplier ", reals[o], " is not representable"));
        }
        rq->add_multiplier(mult);
        rq->add_shift(shift);
      }
    }
    if (op->has_add()) op->mutable_add()->set_left_shift(kAddLeftShift);
    if (TableOf(*op) != nullptr) {
      LookupTableOptions* t = op->has_hardswish() ? op->mutable_hardswish()
                              : op->has_sigmoid() ? op->mutable_sigmoid()
                                                  : op->mutable_tanh();
      const std::vector<int32_t> table =
          BuildLookupTable(op->options_case(), model->tensors(op->inputs(0)), model->tensors(op->outputs(0)));
      t->mutable_table()->Assign(table.begin(), table.end());
    }
  }
  return absl::OkStatus();
}

int64_t IntegerModelBytes(const QuantizedModel& model) {
  QuantizedModel copy = model;
  for (Tensor& t : *copy.mutable_tensors()) t.clear_float_data();
  return static_cast<int64_t>(copy.ByteSizeLong());
}

int64_t PackedModelBytes(const QuantizedModel& model) {
  int64_t bytes = 0;
  for (const Tensor& t : model.tensors()) {
    bytes += 4 * static_cast<int64_t>(t.scale_size()) + 4 * static_cast<int64_t>(t.zero_point_size());
    const int64_t bits = t.bits() == 0 ? 8 : t.bits();
    bytes += (static_cast<int64_t>(t.data().size()) * bits + 7) / 8;
    bytes += 4 * static_cast<int64_t>(t.int_data_size());
  }
  return bytes;
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
    return absl::InvalidArgumentError(absl::StrCat(where, "format version ", VersionError(static_cast<int>(version))));
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
  // Complete under its name or absent: a truncated .qlq never looks finished.
  return WriteFileAtomically(path, SerializeQuantizedModel(model));
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
  ASSIGN_OR_RETURN(std::vector<Shape> shapes, InferShapes(model));
  const Shape got = shapes[InputTensor(model)];
  if (got != input_shape) {
    return absl::InvalidArgumentError(absl::StrCat("QuantizedModel input_shape ", ShapeStr(got), " differs from the expected ",
                                                   ShapeStr(input_shape)));
  }
  const int64_t n = Numel(shapes[OutputTensor(model)]);
  if (n != num_outputs) {
    return absl::InvalidArgumentError(
        absl::StrCat("QuantizedModel has ", n, " outputs, expected ", num_outputs));
  }
  return absl::OkStatus();
}

}  // namespace quant::backends
