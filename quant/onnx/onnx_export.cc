#include "quant/onnx/onnx_export.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"
#include "onnx/checker.h"
#include "onnx/shape_inference/implementation.h"
#include "quant/core/atomic_file.h"
#include "quant/core/status_macros.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {
namespace {

using backends::DType;
using backends::Op;
using backends::QuantizedModel;
using backends::Shape;
using backends::Tensor;

onnx::TensorProto FloatTensor(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) {
  OnnxTensor t = OnnxTensor::Zeros(onnx_io::DType::kFloat, std::move(shape));
  t.f = v;
  return ToProto(t, name);
}

onnx::TensorProto IntTensor(const std::string& name, onnx_io::DType dtype, std::vector<int64_t> shape,
                            const std::vector<int64_t>& v) {
  OnnxTensor t = OnnxTensor::Zeros(dtype, std::move(shape));
  t.i = v;
  return ToProto(t, name);
}

onnx_io::DType Io(DType t) {
  return t == backends::INT8    ? onnx_io::DType::kInt8
         : t == backends::UINT8 ? onnx_io::DType::kUint8
                                : onnx_io::DType::kInt32;
}

class Exporter {
 public:
  // qoperator: QLinearConv / MatMulInteger on integer values between ops
  // instead of float ops between QuantizeLinear / DequantizeLinear pairs.
  Exporter(const QuantizedModel& m, bool qoperator) : m_(m), qop_(qoperator) {}

