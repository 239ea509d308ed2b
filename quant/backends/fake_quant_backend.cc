#include "quant/backends/fake_quant_backend.h"

#include <algorithm>
#include <cmath>

#include "quant/backends/fixed_point.h"
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

const BackendProfile& FakeQuantBackend::ExactProfile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile(Profile());
    p->backend = "fake_quant_exact";
    p->requantization =
        "float simulation; conv/linear: int32 accumulator recovered, int32 bias, the reference's fixed-point "
        "multiplier and rounding; average pools likewise";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> FakeQuantBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new FakeQuantBackend());
}

absl::StatusOr<std::unique_ptr<Backend>> FakeQuantBackend::CreateExact(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new FakeQuantBackend(/*integer_exact=*/true));
}

absl::Status FakeQuantBackend::BeginPrepare() {
  weights_.assign(model().ops_size(), floatk::OpWeights());
  exact_.assign(model().ops_size(), Exact());
  return absl::OkStatus();
}

absl::Status FakeQuantBackend::PrepareOp(int i) {
  const Op& op = model().ops(i);
  weights_[i] = floatk::FloatWeights(model(), op, /*dequantize=*/true);
  if (!integer_exact_) return absl::OkStatus();
  Exact& e = exact_[i];
  const Requantization* rq = op.has_conv2d()             ? &op.conv2d().requant()
                             : op.has_fully_connected()  ? &op.fully_connected().requant()
                             : op.has_average_pool2d()   ? &op.average_pool2d().requant()
                             : op.has_global_average_pool() ? &op.global_average_pool().requant()
                                                            : nullptr;
  if (rq == nullptr) return absl::OkStatus();
  e.multiplier.assign(rq->multiplier().begin(), rq->multiplier().end());
  e.shift.assign(rq->shift().begin(), rq->shift().end());
  if (op.has_conv2d() || op.has_fully_connected()) {
    const Tensor& w = model().tensors(op.inputs(1));
    const double s_in = TensorScale(model().tensors(op.inputs(0)));
    const int64_t O = static_cast<int64_t>(e.multiplier.size());
    for (int64_t o = 0; o < O; ++o) e.acc_scale.push_back(s_in * TensorScale(w, w.scale_size() > 1 ? o : 0));
    if (op.inputs_size() > 2 && op.inputs(2) >= 0) {
      const Tensor& b = model().tensors(op.inputs(2));
      e.bias.assign(b.int_data().begin(), b.int_data().end());
    }
    if (static_cast<int64_t>(e.bias.size()) != O) e.bias.assign(O, 0);
  }
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
  const Exact& e = exact_.empty() ? Exact() : exact_[i];
  if (integer_exact_ && !e.multiplier.empty()) {
    // The reference's output stage on the accumulator the float result encodes.
    const float s = TensorScale(t);
    const int32_t zp = TensorZeroPoint(t);
    const int64_t n = batch * Numel(shapes()[op.outputs(0)]);
    const int64_t C = static_cast<int64_t>(e.multiplier.size());
    const bool weighted = !e.acc_scale.empty();
    double window = 1;
    if (op.has_average_pool2d()) window = op.average_pool2d().kernel_h() * op.average_pool2d().kernel_w();
    if (op.has_global_average_pool()) {
      const Shape& x = shapes()[op.inputs(0)];
      window = static_cast<double>(x[x.size() - 3] * x[x.size() - 2]);
    }
    const double s_in = TensorScale(model().tensors(op.inputs(0)));
    for (int64_t k = 0; k < n; ++k) {
      const int64_t c = C == 1 ? 0 : k % C;  // NHWC: channels last
      // The float result is an integer (the accumulator / window sum) times a known scale, up to
      // float rounding far below one unit: rounding to nearest recovers it (no ties).
      const double t = weighted ? (static_cast<double>(y[k]) - weights_[i].bias[c]) / e.acc_scale[c]
                                : static_cast<double>(y[k]) * window / s_in;
      int64_t acc = static_cast<int64_t>(t + (t >= 0 ? 0.5 : -0.5));
      if (weighted) acc += e.bias[c];
      acc = std::min<int64_t>(std::max<int64_t>(acc, INT32_MIN), INT32_MAX);
      int32_t v = MultiplyByQuantizedMultiplier(static_cast<int32_t>(acc), e.multiplier[c], e.shift[c]) + zp;
      v = std::min(std::max(v, op.output_min()), op.output_max());
      y[k] = s * static_cast<float>(v - zp);
    }
    return absl::OkStatus();
  }
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
QUANTLAB_REGISTER(Backend, "fake_quant_exact", FakeQuantBackend::CreateExact,
                  "the float simulation in integer-exact mode: int32 bias and the reference's fixed-point "
                  "requantization of conv/linear/average-pool outputs");

}  // namespace quant::backends
