#include "quant/backends/fake_quant_backend.h"

#include <algorithm>
#include <cmath>

#include "quant/backends/float_kernels.h"
#include "quant/core/registry.h"

namespace quant::backends {
namespace {

int64_t Numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// Fake-quantizes y in place with the layer's output qparams and clamp; keeps the codes in q.
void FakeQuantize(const TensorQuant& tq, int32_t qmin, int32_t qmax, float* y, int64_t n, int32_t* q) {
  const float inv = 1.0f / tq.scale();
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(y[i] * inv) + static_cast<float>(tq.zero_point());
    const int32_t v = r < qmin ? qmin : (r > qmax ? qmax : static_cast<int32_t>(r));
    q[i] = v;
    y[i] = tq.scale() * static_cast<float>(v - tq.zero_point());
  }
}

}  // namespace

const BackendProfile& FakeQuantBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "fake_quant";
    SupportEveryDtype("float simulation", p);
    p->requantization = "float: y * (1/s_out), nearbyint (half to even), as fake quantization";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> FakeQuantBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new FakeQuantBackend());
}

absl::Status FakeQuantBackend::PrepareImpl() {
  layers_.clear();
  const QuantizedModel& m = model();
  float in_scale = m.input().scale();
  for (const Layer& l : m.layers()) {
    LayerData d;
    auto fill = [&](const auto& op) {
      const std::vector<int32_t> w = WeightValues(l);
      const int64_t per_o = static_cast<int64_t>(w.size()) / op.output_channels();
      d.weights.resize(w.size());
      for (int o = 0; o < op.output_channels(); ++o) {
        const float s = WeightScale(op.weight_quant(), o);
        const int32_t zp = WeightZeroPoint(op.weight_quant(), o);
        for (int64_t i = 0; i < per_o; ++i) {
          d.weights[o * per_o + i] = s * static_cast<float>(w[o * per_o + i] - zp);
        }
        if (op.float_bias_size() == op.output_channels()) {
          d.bias.push_back(op.float_bias(o));
        } else {
          d.bias.push_back(op.bias_size() ? static_cast<float>(static_cast<double>(op.bias(o)) * in_scale * s)
                                          : 0.0f);
        }
      }
    };
    if (l.has_fully_connected()) fill(l.fully_connected());
    if (l.has_conv2d()) fill(l.conv2d());
    layers_.push_back(std::move(d));
    in_scale = l.output().scale();
  }
  return absl::OkStatus();
}

absl::Status FakeQuantBackend::RunImpl(const float* input, int64_t batch, RunOutput* output) {
  const QuantizedModel& m = model();
  const std::vector<Shape>& shapes = this->shapes();
  const int64_t n_in = batch * Numel(shapes[0]);
  a_.assign(input, input + n_in);
  q_.resize(n_in);
  FakeQuantize(m.input(), DTypeMin(m.input().dtype()), DTypeMax(m.input().dtype()), a_.data(), n_in, q_.data());
  for (int li = 0; li < m.layers_size(); ++li) {
    const Layer& l = m.layers(li);
    const Shape& in = shapes[li];
    const Shape& out = shapes[li + 1];
    const int64_t n_out = batch * Numel(out);
    b_.resize(n_out);
    const LayerData& d = layers_[li];
    if (l.has_fully_connected()) {
      const FullyConnected& fc = l.fully_connected();
      floatk::FullyConnected(a_.data(), batch, fc.input_channels(), fc.output_channels(), d.weights.data(),
                             d.bias.data(), b_.data());
    } else if (l.has_conv2d()) {
      floatk::Conv2D(a_.data(), batch, in, out, l.conv2d(), d.weights.data(), d.bias.data(), &col_, b_.data());
    } else if (l.has_max_pool2d()) {
      floatk::MaxPool2D(a_.data(), batch, in, out, l.max_pool2d(), b_.data());
    } else {
      std::copy(a_.begin(), a_.begin() + n_out, b_.begin());
    }
    q_.resize(n_out);
    FakeQuantize(l.output(), l.output_min(), l.output_max(), b_.data(), n_out, q_.data());
    a_.swap(b_);
  }
  output->quantized.assign(q_.begin(), q_.end());
  FinishIntegerOutput(batch, output);
  return absl::OkStatus();
}

QUANTLAB_REGISTER(Backend, "fake_quant", FakeQuantBackend::Create,
                  "float simulation of the integer model (dequantized weights, fake-quantized outputs)");

}  // namespace quant::backends