  absl::StatusOr<onnx::ModelProto> Run() {
    absl::StatusOr<std::vector<Shape>> shapes = backends::InferShapes(m_);
    if (!shapes.ok()) return shapes.status();
    shapes_ = std::move(shapes).value();
    out_.set_ir_version(8);
    out_.set_producer_name("quantlab");
    // HardSwish exists from opset 14; everything else here from 13 (per-axis QDQ).
    bool hardswish = false;
    for (const Op& op : m_.ops()) hardswish = hardswish || op.options_case() == Op::kHardswish;
    out_.add_opset_import()->set_version(hardswish ? 14 : kExportOpset);
    g_ = out_.mutable_graph();
    g_->set_name(m_.source_model().empty() ? "quantlab" : m_.source_model());
    const int in = backends::InputTensor(m_);
    // The float input, NCHW.
    onnx::ValueInfoProto* x = g_->add_input();
    x->set_name("input");
    x->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    x->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : Nchw(shapes_[in]))
      x->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
    Quantize("input", in);
    for (int k = 0; k < m_.ops_size(); ++k) {
      if (absl::Status s = ExportOp(k); !s.ok()) return s;
    }
    const int out = backends::OutputTensor(m_);
    onnx::ValueInfoProto* y = g_->add_output();
    y->set_name(FloatOf(out));
    y->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
    y->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_param("N");
    for (int64_t d : Nchw(shapes_[out]))
      y->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(d);
    for (const auto& [k, v] : metadata_) {
      onnx::StringStringEntryProto* e = out_.add_metadata_props();
      e->set_key(k);
      e->set_value(v);
    }
    try {
      onnx::checker::check_model(out_);
      onnx::shape_inference::InferShapes(out_, onnx::OpSchemaRegistry::Instance(),
                                         onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1));
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("the exported ONNX model fails onnx::checker / shape inference: ", e.what()));
    }
    return out_;
  }

 private:
  // [H, W, C] -> [C, H, W]; [C] stays.
  static std::vector<int64_t> Nchw(const Shape& s) {
    if (s.size() == 3) return {s[2], s[0], s[1]};
    return s;
  }

  std::string TName(int t) const { return m_.tensors(t).name().empty() ? absl::StrCat("t", t) : m_.tensors(t).name(); }
  std::string IntName(int t) const { return TName(t) + "_q"; }  // tensor t's integers (QOperator form)
  // The float value carrying tensor t: its DequantizeLinear (made once, on demand, in the QOperator form).
  std::string FloatOf(int t) {
    auto it = float_name_.find(t);
    if (it != float_name_.end()) return it->second;
    auto [sc, zp] = QParams(t);
    const std::string base = TName(t);
    Node("DequantizeLinear", {IntName(t), sc, zp}, base + "_dq", base + "_dequantize");
    return float_name_[t] = base + "_dq";
  }
  // The float `value` quantized as tensor t: Q + DQ (QDQ form) or Q alone (QOperator form).
  void Quantize(const std::string& value, int t) {
    if (!qop_) {
      QuantizeDequantize(value, t);
      return;
    }
    auto [sc, zp] = QParams(t);
    Node("QuantizeLinear", {value, sc, zp}, IntName(t), TName(t) + "_quantize");
  }
  // Whether op's clamp is narrower than its output type.
  bool NeedsClamp(const Op& op, int out) const {
    const DType t = m_.tensors(out).dtype();
    return op.output_min() > DTypeMin(t) || op.output_max() < DTypeMax(t);
  }
  // QOperator form: the op wrote `raw` (integers); its clamp as an integer Clip into IntName(out).
  void IntClamp(const Op& op, const std::string& raw, int out) {
    if (!NeedsClamp(op, out)) return;
    const std::string base = TName(out);
    const onnx_io::DType t = Io(m_.tensors(out).dtype());
    *g_->add_initializer() = IntTensor(base + "_clip_min", t, {}, {op.output_min()});
    *g_->add_initializer() = IntTensor(base + "_clip_max", t, {}, {op.output_max()});
    Node("Clip", {raw, base + "_clip_min", base + "_clip_max"}, IntName(out), base + "_clip");
  }

  onnx::NodeProto* Node(const std::string& op, std::vector<std::string> in, const std::string& out,
                        const std::string& name) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const std::string& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void Ints(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void Int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }

  // Scale and zero point initializers of tensor t: scalars, or 1-D per channel.
  std::pair<std::string, std::string> QParams(int t) {
    if (auto it = qparams_.find(t); it != qparams_.end()) return it->second;
    const Tensor& q = m_.tensors(t);
    const std::string base = TName(t);
    std::vector<float> s(q.scale().begin(), q.scale().end());
    std::vector<int64_t> z(q.zero_point().begin(), q.zero_point().end());
    if (z.empty()) z.assign(s.size(), 0);
    const bool per_channel = backends::IsPerChannel(q);
    std::vector<int64_t> shape =
        per_channel ? std::vector<int64_t>{static_cast<int64_t>(s.size())} : std::vector<int64_t>{};
    if (!per_channel) {
      s.resize(1);
      z.resize(1);
    }
    *g_->add_initializer() = FloatTensor(base + "_scale", shape, s);
    *g_->add_initializer() = IntTensor(base + "_zero_point", Io(q.dtype()), shape, z);
    return qparams_[t] = {base + "_scale", base + "_zero_point"};
  }

  // `value` (float) -> QuantizeLinear -> "<t>_q" -> DequantizeLinear -> the float name of t.
  void QuantizeDequantize(const std::string& value, int t) {
    auto [s, z] = QParams(t);
    const std::string base = TName(t);
    Node("QuantizeLinear", {value, s, z}, IntName(t), base + "_quantize");
    Node("DequantizeLinear", {base + "_q", s, z}, base + "_dq", base + "_dequantize");
    float_name_[t] = base + "_dq";
  }

  // A constant (weights, bias) as integer initializer + DequantizeLinear.
  // With dequantize false (QOperator form) only the initializers: "<t>_q", "<t>_scale", "<t>_zero_point".
  std::string ConstantDq(int t, const std::vector<int64_t>& shape, const std::vector<int64_t>& values,
                         const std::vector<float>& scales, int64_t axis, bool dequantize = true) {
    const Tensor& q = m_.tensors(t);
    const std::string base = TName(t);
    *g_->add_initializer() = IntTensor(base + "_q", Io(q.dtype()), shape, values);
    const bool per_channel = scales.size() > 1;
    std::vector<int64_t> sshape =
        per_channel ? std::vector<int64_t>{static_cast<int64_t>(scales.size())} : std::vector<int64_t>{};
    *g_->add_initializer() = FloatTensor(base + "_scale", sshape, scales);
    std::vector<int64_t> z(scales.size(), 0);
    for (size_t c = 0; c < z.size() && c < static_cast<size_t>(q.zero_point_size()); ++c) z[c] = q.zero_point(c);
    if (q.zero_point_size() == 1) z.assign(scales.size(), q.zero_point(0));
    *g_->add_initializer() = IntTensor(base + "_zero_point", Io(q.dtype()), sshape, z);
    if (dequantize) {
      onnx::NodeProto* n = Node("DequantizeLinear", {base + "_q", base + "_scale", base + "_zero_point"}, base + "_dq",
                                base + "_dequantize");
      if (per_channel) Int(n, "axis", axis);
    }
    const int bits = q.bits() == 0 ? 8 : q.bits();
    if (bits < 8) {
      const bool is_signed = q.dtype() == backends::INT8;
      metadata_[absl::StrCat("quantlab.bits.", base)] =
          absl::StrCat(bits, " bits: values in [", is_signed ? -(1 << (bits - 1)) : 0, ", ",
                       is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1, "] of ", backends::DTypeName(q.dtype()));
    }
    return base + "_dq";
  }

  // The bias at scale s_in * s_w[o], zero point 0.
  std::string BiasDq(int b, int in, int w, int64_t out_channels) {
    const std::vector<int32_t> v = backends::TensorValues(m_.tensors(b));
    std::vector<float> scales(out_channels);
    for (int64_t o = 0; o < out_channels; ++o) {
      scales[o] = backends::TensorScale(m_.tensors(in)) *
                  backends::TensorScale(m_.tensors(w), backends::IsPerChannel(m_.tensors(w)) ? static_cast<int>(o) : 0);
    }
    const Tensor& wt = m_.tensors(w);
    if (!backends::IsPerChannel(wt)) scales.resize(1);
    const std::string base = TName(b);
    *g_->add_initializer() =
        IntTensor(base + "_q", onnx_io::DType::kInt32, {out_channels}, std::vector<int64_t>(v.begin(), v.end()));
    std::vector<int64_t> sshape = scales.size() > 1 ? std::vector<int64_t>{out_channels} : std::vector<int64_t>{};
    *g_->add_initializer() = FloatTensor(base + "_scale", sshape, scales);
    *g_->add_initializer() =
        IntTensor(base + "_zero_point", onnx_io::DType::kInt32, sshape, std::vector<int64_t>(scales.size(), 0));
    onnx::NodeProto* n = Node("DequantizeLinear", {base + "_q", base + "_scale", base + "_zero_point"}, base + "_dq",
                              base + "_dequantize");
    if (scales.size() > 1) Int(n, "axis", 0);
    return base + "_dq";
  }

  // The op's clamp as Relu / Clip on its float result, then the output's Q/DQ.
  void Finish(const Op& op, const std::string& value, int out) {
    const Tensor& t = m_.tensors(out);
    const int32_t lo = DTypeMin(t.dtype()), hi = DTypeMax(t.dtype());
    const int32_t zp = backends::TensorZeroPoint(t);
    const float s = backends::TensorScale(t);
    std::string v = value;
    const bool clamp_lo = op.output_min() > lo, clamp_hi = op.output_max() < hi;
    if (clamp_lo || clamp_hi) {
      const std::string base = TName(out);
      if (op.output_min() == zp && !clamp_hi) {
        Node("Relu", {v}, base + "_relu", base + "_relu");
        v = base + "_relu";
      } else {
        // Clip in the real domain at the clamp's grid points.
        *g_->add_initializer() = FloatTensor(base + "_clip_min", {}, {s * static_cast<float>(op.output_min() - zp)});
        *g_->add_initializer() = FloatTensor(base + "_clip_max", {}, {s * static_cast<float>(op.output_max() - zp)});
        Node("Clip", {v, base + "_clip_min", base + "_clip_max"}, base + "_clip", base + "_clip");
        v = base + "_clip";
      }
    }
    Quantize(v, out);
  }

  // Index of the op producing tensor t, or -1.
  int Producer(int t) const {
    for (int k = 0; k < m_.ops_size(); ++k) {
      if (m_.ops(k).outputs(0) == t) return k;
    }
    return -1;
  }

  absl::Status ExportOp(int k) {
    const Op& op = m_.ops(k);
    const std::string label = backends::OpLabel(m_, k);
    const std::string name = op.name().empty() ? absl::StrCat("op", k) : op.name();
    const int out = op.outputs(0);
    const int in0 = op.inputs_size() > 0 ? op.inputs(0) : -1;
    // The float input (made on demand in the QOperator form, where only float ops read it).
    auto x = [&]() { return FloatOf(in0); };
    switch (op.options_case()) {
      case Op::kConv2D: {
        const backends::Conv2DOptions& c = op.conv2d();
        const int w = backends::WeightTensor(op), b = backends::BiasTensor(op);
        const Tensor& wt = m_.tensors(w);
        const Shape ws = backends::TensorShape(wt);  // O, KH, KW, I/g
        const std::vector<int32_t> wv = backends::TensorValues(wt);
        std::vector<int64_t> oihw(wv.size());
        for (int64_t o = 0; o < ws[0]; ++o)
          for (int64_t h = 0; h < ws[1]; ++h)
            for (int64_t ww = 0; ww < ws[2]; ++ww)
              for (int64_t i = 0; i < ws[3]; ++i)
                oihw[((o * ws[3] + i) * ws[1] + h) * ws[2] + ww] = wv[((o * ws[1] + h) * ws[2] + ww) * ws[3] + i];
        std::vector<float> scales(wt.scale().begin(), wt.scale().end());
        if (!backends::IsPerChannel(wt)) scales.resize(1);
        onnx::NodeProto* n;
        if (qop_) {
          // QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, B) requantizes itself.
          ConstantDq(w, {ws[0], ws[3], ws[1], ws[2]}, oihw, scales, 0, /*dequantize=*/false);
          auto [xs, xz] = QParams(in0);
          auto [ys, yz] = QParams(out);
          const std::string wb = TName(w);
          std::vector<std::string> ins = {IntName(in0), xs, xz, wb + "_q", wb + "_scale", wb + "_zero_point", ys, yz};
          if (b >= 0) {
            const std::vector<int32_t> bv = backends::TensorValues(m_.tensors(b));
            *g_->add_initializer() =
                IntTensor(TName(b) + "_q", onnx_io::DType::kInt32, {ws[0]}, std::vector<int64_t>(bv.begin(), bv.end()));
            ins.push_back(TName(b) + "_q");
          }
          n = Node("QLinearConv", ins, NeedsClamp(op, out) ? name + "_raw" : IntName(out), name);
        } else {
          std::vector<std::string> ins = {x(), ConstantDq(w, {ws[0], ws[3], ws[1], ws[2]}, oihw, scales, 0)};
          if (b >= 0) ins.push_back(BiasDq(b, op.inputs(0), w, ws[0]));
          n = Node("Conv", ins, name + "_out", name);
        }
        Ints(n, "kernel_shape", {c.kernel_h(), c.kernel_w()});
        Ints(n, "strides", {c.stride_h(), c.stride_w()});
        Ints(n, "pads", {c.pad_top(), c.pad_left(), c.pad_bottom(), c.pad_right()});
        Int(n, "group", std::max(c.groups(), 1));
        if (qop_) {
          IntClamp(op, name + "_raw", out);
        } else {
          Finish(op, name + "_out", out);
        }
        return absl::OkStatus();
      }
      case Op::kFullyConnected: {
        const int w = backends::WeightTensor(op), b = backends::BiasTensor(op);
        const Tensor& wt = m_.tensors(w);
        const Shape ws = backends::TensorShape(wt);  // O, I
        std::vector<int32_t> wv = backends::TensorValues(wt);
        std::vector<int64_t> v(wv.begin(), wv.end());
        // After a Flatten of [H, W, C], the columns are in NHWC order: back to NCHW.
        const int p = Producer(op.inputs(0));
        if (p >= 0 && m_.ops(p).options_case() == Op::kFlatten) {
          const Shape& hwc = shapes_[m_.ops(p).inputs(0)];
          if (hwc.size() == 3) {
            const int64_t H = hwc[0], W = hwc[1], C = hwc[2];
            for (int64_t o = 0; o < ws[0]; ++o)
              for (int64_t c = 0; c < C; ++c)
                for (int64_t h = 0; h < H; ++h)
                  for (int64_t ww = 0; ww < W; ++ww)
                    v[o * ws[1] + (c * H + h) * W + ww] = wv[o * ws[1] + (h * W + ww) * C + c];
          }
        }
        std::vector<float> scales(wt.scale().begin(), wt.scale().end());
        if (!backends::IsPerChannel(wt)) scales.resize(1);
        if (qop_) {
          // MatMulInteger(x, W^T, x_zp, w_zp) (+ the int32 bias), dequantized at s_x * s_w[o], then quantized.
          std::vector<int64_t> vt(v.size());
          for (int64_t o = 0; o < ws[0]; ++o)
            for (int64_t i = 0; i < ws[1]; ++i) vt[i * ws[0] + o] = v[o * ws[1] + i];
          ConstantDq(w, {ws[1], ws[0]}, vt, scales, 1, /*dequantize=*/false);
          auto [xs, xz] = QParams(in0);
          const std::string wb = TName(w);
          Node("MatMulInteger", {IntName(in0), wb + "_q", xz, wb + "_zero_point"}, name + "_acc", name);
          std::string acc = name + "_acc";
          if (b >= 0) {
            const std::vector<int32_t> bv = backends::TensorValues(m_.tensors(b));
            *g_->add_initializer() =
                IntTensor(TName(b) + "_q", onnx_io::DType::kInt32, {ws[0]}, std::vector<int64_t>(bv.begin(), bv.end()));
            Node("Add", {acc, TName(b) + "_q"}, name + "_acc_bias", name + "_bias");
            acc = name + "_acc_bias";
          }
          std::vector<float> acc_scale(scales.size());
          for (size_t o = 0; o < scales.size(); ++o) acc_scale[o] = backends::TensorScale(m_.tensors(in0)) * scales[o];
          std::vector<int64_t> sshape = acc_scale.size() > 1 ? std::vector<int64_t>{ws[0]} : std::vector<int64_t>{};
          *g_->add_initializer() = FloatTensor(name + "_acc_scale", sshape, acc_scale);
          *g_->add_initializer() = IntTensor(name + "_acc_zero_point", onnx_io::DType::kInt32, sshape,
                                             std::vector<int64_t>(acc_scale.size(), 0));
          onnx::NodeProto* dq = Node("DequantizeLinear", {acc, name + "_acc_scale", name + "_acc_zero_point"},
                                     name + "_out", name + "_dequantize");
          if (acc_scale.size() > 1) Int(dq, "axis", 1);
          Finish(op, name + "_out", out);
          return absl::OkStatus();
        }
        std::vector<std::string> ins = {x(), ConstantDq(w, {ws[0], ws[1]}, v, scales, 0)};
        if (b >= 0) ins.push_back(BiasDq(b, op.inputs(0), w, ws[0]));
        Int(Node("Gemm", ins, name + "_out", name), "transB", 1);
        Finish(op, name + "_out", out);
        return absl::OkStatus();
      }
      case Op::kMaxPool2D:
      case Op::kAveragePool2D: {
        const backends::Pool2DOptions& c = op.options_case() == Op::kMaxPool2D ? op.max_pool2d() : op.average_pool2d();
        const bool max = op.options_case() == Op::kMaxPool2D;
        // QOperator form: MaxPool runs on the integers (same qparams); AveragePool in float.
        const bool integer = qop_ && max;
        onnx::NodeProto* n = Node(max ? "MaxPool" : "AveragePool", {integer ? IntName(in0) : x()},
                                  integer ? (NeedsClamp(op, out) ? name + "_raw" : IntName(out)) : name + "_out", name);
        Ints(n, "kernel_shape", {c.kernel_h(), c.kernel_w()});
        Ints(n, "strides", {c.stride_h(), c.stride_w()});
        Ints(n, "pads", {c.pad_top(), c.pad_left(), c.pad_bottom(), c.pad_right()});
        if (integer) {
          IntClamp(op, name + "_raw", out);
        } else {
          Finish(op, name + "_out", out);
        }
        return absl::OkStatus();
      }
      case Op::kGlobalAveragePool: {
        Node("GlobalAveragePool", {x()}, name + "_pool", name);
        Int(Node("Flatten", {name + "_pool"}, name + "_out", name + "_flatten"), "axis", 1);
        Finish(op, name + "_out", out);
        return absl::OkStatus();
      }
      case Op::kAdd:
        Node("Add", {x(), FloatOf(op.inputs(1))}, name + "_out", name);
        Finish(op, name + "_out", out);
        return absl::OkStatus();
      case Op::kConcat: {
        std::vector<std::string> ins;
        for (int i : op.inputs()) ins.push_back(FloatOf(i));
        Int(Node("Concat", ins, name + "_out", name), "axis", 1);
        Finish(op, name + "_out", out);
        return absl::OkStatus();
      }
      case Op::kHardswish:
      case Op::kSigmoid:
      case Op::kTanh:
        Node(op.options_case() == Op::kHardswish ? "HardSwish"
             : op.options_case() == Op::kSigmoid ? "Sigmoid"
                                                 : "Tanh",
             {x()}, name + "_out", name);
        Finish(op, name + "_out", out);
        return absl::OkStatus();
      case Op::kFlatten:
        // Same qparams, so the Q/DQ after it is exact; it gives the next Gemm a DequantizeLinear input.
        if (qop_) {  // the integers flattened (same qparams)
          Int(Node("Flatten", {IntName(in0)}, NeedsClamp(op, out) ? name + "_raw" : IntName(out), name), "axis", 1);
          IntClamp(op, name + "_raw", out);
          return absl::OkStatus();
        }
        Int(Node("Flatten", {x()}, name + "_out", name), "axis", 1);
        QuantizeDequantize(name + "_out", out);
        return absl::OkStatus();
      default:
        return absl::UnimplementedError(absl::StrCat(label, " cannot be exported to ONNX yet"));
    }
  }

  const QuantizedModel& m_;
  std::vector<Shape> shapes_;
  onnx::ModelProto out_;
  onnx::GraphProto* g_ = nullptr;
  const bool qop_;
  std::map<int, std::string> float_name_;                       // tensor -> the ONNX float value carrying it
  std::map<int, std::pair<std::string, std::string>> qparams_;  // tensor -> its scale / zero point initializers
  std::map<std::string, std::string> metadata_;
};

