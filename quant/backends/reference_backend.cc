#include "quant/backends/reference_backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "quant/backends/reference_kernels.h"
#include "quant/core/registry.h"

namespace quant::backends {
namespace {

reference::ConvGeometry Geometry(int64_t batch, const Shape& in, const Shape& out, int kh, int kw, int sh, int sw,
                                 int pad_top, int pad_left, int groups) {
  return {batch, in[0], in[1], in[2], out[0], out[1], out[2], kh, kw, sh, sw, pad_top, pad_left, groups};
}

}  // namespace

const BackendProfile& ReferenceBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "reference";
    SupportEveryDtype("plain C++", p);
    SupportEveryOp("plain C++ (reference_kernels.h)", p);
    p->requantization =
        "int32 accumulation; TFLite MultiplyByQuantizedMultiplier (SaturatingRoundingDoublingHighMul, then "
        "RoundingDivideByPOT: ties away from zero)";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> ReferenceBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new ReferenceBackend());
}

absl::Status ReferenceBackend::BeginPrepare() {
  ops_.assign(model().ops_size(), OpData());
  return absl::OkStatus();
}

absl::Status ReferenceBackend::PrepareOp(int i) {
  const Op& op = model().ops(i);
  const int wt = WeightTensor(op);
  if (wt < 0) return absl::OkStatus();
  OpData& d = ops_[i];
  const Tensor& w = model().tensors(wt);
  d.weights = TensorValues(w);
  const int64_t O = w.shape(0);
  const int bt = BiasTensor(op);
  for (int64_t o = 0; o < O; ++o) {
    d.weight_zero_point.push_back(TensorZeroPoint(w, IsPerChannel(w) ? static_cast<int>(o) : 0));
    d.bias.push_back(bt >= 0 ? model().tensors(bt).int_data(static_cast<int>(o)) : 0);
  }
  return absl::OkStatus();
}

absl::Status ReferenceBackend::RunInput(const float* input, int64_t batch, void* out) {
  QuantizeInputInt32(input, batch * Numel(input_shape()), static_cast<int32_t*>(out));
  return absl::OkStatus();
}

