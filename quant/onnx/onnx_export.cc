#include "quant/onnx/onnx_export.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "onnx/checker.h"
#include "onnx/shape_inference/implementation.h"
#include "quant/core/atomic_file.h"
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

}  // namespace onnx_io
}  // namespace quant
