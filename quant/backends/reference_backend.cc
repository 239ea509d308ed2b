#include "quant/backends/reference_backend.h"

#include "quant/backends/reference_kernels.h"
#include "quant/core/registry.h"

namespace quant::backends {
namespace {

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

template <typename Op>
reference::RequantParams Params(const Op& op, const Layer& l, int32_t input_zero_point,
                                const std::vector<int32_t>& wzp, const std::vector<int32_t>& bias) {
  return {input_zero_point, wzp.data(), bias.data(), op.requant().multiplier().data(),
          op.requant().shift().data(), l.output().zero_point(), l.output_min(), l.output_max()};
}

template <typename Pads>
reference::ConvGeometry Geometry(const Pads& p, int64_t batch, const Shape& in, const Shape& out, int groups) {
  return {batch, in[0], in[1], in[2], out[0], out[1], out[2], p.kernel_h(), p.kernel_w(), p.stride_h(),
          p.stride_w(), p.pad_top(), p.pad_left(), groups};
}

}  // namespace

const BackendProfile& ReferenceBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "reference";
    SupportEveryDtype("plain C++", p);
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

absl::Status ReferenceBackend::PrepareImpl() {
  layers_.clear();
  for (const Layer& l : model().layers()) {
    LayerData d;
    auto fill = [&](const auto& op) {
      d.weights = WeightValues(l);
      for (int o = 0; o < op.output_channels(); ++o) {
        d.weight_zero_point.push_back(WeightZeroPoint(op.weight_quant(), o));
        d.bias.push_back(op.bias_size() ? op.bias(o) : 0);
      }
    };
    if (l.has_fully_connected()) fill(l.fully_connected());
    if (l.has_conv2d()) fill(l.conv2d());
    layers_.push_back(std::move(d));
  }
  return absl::OkStatus();
}

absl::Status ReferenceBackend::RunImpl(const float* input, int64_t batch, RunOutput* output) {
  const QuantizedModel& m = model();
  const std::vector<Shape>& shapes = this->shapes();
  // Input quantization.
  const int64_t n_in = batch * Numel(shapes[0]);
  a_.resize(n_in);
  const float inv_scale = 1.0f / m.input().scale();
  const int32_t qmin = DTypeMin(m.input().dtype()), qmax = DTypeMax(m.input().dtype());
  for (int64_t i = 0; i < n_in; ++i) {
    a_[i] = QuantizeInputValue(input[i], inv_scale, m.input().zero_point(), qmin, qmax);
  }
  int32_t in_zp = m.input().zero_point();
  for (int li = 0; li < m.layers_size(); ++li) {
    const Layer& l = m.layers(li);
    const Shape& in = shapes[li];
    const Shape& out = shapes[li + 1];
    b_.resize(batch * Numel(out));
    const LayerData& d = layers_[li];
    if (l.has_fully_connected()) {
      const FullyConnected& fc = l.fully_connected();
      reference::FullyConnected(Params(fc, l, in_zp, d.weight_zero_point, d.bias), batch, fc.input_channels(),
                                fc.output_channels(), a_.data(), d.weights.data(), b_.data());
    } else if (l.has_conv2d()) {
      const Conv2D& c = l.conv2d();
      reference::Conv2D(Params(c, l, in_zp, d.weight_zero_point, d.bias), Geometry(c, batch, in, out, c.groups()),
                        a_.data(), d.weights.data(), b_.data());
    } else if (l.has_max_pool2d()) {
      reference::MaxPool2D(Geometry(l.max_pool2d(), batch, in, out, 1), l.output_min(), l.output_max(), a_.data(),
                           b_.data());
    } else {  // flatten: the NHWC data is already in flat order; apply the clamp
      for (size_t i = 0; i < b_.size(); ++i) b_[i] = std::min(std::max(a_[i], l.output_min()), l.output_max());
    }
    a_.swap(b_);
    in_zp = l.output().zero_point();
  }
  output->quantized.assign(a_.begin(), a_.end());
  FinishIntegerOutput(batch, output);
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "reference", ReferenceBackend::Create,
                  "plain C++ integer kernels: the definition of the QuantizedModel arithmetic");

}  // namespace quant::backends