// Reads back the models ExportQdq and ExportQOperator write. QDQ: every
// activation a QuantizeLinear -> DequantizeLinear pair, each weight and bias an
// integer initializer behind a DequantizeLinear, the float ops in between.
// QOperator: QLinearConv, MatMulInteger (+ int32 bias Add, DequantizeLinear at
// s_x * s_w), MaxPool / Flatten / Clip on integers, the rest as in QDQ.
class QuantizedImporter {
 public:
  QuantizedImporter(const onnx::ModelProto& m, const std::string& file) : m_(m), file_(file) {}

  absl::StatusOr<QuantizedModel> Run() {
    const onnx::GraphProto& g = m_.graph();
    for (const onnx::TensorProto& t : g.initializer()) {
      absl::StatusOr<OnnxTensor> v = FromProto(t, absl::StrCat(file_, ": initializer '", t.name(), "'"));
      if (!v.ok()) return v.status();
      init_[t.name()] = std::move(v).value();
    }
    for (const onnx::StringStringEntryProto& p : m_.metadata_props()) {
      if (p.key().rfind("quantlab.bits.", 0) == 0) bits_[p.key().substr(14)] = std::atoi(p.value().c_str());
    }
    out_.set_format_version(backends::kQuantizedModelFormatVersion);
    out_.set_source_model(g.name());
    if (g.input_size() != 1) return Bad("the graph needs one input");
    const onnx::TensorShapeProto& s = g.input(0).type().tensor_type().shape();
    Shape shape;
    for (int d = 1; d < s.dim_size(); ++d) {
      if (s.dim(d).dim_value() < 1 || s.dim(d).dim_value() > kMaxWindow * 16)
        return Bad(absl::StrCat("input '", g.input(0).name(), "': dimension ", d, " must be a static size in [1, ",
                                kMaxWindow * 16, "]"));
      shape.push_back(s.dim(d).dim_value());
    }
    if (backends::Numel(shape) > (int64_t{1} << 28))
      return Bad(absl::StrCat("input '", g.input(0).name(), "': more than 2^28 values per sample"));
    if (shape.size() != 1 && shape.size() != 3)
      return Bad(absl::StrCat("input '", g.input(0).name(), "': [N, C, H, W] or [N, features] expected"));
    if (shape.size() == 3) shape = {shape[1], shape[2], shape[0]};  // CHW -> HWC
    input_shape_ = shape;
    pending_[g.input(0).name()] = Pending{-2};
    for (int k = 0; k < g.node_size(); ++k) {
      if (absl::Status st = Node(k); !st.ok()) return st;
    }
    if (g.output_size() != 1 || !float_.count(g.output(0).name()))
      return Bad("the graph output is not a dequantized tensor");
    out_.add_outputs(float_[g.output(0).name()]);
    if (absl::Status st = backends::ComputeRequantization(&out_); !st.ok()) return st;
    if (absl::Status st = backends::ValidateQuantizedModel(out_); !st.ok()) return st;
    return out_;
  }

