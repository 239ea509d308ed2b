#include "quant/backends/fake_quant_backend.h"

#include <algorithm>
#include <cmath>

#include "quant/core/registry.h"

namespace quant::backends {
namespace {

// Fake-quantizes y in place with qparams (s, zp) and the clamp [qmin, qmax]; the codes into q (optional).
void FakeQuantize(float s, int32_t zp, int32_t qmin, int32_t qmax, float* y, int64_t n, int32_t* q) {
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) {
    const float r = std::nearbyint(y[i] * inv) + static_cast<float>(zp);
    const int32_t v = r < qmin ? qmin : (r > qmax ? qmax : static_cast<int32_t>(r));
    if (q != nullptr) q[i] = v;
    y[i] = s * static_cast<float>(v - zp);
  }
}

}  // namespace

const BackendProfile& FakeQuantBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "fake_quant";
    SupportEveryDtype("float simulation", p);
    SupportEveryOp("float simulation", p);
    p->requantization = "float: y * (1/s_out), nearbyint (half to even), as fake quantization";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> FakeQuantBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new FakeQuantBackend());
}

absl::Status FakeQuantBackend::BeginPrepare() {
  weights_.assign(model().ops_size(), floatk::OpWeights());
  return absl::OkStatus();
}

absl::Status FakeQuantBackend::PrepareOp(int i) {
  weights_[i] = floatk::FloatWeights(model(), model().ops(i), /*dequantize=*/true);
  return absl::OkStatus();
}

absl::Status FakeQuantBackend::RunInput(const float* input, int64_t batch, void* out) {
  const Tensor& t = model().tensors(InputTensor(model()));
  const int64_t n = batch * Numel(input_shape());
  float* y = static_cast<float*>(out);
  std::copy(input, input + n, y);
  FakeQuantize(TensorScale(t), TensorZeroPoint(t), DTypeMin(t.dtype()), DTypeMax(t.dtype()), y, n, nullptr);
  return absl::OkStatus();
}

absl::Status FakeQuantBackend::RunOp(int i, int64_t batch) {
  const Op& op = model().ops(i);
  inputs_.clear();
  for (int t : op.inputs()) {
    if (!IsConstant(model().tensors(t))) inputs_.push_back(Data<float>(t));
  }
  float* y = Data<float>(op.outputs(0));
  // The float op (with its fused activation, which the clamp below repeats in the quantized domain).
  floatk::RunOp(model(), shapes(), i, batch, inputs_, weights_[i], &col_, y);
  const Tensor& t = model().tensors(op.outputs(0));
  FakeQuantize(TensorScale(t), TensorZeroPoint(t), op.output_min(), op.output_max(), y,
               batch * Numel(shapes()[op.outputs(0)]), nullptr);
  return absl::OkStatus();
}

bool FakeQuantBackend::ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const {
  // The values are exact multiples of the scale: the codes come back exactly.
  const Tensor& t = model().tensors(tensor);
  const float inv = 1.0f / TensorScale(t);
  const float* y = static_cast<const float*>(data);
  for (int64_t i = 0; i < count; ++i) out[i] = static_cast<int32_t>(std::nearbyint(y[i] * inv)) + TensorZeroPoint(t);
  return true;
}

bool FakeQuantBackend::WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const {
  const Tensor& t = model().tensors(tensor);
  const float scale = TensorScale(t);
  const int32_t zp = TensorZeroPoint(t);
  float* y = static_cast<float*>(data);
  for (int64_t i = 0; i < count; ++i) y[i] = scale * static_cast<float>(values[i] - zp);
  return true;
}

void FakeQuantBackend::WriteOutput(const void* out, int64_t batch, RunOutput* output) {
  const int64_t n = batch * Numel(output_shape());
  q_.resize(n);
  ReadBuffer(OutputTensor(model()), out, n, q_.data());
  FinishIntegerOutput(q_.data(), batch, output);
}

QUANTLAB_REGISTER(Backend, "fake_quant", FakeQuantBackend::Create,
                  "float simulation of the integer model (dequantized weights, fake-quantized outputs)");

}  // namespace quant::backends