absl::Status ReferenceBackend::RunOp(int i, int64_t batch) {
  const QuantizedModel& m = model();
  const Op& op = m.ops(i);
  const int x_t = op.inputs(0), y_t = op.outputs(0);
  const Tensor& x = m.tensors(x_t);
  const Tensor& y = m.tensors(y_t);
  const Shape& in = shapes()[x_t];
  const Shape& out = shapes()[y_t];
  const int32_t* a = Data<int32_t>(x_t);
  int32_t* b = Data<int32_t>(y_t);
  const int64_t n_out = batch * Numel(out);
  const OpData& d = ops_[i];
  switch (op.options_case()) {
    case Op::kFullyConnected: {
      const Requantization& rq = op.fully_connected().requant();
      const reference::RequantParams p{TensorZeroPoint(x), d.weight_zero_point.data(), d.bias.data(),
                                       rq.multiplier().data(), rq.shift().data(), TensorZeroPoint(y),
                                       op.output_min(), op.output_max()};
      reference::FullyConnected(p, batch, static_cast<int>(in[0]), static_cast<int>(out[0]), a, d.weights.data(), b);
      break;
    }
    case Op::kConv2D: {
      const Conv2DOptions& c = op.conv2d();
      const reference::RequantParams p{TensorZeroPoint(x), d.weight_zero_point.data(), d.bias.data(),
                                       c.requant().multiplier().data(), c.requant().shift().data(), TensorZeroPoint(y),
                                       op.output_min(), op.output_max()};
      reference::Conv2D(p, Geometry(batch, in, out, c.kernel_h(), c.kernel_w(), c.stride_h(), c.stride_w(), c.pad_top(),
                                    c.pad_left(), c.groups()),
                        a, d.weights.data(), b);
      break;
    }
    case Op::kMaxPool2D: {
      const Pool2DOptions& p = op.max_pool2d();
      reference::MaxPool2D(Geometry(batch, in, out, p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), p.pad_top(),
                                    p.pad_left(), 1),
                           op.output_min(), op.output_max(), a, b);
      break;
    }
    case Op::kAveragePool2D: {
      const Pool2DOptions& p = op.average_pool2d();
      const reference::AverageParams ap{TensorZeroPoint(x), p.requant().multiplier(0), p.requant().shift(0),
                                        TensorZeroPoint(y), op.output_min(), op.output_max()};
      reference::AveragePool2D(ap, Geometry(batch, in, out, p.kernel_h(), p.kernel_w(), p.stride_h(), p.stride_w(), 0, 0, 1),
                               a, b);
      break;
    }
    case Op::kGlobalAveragePool: {
      const Requantization& rq = op.global_average_pool().requant();
      const reference::AverageParams ap{TensorZeroPoint(x), rq.multiplier(0), rq.shift(0), TensorZeroPoint(y),
                                        op.output_min(), op.output_max()};
      reference::GlobalAveragePool(ap, batch, in[0] * in[1], in[2], a, b);
      break;
    }
    case Op::kAdd: {
      const AddOptions& o = op.add();
      const Tensor& x2 = m.tensors(op.inputs(1));
      const reference::AddParams p{o.left_shift(),
                                   TensorZeroPoint(x), o.input1().multiplier(0), o.input1().shift(0),
                                   TensorZeroPoint(x2), o.input2().multiplier(0), o.input2().shift(0),
                                   o.output().multiplier(0), o.output().shift(0), TensorZeroPoint(y),
                                   op.output_min(), op.output_max()};
      reference::Add(p, n_out, a, Data<int32_t>(op.inputs(1)), b);
      break;
    }
    case Op::kConcat: {
      const Requantization& rq = op.concat().requant();
      std::vector<reference::ConcatInput>& inputs = concat_inputs_;
      inputs.clear();
      for (int k = 0; k < op.inputs_size(); ++k) {
        const Tensor& t = m.tensors(op.inputs(k));
        const bool identity = TensorScale(t) == TensorScale(y) && TensorZeroPoint(t) == TensorZeroPoint(y);
        inputs.push_back({Data<int32_t>(op.inputs(k)), shapes()[op.inputs(k)].back(), identity, TensorZeroPoint(t),
                          rq.multiplier(k), rq.shift(k)});
      }
      reference::Concat(inputs.data(), static_cast<int>(inputs.size()), n_out / out.back(), TensorZeroPoint(y),
                        DTypeMin(y.dtype()), DTypeMax(y.dtype()), op.output_min(), op.output_max(), b);
      break;
    }
    case Op::kHardswish:
    case Op::kSigmoid:
    case Op::kTanh: {
      const LookupTableOptions& t = op.has_hardswish() ? op.hardswish() : op.has_sigmoid() ? op.sigmoid() : op.tanh();
      reference::Lookup(t.table().data(), DTypeMin(x.dtype()), n_out, op.output_min(), op.output_max(), a, b);
      break;
    }
    case Op::kFlatten:
    case Op::kReshape:
      reference::CopyClamped(n_out, op.output_min(), op.output_max(), a, b);
      break;
    default:
      return absl::UnimplementedError(absl::StrCat("backend '", name(), "': ", OpLabel(m, i), ": unknown op"));
  }
  return absl::OkStatus();
}

void ReferenceBackend::WriteOutput(const void* out, int64_t batch, RunOutput* output) {
  FinishIntegerOutput(static_cast<const int32_t*>(out), batch, output);
}

bool ReferenceBackend::ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const {
  (void)tensor;
  std::copy(static_cast<const int32_t*>(data), static_cast<const int32_t*>(data) + count, out);
  return true;
}

bool ReferenceBackend::WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const {
  (void)tensor;
  std::copy(values, values + count, static_cast<int32_t*>(data));
  return true;
}

QUANTLAB_REGISTER(Backend, "reference", ReferenceBackend::Create,
                  "plain C++ integer kernels: the definition of the QuantizedModel arithmetic");

}  // namespace quant::backends