 private:
  // A float op whose output is not quantized yet (Relu/Clip may follow).
  struct Pending {
    int op = -1;  // index in out_.ops, or -2 for the model input
    bool relu = false;
    const OnnxTensor* clip_lo = nullptr;
    const OnnxTensor* clip_hi = nullptr;
  };
  struct ConstDq {
    std::string base;
    const OnnxTensor* q = nullptr;
    const OnnxTensor* scale = nullptr;
    const OnnxTensor* zero_point = nullptr;
  };

  static constexpr int64_t kMaxWindow = 4096;  // kernel, stride, pad and group bound; input dims up to its square

  absl::Status Bad(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrCat(file_, ": ", what));
  }
  const OnnxTensor* Init(const std::string& name) const {
    auto it = init_.find(name);
    return it == init_.end() ? nullptr : &it->second;
  }
  // A non-empty float initializer, or nullptr.
  const OnnxTensor* FloatInit(const std::string& name) const {
    const OnnxTensor* t = Init(name);
    return t != nullptr && t->is_float() && t->numel() > 0 && static_cast<int64_t>(t->f.size()) == t->numel() ? t
                                                                                                              : nullptr;
  }
  // A non-empty int8 / uint8 / int32 initializer, or nullptr.
  const OnnxTensor* IntInit(const std::string& name) const {
    const OnnxTensor* t = Init(name);
    const bool integer = t != nullptr && (t->dtype == onnx_io::DType::kInt8 || t->dtype == onnx_io::DType::kUint8 ||
                                          t->dtype == onnx_io::DType::kInt32);
    return integer && t->numel() > 0 && static_cast<int64_t>(t->i.size()) == t->numel() ? t : nullptr;
  }
  // Integers, their float scales and zero points of as many values (or nullptr for an int32 bias).
  absl::StatusOr<ConstDq> Constant(const onnx::NodeProto& n, const std::string& q, const std::string& scale,
                                   const std::string& zero_point) const {
    ConstDq c{Base(q, "_q"), IntInit(q), FloatInit(scale), IntInit(zero_point)};
    if (c.q == nullptr || c.scale == nullptr || c.zero_point == nullptr || c.scale->numel() != c.zero_point->numel() ||
        c.zero_point->dtype != c.q->dtype)
      return Bad(absl::StrCat("node '", n.name(), "': an integer initializer '", q,
                              "' with a float scale and a zero point of its type (as many values) expected"));
    return c;
  }
  // An int32 bias initializer of `count` values.
  absl::StatusOr<ConstDq> Bias(const onnx::NodeProto& n, const std::string& name, int64_t count) const {
    const OnnxTensor* b = IntInit(name);
    if (b == nullptr || b->dtype != onnx_io::DType::kInt32 || b->numel() != count)
      return Bad(
          absl::StrCat("node '", n.name(), "': an int32 bias initializer '", name, "' of ", count, " values expected"));
    return ConstDq{Base(name, "_q"), b};
  }
  static std::string Base(const std::string& name, const std::string& suffix) {
    return name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0
               ? name.substr(0, name.size() - suffix.size())
               : name;
  }
  static DType Dt(onnx_io::DType t) {
    return t == onnx_io::DType::kInt8    ? backends::INT8
           : t == onnx_io::DType::kUint8 ? backends::UINT8
                                         : backends::INT32;
  }

  // A new constant tensor from an integer initializer and its DQ parameters.
  int AddConstant(const ConstDq& c, const Shape& shape, const std::vector<int64_t>& values) {
    Tensor* t = out_.add_tensors();
    t->set_name(c.base);
    for (int64_t d : shape) t->add_shape(static_cast<int32_t>(d));
    t->set_dtype(Dt(c.q->dtype));
    if (t->dtype() != backends::INT32) {  // int32 biases carry no qparams of their own (s_in * s_w[o])
      for (float s : c.scale->f) t->add_scale(s);
      for (int64_t z : c.zero_point->i) t->add_zero_point(static_cast<int32_t>(z));
      t->set_quantized_dimension(0);
      t->set_bits(bits_.count(c.base) ? bits_.at(c.base) : 8);
      std::string bytes;
      for (int64_t v : values) bytes.push_back(static_cast<char>(v));
      t->set_data(bytes);
    } else {
      for (int64_t v : values) t->add_int_data(static_cast<int32_t>(v));
    }
    return out_.tensors_size() - 1;
  }

  // Kernel, strides and pads [top, left, bottom, right] of a Conv2DOptions or Pool2DOptions.
  template <typename Options>
  absl::Status SetWindow(const onnx::NodeProto& n, const std::vector<int64_t>& kernel, Options* o) const {
    const std::vector<int64_t> st = IntsAttr(n, "strides"), pads = IntsAttr(n, "pads");
    auto in = [](const std::vector<int64_t>& v, int64_t lo) {
      for (int64_t x : v)
        if (x < lo || x > kMaxWindow) return false;
      return true;
    };
    if (kernel.size() != 2 || !in(kernel, 1) || !(st.empty() || (st.size() == 2 && in(st, 1))) ||
        !(pads.empty() || (pads.size() == 4 && in(pads, 0))))
      return Bad(absl::StrCat("node '", n.name(), "': a 2-D kernel, strides >= 1 and 4 pads >= 0 (at most ", kMaxWindow,
                              ") expected"));
    o->set_kernel_h(static_cast<int32_t>(kernel[0]));
    o->set_kernel_w(static_cast<int32_t>(kernel[1]));
    o->set_stride_h(st.empty() ? 1 : st[0]);
    o->set_stride_w(st.empty() ? 1 : st[1]);
    if (pads.size() == 4) {
      o->set_pad_top(pads[0]);
      o->set_pad_left(pads[1]);
      o->set_pad_bottom(pads[2]);
      o->set_pad_right(pads[3]);
    }
    return absl::OkStatus();
  }

  absl::Status SetGroups(const onnx::NodeProto& n, backends::Conv2DOptions* c) const {
    const int64_t g = IntAttr(n, "group", 1);
    if (g < 1 || g > kMaxWindow * kMaxWindow)
      return Bad(absl::StrCat("node '", n.name(), "': group = ", g, " (a positive number expected)"));
    c->set_groups(static_cast<int32_t>(g));
    return absl::OkStatus();
  }

  absl::StatusOr<int> Activation(const onnx::NodeProto& n, int input) const {
    auto it = float_.find(n.input(input));
    if (it == float_.end())
      return Bad(absl::StrCat("node '", n.name(), "': input '", n.input(input), "' is not a dequantized activation"));
    return it->second;
  }

  Op* NewOp(const onnx::NodeProto& n, std::vector<int> inputs, const std::string& value) {
    Op* op = out_.add_ops();
    op->set_name(n.name());
    for (int i : inputs) op->add_inputs(i);
    pending_[value] = Pending{out_.ops_size() - 1};
    return op;
  }

  absl::Status Node(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    const std::string& op = n.op_type();
    // The inputs each handler reads (at least); fewer is an error, not an out-of-range read.
    static const std::map<std::string, int> kInputs = {{"DequantizeLinear", 2},
                                                       {"QuantizeLinear", 3},
                                                       {"Relu", 1},
                                                       {"Clip", 1},
                                                       {"Conv", 2},
                                                       {"Gemm", 2},
                                                       {"QLinearConv", 8},
                                                       {"MatMulInteger", 4},
                                                       {"MaxPool", 1},
                                                       {"AveragePool", 1},
                                                       {"Flatten", 1},
                                                       {"GlobalAveragePool", 1},
                                                       {"Add", 2},
                                                       {"Concat", 1},
                                                       {"HardSwish", 1},
                                                       {"Sigmoid", 1},
                                                       {"Tanh", 1}};
    auto arity = kInputs.find(op);
    if (arity != kInputs.end() && (n.input_size() < arity->second || n.output_size() < 1))
      return Bad(absl::StrCat("node '", n.name(), "' (", op, "): ", arity->second, " inputs and an output expected"));
    if (op == "DequantizeLinear") {
      if (Init(n.input(0)) != nullptr) {  // a weight or bias
        if (n.input_size() < 3) return Bad(absl::StrCat("node '", n.name(), "': a constant's zero point expected"));
        ASSIGN_OR_RETURN(const_[n.output(0)], Constant(n, n.input(0), n.input(1), n.input(2)));
        return absl::OkStatus();
      }
      if (auto acc = acc_.find(n.input(0)); acc != acc_.end()) return DequantizeAccumulator(n, acc->second);
      auto it = quantized_.find(n.input(0));
      if (it == quantized_.end())
        return Bad(
            absl::StrCat("node '", n.name(), "': dequantizes '", n.input(0), "', which no QuantizeLinear produced"));
      float_[n.output(0)] = it->second;
      return absl::OkStatus();
    }
    if (op == "QuantizeLinear") {
      auto it = pending_.find(n.input(0));
      if (it == pending_.end())
        return Bad(absl::StrCat("node '", n.name(), "': quantizes '", n.input(0), "', which is not an op's output"));
      const OnnxTensor* s = FloatInit(n.input(1));
      const OnnxTensor* z = IntInit(n.input(2));
      if (s == nullptr || z == nullptr || s->numel() != 1 || z->numel() != 1)
        return Bad(absl::StrCat("node '", n.name(), "': per-tensor constant scale and zero point expected"));
      Tensor* t = out_.add_tensors();
      const int ti = out_.tensors_size() - 1;
      t->set_name(Base(n.output(0), "_q"));
      t->set_dtype(Dt(z->dtype));
      t->add_scale(s->f[0]);
      t->add_zero_point(static_cast<int32_t>(z->i[0]));
      const Pending p = it->second;
      if (p.op == -2) {
        for (int64_t d : input_shape_) t->add_shape(static_cast<int32_t>(d));
        out_.add_inputs(ti);
      } else {
        Op* o = out_.mutable_ops(p.op);
        o->add_outputs(ti);
        int32_t lo = backends::DTypeMin(t->dtype()), hi = backends::DTypeMax(t->dtype());
        if (p.relu) lo = t->zero_point(0);
        if (p.clip_lo != nullptr)
          lo = std::max<int32_t>(lo, static_cast<int32_t>(std::lround(p.clip_lo->f[0] / s->f[0])) + t->zero_point(0));
        if (p.clip_hi != nullptr)
          hi = std::min<int32_t>(hi, static_cast<int32_t>(std::lround(p.clip_hi->f[0] / s->f[0])) + t->zero_point(0));
        o->set_output_min(lo);
        o->set_output_max(hi);
        if (p.relu) o->set_fused_activation(backends::RELU);
        absl::StatusOr<std::vector<Shape>> shapes = OutputShape(*o);
        if (!shapes.ok()) return shapes.status();
        for (int64_t d : shapes->back()) t->add_shape(static_cast<int32_t>(d));
      }
      quantized_[n.output(0)] = ti;
      return absl::OkStatus();
    }
    if (op == "Clip" && int_ops_.count(n.input(0))) return IntegerClip(n);
    if (op == "Relu" || op == "Clip") {
      auto it = pending_.find(n.input(0));
      if (it == pending_.end()) return Bad(absl::StrCat("node '", n.name(), "': ", op, " must follow a float op"));
      Pending p = it->second;
      if (op == "Relu") {
        p.relu = true;
      } else {
        // Absent bounds are missing inputs or empty names; given ones must be float scalars.
        for (int b = 1; b <= 2; ++b) {
          if (n.input_size() <= b || n.input(b).empty()) continue;
          const OnnxTensor* v = FloatInit(n.input(b));
          if (v == nullptr || v->numel() != 1)
            return Bad(absl::StrCat("node '", n.name(), "': Clip bound '", n.input(b), "' is not a float constant"));
          (b == 1 ? p.clip_lo : p.clip_hi) = v;
        }
      }
      pending_[n.output(0)] = p;
      return absl::OkStatus();
    }
    if (op == "Conv") {
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      ASSIGN_OR_RETURN(const ConstDq* w, DequantizedWeight(n, 4));
      std::vector<int> ins = {x, ConvWeight(*w)};
      if (n.input_size() > 2) {
        ASSIGN_OR_RETURN(const ConstDq* b, DequantizedBias(n, w->q->shape[0]));
        ins.push_back(AddConstant(*b, {w->q->shape[0]}, b->q->i));
      }
      backends::Conv2DOptions* c = NewOp(n, ins, n.output(0))->mutable_conv2d();
      RETURN_IF_ERROR(SetGroups(n, c));
      return SetWindow(n, {w->q->shape[2], w->q->shape[3]}, c);
    }
    if (op == "QLinearConv") return QLinearConv(n);
    if (op == "MatMulInteger") return MatMulInteger(n);
    if (op == "Gemm") {
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      if (IntAttr(n, "transB", 0) != 1)
        return Bad(absl::StrCat("node '", n.name(), "': a [out, in] weight with transB = 1 expected"));
      ASSIGN_OR_RETURN(const ConstDq* w, DequantizedWeight(n, 2));
      const OnnxTensor& q = *w->q;
      const int64_t O = q.shape[0], I = q.shape[1];
      ASSIGN_OR_RETURN(std::vector<int64_t> columns, NhwcColumns(n, x, O, I, q.i));
      std::vector<int> ins = {x, AddConstant(*w, {O, I}, columns)};
      if (n.input_size() > 2) {
        ASSIGN_OR_RETURN(const ConstDq* b, DequantizedBias(n, O));
        ins.push_back(AddConstant(*b, {O}, b->q->i));
      }
      NewOp(n, ins, n.output(0))->mutable_fully_connected();
      return absl::OkStatus();
    }
    if (op == "MaxPool" && quantized_.count(n.input(0))) {  // QOperator: on the integers
      const int x = quantized_[n.input(0)];
      Op* o = NewIntegerOp(n, {x});
      RETURN_IF_ERROR(SetWindow(n, IntsAttr(n, "kernel_shape"), o->mutable_max_pool2d()));
      return IntegerOutput(n, x);
    }
    if (op == "MaxPool" || op == "AveragePool") {
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      Op* o = NewOp(n, {x}, n.output(0));
      backends::Pool2DOptions* p = op == "MaxPool" ? o->mutable_max_pool2d() : o->mutable_average_pool2d();
      return SetWindow(n, IntsAttr(n, "kernel_shape"), p);
    }
    if (op == "GlobalAveragePool") {
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      NewOp(n, {x}, n.output(0))->mutable_global_average_pool();
      return absl::OkStatus();
    }
    if (op == "Flatten") {
      if (pending_.count(n.input(0))) {  // GlobalAveragePool's [N, C, 1, 1] -> [N, C]: part of that op
        pending_[n.output(0)] = pending_[n.input(0)];
        return absl::OkStatus();
      }
      if (quantized_.count(n.input(0))) {  // QOperator: on the integers
        const int x = quantized_[n.input(0)];
        NewIntegerOp(n, {x})->mutable_flatten();
        flatten_input_[out_.ops_size() - 1] = x;
        return IntegerOutput(n, x);
      }
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      NewOp(n, {x}, n.output(0))->mutable_flatten();
      flatten_input_[out_.ops_size() - 1] = x;
      return absl::OkStatus();
    }
    if (op == "Add" && acc_.count(n.input(0))) return AccumulatorBias(n);
    if (op == "Add" || op == "Concat") {
      std::vector<int> ins;
      for (int i = 0; i < n.input_size(); ++i) {
        ASSIGN_OR_RETURN(int x, Activation(n, i));
        ins.push_back(x);
      }
      Op* o = NewOp(n, ins, n.output(0));
      if (op == "Add") {
        o->mutable_add()->set_left_shift(backends::kAddLeftShift);
      } else {
        o->mutable_concat();
      }
      return absl::OkStatus();
    }
    if (op == "HardSwish" || op == "Sigmoid" || op == "Tanh") {
      ASSIGN_OR_RETURN(int x, Activation(n, 0));
      Op* o = NewOp(n, {x}, n.output(0));
      if (op == "HardSwish") o->mutable_hardswish();
      if (op == "Sigmoid") o->mutable_sigmoid();
      if (op == "Tanh") o->mutable_tanh();
      return absl::OkStatus();
    }
    return absl::UnimplementedError(
        absl::StrCat(file_, ": node '", n.name(), "' (", op, ") is not read back from QDQ or QOperator form"));
  }

  // Input 1 of a Conv / Gemm: a dequantized int8 / uint8 initializer of `rank` dimensions.
  absl::StatusOr<const ConstDq*> DequantizedWeight(const onnx::NodeProto& n, size_t rank) const {
    auto w = const_.find(n.input(1));
    if (w == const_.end() || w->second.q->shape.size() != rank || w->second.q->dtype == onnx_io::DType::kInt32)
      return Bad(absl::StrCat("node '", n.name(), "': the weight must be a dequantized int8 / uint8 initializer of ",
                              rank, " dimensions"));
    return &w->second;
  }
  // Input 2: a dequantized int32 initializer of `count` values.
  absl::StatusOr<const ConstDq*> DequantizedBias(const onnx::NodeProto& n, int64_t count) const {
    auto b = const_.find(n.input(2));
    if (b == const_.end() || b->second.q->dtype != onnx_io::DType::kInt32 || b->second.q->numel() != count)
      return Bad(absl::StrCat("node '", n.name(), "': the bias must be a dequantized int32 initializer of ", count,
                              " values"));
    return &b->second;
  }

  // OIHW integers -> a new OHWI weight tensor.
  int ConvWeight(const ConstDq& w) {
    const OnnxTensor& q = *w.q;
    const int64_t O = q.shape[0], I = q.shape[1], H = q.shape[2], W = q.shape[3];
    std::vector<int64_t> ohwi(q.i.size());
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t ww = 0; ww < W; ++ww) ohwi[((o * H + h) * W + ww) * I + i] = q.i[((o * I + i) * H + h) * W + ww];
    return AddConstant(w, {O, H, W, I}, ohwi);
  }

  // An [O, I] weight's columns in quantlab's order: NHWC after a Flatten of [H, W, C].
  absl::StatusOr<std::vector<int64_t>> NhwcColumns(const onnx::NodeProto& n, int x, int64_t O, int64_t I,
                                                   const std::vector<int64_t>& nchw) const {
    std::vector<int64_t> v = nchw;
    if (backends::Numel(TensorShapeOf(x)) != I)
      return Bad(absl::StrCat("node '", n.name(), "': a weight of ", I, " columns for an input of ",
                              backends::Numel(TensorShapeOf(x)), " values"));
    auto f = flatten_of_.find(x);
    if (f == flatten_of_.end() || f->second.size() != 3) return v;
    const int64_t H = f->second[0], W = f->second[1], C = f->second[2];
    for (int64_t o = 0; o < O; ++o)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t ww = 0; ww < W; ++ww) v[o * I + (h * W + ww) * C + c] = nchw[o * I + (c * H + h) * W + ww];
    return v;
  }

  // The integer tensor a QOperator node reads at `input`; its scale / zero point inputs (if given) must be the
  // tensor's own.
  absl::StatusOr<int> IntegerInput(const onnx::NodeProto& n, int input, int scale_input, int zero_point_input) const {
    auto it = quantized_.find(n.input(input));
    if (it == quantized_.end())
      return Bad(absl::StrCat("node '", n.name(), "': input '", n.input(input), "' is not a quantized activation"));
    const Tensor& t = out_.tensors(it->second);
    const OnnxTensor* s = scale_input >= 0 ? FloatInit(n.input(scale_input)) : nullptr;
    const OnnxTensor* z = IntInit(n.input(zero_point_input));
    const bool same = (scale_input < 0 || (s != nullptr && s->numel() == 1 && s->f[0] == t.scale(0))) && z != nullptr &&
                      z->numel() == 1 && z->i[0] == t.zero_point(0);
    if (!same)
      return Bad(absl::StrCat("node '", n.name(), "': the scale / zero point of '", n.input(input),
                              "' differ from the ones it was quantized with"));
    return it->second;
  }

  // An op on integers (QOperator form): its output is made at once, not at a QuantizeLinear.
  Op* NewIntegerOp(const onnx::NodeProto& n, std::vector<int> inputs) {
    Op* op = out_.add_ops();
    op->set_name(n.name());
    for (int i : inputs) op->add_inputs(i);
    return op;
  }
  // The integer output of the op just made: `like`'s dtype and qparams (MaxPool, Flatten), or y_scale / y_zp.
  absl::Status IntegerOutput(const onnx::NodeProto& n, int like, const OnnxTensor* y_scale = nullptr,
                             const OnnxTensor* y_zero_point = nullptr) {
    Tensor* t = out_.add_tensors();
    const int ti = out_.tensors_size() - 1;
    t->set_name(Base(n.output(0), "_q"));
    if (like >= 0) {
      const Tensor& l = out_.tensors(like);
      t->set_dtype(l.dtype());
      *t->mutable_scale() = l.scale();
      *t->mutable_zero_point() = l.zero_point();
    } else {
      t->set_dtype(Dt(y_zero_point->dtype));
      t->add_scale(y_scale->f[0]);
      t->add_zero_point(static_cast<int32_t>(y_zero_point->i[0]));
    }
    const int k = out_.ops_size() - 1;
    Op* o = out_.mutable_ops(k);
    o->add_outputs(ti);
    o->set_output_min(backends::DTypeMin(t->dtype()));
    o->set_output_max(backends::DTypeMax(t->dtype()));
    ASSIGN_OR_RETURN(std::vector<Shape> shapes, OutputShape(*o));
    for (int64_t d : shapes.back()) t->add_shape(static_cast<int32_t>(d));
    quantized_[n.output(0)] = ti;
    int_ops_[n.output(0)] = k;
    return absl::OkStatus();
  }

  // QLinearConv(x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, [B]).
  absl::Status QLinearConv(const onnx::NodeProto& n) {
    ASSIGN_OR_RETURN(int x, IntegerInput(n, 0, 1, 2));
    ASSIGN_OR_RETURN(const ConstDq w, Constant(n, n.input(3), n.input(4), n.input(5)));
    const OnnxTensor* ys = FloatInit(n.input(6));
    const OnnxTensor* yz = IntInit(n.input(7));
    if (w.q->shape.size() != 4 || ys == nullptr || yz == nullptr || ys->numel() != 1 || yz->numel() != 1 ||
        yz->dtype == onnx_io::DType::kInt32)
      return Bad(absl::StrCat("node '", n.name(),
                              "': OIHW weights and a per-tensor y_scale / int8 or uint8 y_zero_point expected"));
    std::vector<int> ins = {x, ConvWeight(w)};
    if (n.input_size() > 8) {
      ASSIGN_OR_RETURN(const ConstDq b, Bias(n, n.input(8), w.q->shape[0]));
      ins.push_back(AddConstant(b, {w.q->shape[0]}, b.q->i));
    }
    backends::Conv2DOptions* c = NewIntegerOp(n, ins)->mutable_conv2d();
    RETURN_IF_ERROR(SetGroups(n, c));
    RETURN_IF_ERROR(SetWindow(n, {w.q->shape[2], w.q->shape[3]}, c));
    return IntegerOutput(n, -1, ys, yz);
  }

  // MatMulInteger(x, W^T [in, out], x_zp, w_zp): a FullyConnected whose int32 accumulator the next nodes
  // take on (bias Add, DequantizeLinear, then the float path's Relu / Clip / QuantizeLinear).
  absl::Status MatMulInteger(const onnx::NodeProto& n) {
    if (n.input_size() != 4)
      return Bad(absl::StrCat("node '", n.name(), "': MatMulInteger with both zero points expected"));
    ASSIGN_OR_RETURN(int x, IntegerInput(n, 0, -1, 2));
    const std::string base = Base(n.input(1), "_q");
    ASSIGN_OR_RETURN(const ConstDq w, Constant(n, n.input(1), base + "_scale", n.input(3)));
    if (w.q->shape.size() != 2) return Bad(absl::StrCat("node '", n.name(), "': a [in, out] weight expected"));
    const int64_t I = w.q->shape[0], O = w.q->shape[1];
    std::vector<int64_t> oi(w.q->i.size());
    for (int64_t o = 0; o < O; ++o)
      for (int64_t i = 0; i < I; ++i) oi[o * I + i] = w.q->i[i * O + o];
    ASSIGN_OR_RETURN(std::vector<int64_t> columns, NhwcColumns(n, x, O, I, oi));
    NewIntegerOp(n, {x, AddConstant(w, {O, I}, columns)})->mutable_fully_connected();
    acc_[n.output(0)] = out_.ops_size() - 1;
    return absl::OkStatus();
  }

  // Add(accumulator, int32 bias initializer).
  absl::Status AccumulatorBias(const onnx::NodeProto& n) {
    const int k = acc_[n.input(0)];
    if (out_.ops(k).inputs_size() != 2)
      return Bad(
          absl::StrCat("node '", n.name(), "': a second bias for the accumulator of '", out_.ops(k).name(), "'"));
    const int64_t O = out_.tensors(out_.ops(k).inputs(1)).shape(0);
    ASSIGN_OR_RETURN(const ConstDq b, Bias(n, n.input(1), O));
    const int bias = AddConstant(b, {O}, b.q->i);
    out_.mutable_ops(k)->add_inputs(bias);
    acc_[n.output(0)] = k;
    return absl::OkStatus();
  }

  // DequantizeLinear of an accumulator: its scale must be s_x * s_w[o] (float products), its zero point 0.
  absl::Status DequantizeAccumulator(const onnx::NodeProto& n, int k) {
    const Op& o = out_.ops(k);
    const Tensor& x = out_.tensors(o.inputs(0));
    const Tensor& w = out_.tensors(o.inputs(1));
    const OnnxTensor* s = FloatInit(n.input(1));
    const OnnxTensor* z = n.input_size() > 2 ? IntInit(n.input(2)) : nullptr;
    bool exact = s != nullptr && (s->numel() == 1 || s->numel() == w.scale_size());
    for (int64_t c = 0; exact && c < s->numel(); ++c)
      exact = s->f[c] == backends::TensorScale(x) * w.scale(static_cast<int>(c));
    for (int64_t c = 0; exact && z != nullptr && c < z->numel(); ++c) exact = z->i[c] == 0;
    if (!exact)
      return Bad(absl::StrCat("node '", n.name(),
                              "': an accumulator dequantizes at the input's scale times the weight's, zero point 0"));
    pending_[n.output(0)] = Pending{k};
    return absl::OkStatus();
  }

  // Clip(integers, lo, hi): the producing op's clamp.
  absl::Status IntegerClip(const onnx::NodeProto& n) {
    const int k = int_ops_[n.input(0)];
    const int ti = quantized_[n.input(0)];
    const OnnxTensor* lo = n.input_size() > 1 ? IntInit(n.input(1)) : nullptr;
    const OnnxTensor* hi = n.input_size() > 2 ? IntInit(n.input(2)) : nullptr;
    if (lo == nullptr || hi == nullptr || lo->numel() != 1 || hi->numel() != 1)
      return Bad(absl::StrCat("node '", n.name(), "': an integer Clip needs constant min and max"));
    Op* o = out_.mutable_ops(k);
    o->set_output_min(static_cast<int32_t>(lo->i[0]));
    o->set_output_max(static_cast<int32_t>(hi->i[0]));
    out_.mutable_tensors(ti)->set_name(Base(n.output(0), "_q"));
    quantized_[n.output(0)] = ti;
    return absl::OkStatus();
  }

  // The shapes of the model so far (the op just given its output included).
  absl::StatusOr<std::vector<Shape>> OutputShape(const Op& o) {
    const int k = out_.ops_size() - 1;
    if (flatten_input_.count(k)) {
      const Shape& in = TensorShapeOf(flatten_input_[k]);
      flatten_of_[o.outputs(0)] = in;
    }
    ASSIGN_OR_RETURN(Shape s, ShapeOf(o));
    return std::vector<Shape>{s};
  }
  Shape TensorShapeOf(int t) const { return backends::TensorShape(out_.tensors(t)); }
  absl::StatusOr<Shape> ShapeOf(const Op& o) const {
    const Shape in = TensorShapeOf(o.inputs(0));
    auto window = [&](const auto& c, int64_t channels) -> absl::StatusOr<Shape> {
      if (in.size() != 3 || in[0] + c.pad_top() + c.pad_bottom() < c.kernel_h() ||
          in[1] + c.pad_left() + c.pad_right() < c.kernel_w())
        return Bad(absl::StrCat("node '", o.name(), "': its ", c.kernel_h(), "x", c.kernel_w(),
                                " window needs an [H, W, C] input at least that large, has [", absl::StrJoin(in, ", "),
                                "]"));
      return Shape{(in[0] + c.pad_top() + c.pad_bottom() - c.kernel_h()) / c.stride_h() + 1,
                   (in[1] + c.pad_left() + c.pad_right() - c.kernel_w()) / c.stride_w() + 1, channels};
    };
    switch (o.options_case()) {
      case Op::kConv2D:
        return window(o.conv2d(), out_.tensors(o.inputs(1)).shape(0));
      case Op::kMaxPool2D:
        return window(o.max_pool2d(), in.empty() ? 0 : in.back());
      case Op::kAveragePool2D:
        return window(o.average_pool2d(), in.empty() ? 0 : in.back());
      case Op::kFullyConnected:
        return Shape{out_.tensors(o.inputs(1)).shape(0)};
      case Op::kGlobalAveragePool:
        if (in.size() != 3) return Bad(absl::StrCat("node '", o.name(), "': an [H, W, C] input expected"));
        return Shape{in.back()};
      case Op::kFlatten:
        return Shape{backends::Numel(in)};
      case Op::kConcat: {
        Shape s = in;
        s.back() = 0;
        for (int i : o.inputs()) {
          const Shape si = TensorShapeOf(i);
          if (si.size() != in.size() || !std::equal(si.begin(), si.end() - 1, in.begin()))
            return Bad(absl::StrCat("node '", o.name(), "': inputs of different shapes but for the channels"));
          s.back() += si.back();
        }
        return s;
      }
      default:
        return in;
    }
  }

  const onnx::ModelProto& m_;
  const std::string& file_;
  QuantizedModel out_;
  Shape input_shape_;
  std::map<std::string, OnnxTensor> init_;
  std::map<std::string, int> bits_;
  std::map<std::string, Pending> pending_;  // float value -> the op producing it
  std::map<std::string, int> quantized_;    // QuantizeLinear output -> tensor
  std::map<std::string, int> float_;        // DequantizeLinear output -> tensor
  std::map<std::string, ConstDq> const_;    // DequantizeLinear output of an initializer
  std::map<std::string, int> int_ops_;      // QOperator: integer output -> the op producing it
  std::map<std::string, int> acc_;          // QOperator: int32 accumulator -> its FullyConnected op
  std::map<int, int> flatten_input_;        // flatten op -> its input tensor
  std::map<int, Shape> flatten_of_;         // flatten output tensor -> its input's shape
};

}  // namespace

absl::StatusOr<onnx::ModelProto> ExportQdq(const QuantizedModel& model) {
  if (absl::Status s = backends::ValidateQuantizedModel(model); !s.ok()) return s;
  Exporter e(model, /*qoperator=*/false);
  return e.Run();
}

absl::StatusOr<onnx::ModelProto> ExportQOperator(const QuantizedModel& model) {
  if (absl::Status s = backends::ValidateQuantizedModel(model); !s.ok()) return s;
  Exporter e(model, /*qoperator=*/true);
  return e.Run();
}

std::string EncodingsJson(const QuantizedModel& model) {
  nlohmann::ordered_json j;
  j["version"] = "quantlab-encodings-1";
  j["source_model"] = model.source_model();
  nlohmann::ordered_json tensors = nlohmann::ordered_json::object();
  for (int t = 0; t < model.tensors_size(); ++t) {
    const Tensor& q = model.tensors(t);
    if (q.dtype() != backends::INT8 && q.dtype() != backends::UINT8 && q.dtype() != backends::INT32) continue;
    if (q.scale_size() == 0) continue;
    nlohmann::ordered_json e;
    const int bits = q.dtype() == backends::INT32 ? 32 : (q.bits() == 0 ? 8 : q.bits());
    e["bitwidth"] = bits;
    e["dtype"] = backends::DTypeName(q.dtype());
    e["kind"] = backends::IsConstant(q) ? (q.dtype() == backends::INT32 ? "bias" : "weight") : "activation";
    std::vector<float> scale(q.scale().begin(), q.scale().end());
    std::vector<int> offset(q.zero_point().begin(), q.zero_point().end());
    bool symmetric = true;
    for (int z : offset) symmetric = symmetric && z == (q.dtype() == backends::UINT8 ? 128 : 0);
    e["scale"] = scale;
    e["offset"] = offset;
    e["is_symmetric"] = symmetric;
    e["per_channel"] = backends::IsPerChannel(q);
    if (bits < 8) {
      const bool is_signed = q.dtype() == backends::INT8;
      e["min"] = is_signed ? -(1 << (bits - 1)) : 0;
      e["max"] = is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
    }
    tensors[q.name().empty() ? absl::StrCat("t", t) : q.name()] = e;
  }
  j["tensors"] = tensors;
  return j.dump(1);
}

absl::Status WriteModelFile(const onnx::ModelProto& model, const std::string& path) {
  std::string bytes;
  if (!model.SerializeToString(&bytes)) return absl::InternalError(absl::StrCat(path, ": cannot serialize the model"));
  return WriteFileAtomically(path, bytes);
}

absl::StatusOr<QuantizedModel> ImportQuantized(const onnx::ModelProto& model, const std::string& file) {
  QuantizedImporter importer(model, file);
  return importer.Run();
}

bool SameIntegerModel(const QuantizedModel& a, const QuantizedModel& b, std::string* diff) {
  auto integer_part = [](QuantizedModel m) {
    for (Tensor& t : *m.mutable_tensors()) t.clear_float_data();
    for (Op& op : *m.mutable_ops()) op.clear_fused_activation();
    return m;
  };
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(diff);
  return d.Compare(integer_part(a), integer_part(b));
}

}  // namespace onnx_io
}  // namespace quant
