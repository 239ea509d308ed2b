// The Backend interface (registry kind "backend"): something that executes a
// QuantizedModel v2 graph. Prepare() once per model (validates it, checks it against
// the backend's profile op by op, plans the activation buffers, prepares each op's
// kernel); Run() any number of times on float NHWC input batches. Quantizing the
// input is part of Run (it is part of what deployment pays), and so is dequantizing
// the model output.
//
// ONE executor lives here, in the base class: ops run in their stored
// (topological, validated) order; activation buffers are planned by liveness (a
// buffer is reused once the last consumer of the tensor it held has run; the model
// output is never reused), allocated when the batch size changes and never in the
// steady state. A backend provides per-op kernels: PrepareOp(op) once per model,
// SetUpBatch() when the buffers move (XNNPACK records their addresses), RunOp(op).
//
// A BackendProfile declares what a backend can run, as data, per op kind;
// CheckProfile() turns a mismatch into an error naming the op, the backend and the
// rule, so that a config is rejected at validation time rather than failing (or
// silently diverging) later.
#ifndef QUANT_BACKENDS_BACKEND_H_
#define QUANT_BACKENDS_BACKEND_H_

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"
#include "quant/core/tensor.h"

namespace quant::backends {

// One accepted combination of activation and weight types for a weighted layer.
struct WeightSupport {
  DType activation = INT8;
  DType weight = INT8;
  bool per_tensor = true;
  bool per_channel = false;
  // Nonzero weight zero points allowed (asymmetric weights). When false every
  // weight zero point must be 0 (int8) or 128 (uint8 containers are never symmetric
  // around 0, so for uint8 weights this flag is always true in practice).
  bool weight_zero_point = true;
  std::string note;  // the library's name for it, e.g. "XNNPACK qc8"
};

struct BackendProfile {
  std::string backend;
  // Runs the float model (float_weights/float_bias) instead of the integer one.
  bool float_model = false;
  std::vector<DType> activation_dtypes = {INT8, UINT8};
  std::vector<WeightSupport> fully_connected;
  std::vector<WeightSupport> conv2d;
  // The op kinds it runs (OpKind names), each with the activation dtypes it takes
  // (empty: every dtype of activation_dtypes) and a note (the library's name for it).
  struct OpSupport {
    std::string kind;
    std::vector<DType> activation_dtypes;
    std::string note;
  };
  std::vector<OpSupport> ops;
  int min_weight_bits = 2;
  int max_weight_bits = 8;
  bool grouped_conv = true;
  bool max_pool2d = true;
  // Whether a 1x1 max pool window (an identity) is accepted.
  bool max_pool2d_single_element = true;
  // sigmoid / tanh only with TFLite's fixed output qparams: sigmoid scale 1/256 and
  // zero point qmin; tanh scale 1/128 and zero point 0 (int8) / 128 (uint8).
  bool fixed_sigmoid_tanh_output = false;
  // Largest requantization scale s_in*s_w/s_out the backend accepts (0: any).
  double max_requantization_scale = 0.0;
  std::string requantization;  // how it rounds, for docs and error messages
};

// Adds to `profile` every activation/weight dtype pair (int8, uint8), per-tensor
// and per-channel, with any weight zero point, for both fully connected and
// conv layers: what a backend with its own kernels for every case supports
// (reference, gemmlowp, fake_quant). `note` names how it runs them.
void SupportEveryDtype(const std::string& note, BackendProfile* profile);
// Adds every op kind of the format to `profile->ops` (reference, gemmlowp, fake_quant).
void SupportEveryOp(const std::string& note, BackendProfile* profile);
// Every op kind of the format, in proto order.
const std::vector<std::string>& AllOpKinds();

// What a quantization config asks of one weighted layer, known before a model
// exists: lets config validation reject a backend selection up front with the
// same rules (and messages) that CheckProfile applies to a converted model.
struct LayerQuantSpec {
  std::string layer;      // name, for the message
  std::string kind;       // "fully_connected" or "conv2d"
  DType activation = INT8;
  DType weight = INT8;
  bool per_channel = false;
  bool symmetric = true;  // every weight zero point 0
  int bits = 8;
};
absl::Status CheckLayerSpec(const LayerQuantSpec& spec, const BackendProfile& profile);
// The op-kind rule alone, for config validation of ops without weights (pools, add, ...).
absl::Status CheckOpSpec(const std::string& op_name, const std::string& kind, DType activation,
                         const BackendProfile& profile);

// OK if `profile` covers every op of `model`; otherwise an UnimplementedError
// "backend 'xnnpack' cannot run op 5 'fc1' (fully_connected): <rule>; supported: <...>".
absl::Status CheckProfile(const QuantizedModel& model, const BackendProfile& profile);

// What Run produces for a batch of N images.
struct RunOutput {
  Shape shape;                      // [N, the model output's shape...]
  DType dtype = DTYPE_UNSPECIFIED;  // of `quantized`; unspecified for float backends
  std::vector<int32_t> quantized;   // the int8/uint8 values of the model output (widened)
  std::vector<float> logits;        // dequantized: scale * (q - zero_point), or the float outputs
};

class Backend {
 public:
  static constexpr char kRegistryKind[] = "backend";
  virtual ~Backend() = default;

  virtual const BackendProfile& profile() const = 0;
  const std::string& name() const { return profile().backend; }

  // Whether this machine can run the backend at all (a CPU feature it needs):
  // Unimplemented with the reason if not. Prepare fails the same way.
  virtual absl::Status CanRunHere() const { return absl::OkStatus(); }

  // Validates `model`, checks it against profile(), plans the buffers, then
  // prepares every op (PrepareOp). The model is copied; call again to switch models.
  absl::Status Prepare(const QuantizedModel& model);

  // `input` holds batch * prod(input shape) floats, NHWC (for 1-channel images
  // NCHW and NHWC coincide).
  absl::Status Run(const float* input, int64_t batch, RunOutput* output);
  // A tensor [N, ...] whose trailing elements match the model's input shape.
  absl::Status Run(const ::quant::Tensor& input, RunOutput* output);

  // Where the time goes: when enabled, Run adds the wall time of each stage to
  // stage_seconds(): [0] input quantization/conversion, [i + 1] op i (the last op
  // also includes dequantizing the output).
  void set_profiling(bool on) {
    profiling_ = on;
    stage_seconds_.assign(on ? model_.ops_size() + 1 : 0, 0.0);
  }
  const std::vector<double>& stage_seconds() const { return stage_seconds_; }

  const QuantizedModel& model() const { return model_; }
  // Shape of every tensor (see InferShapes).
  const std::vector<Shape>& shapes() const { return shapes_; }
  const Shape& input_shape() const { return shapes_[InputTensor(model_)]; }
  const Shape& output_shape() const { return shapes_[OutputTensor(model_)]; }

  // The liveness plan: which buffer holds each activation tensor (-1: a constant).
  int buffer_of(int tensor) const { return buffer_of_[tensor]; }
  int num_buffers() const { return static_cast<int>(buffer_elements_.size()); }
  // e.g. "3 buffers (12544 values/sample in all) for 8 activation tensors: b0 (784) = input, pool1; ..."
  std::string BufferPlanString() const;

  // Debugging / per-tensor comparison: when set before Prepare, every activation
  // tensor gets its own buffer (no reuse), so that after Run every intermediate can
  // be read with ReadTensor.
  void set_keep_intermediates(bool on) { keep_intermediates_ = on; }
  // The int8/uint8 values (widened) of activation tensor `tensor` after the last Run
  // (batch of that run). False for float backends, or when the tensor's buffer was
  // reused (keep_intermediates off) and the tensor is not the model input/output.
  bool ReadTensor(int tensor, std::vector<int32_t>* values) const;
  // Runs op `op` alone, its activation inputs first set to `inputs` (one list
  // of widened int values per op input, constants skipped, as ReadTensor gives
  // them; e.g. the reference's): the op's own departure, with no difference
  // carried in from the ops before it. Needs keep_intermediates and a Run
  // with the same batch before (the buffers stay set up). FailedPrecondition
  // otherwise, Unimplemented for float backends.
  absl::Status RunOpAlone(int op, const std::vector<std::vector<int32_t>>& inputs);

 protected:
  // Bytes per activation element in this backend's buffers (4: int32 or float, 1: int8/uint8, 2: half).
  virtual size_t ElementBytes() const = 0;
  // Called once per Prepare before the PrepareOp calls (clear per-model state here).
  virtual absl::Status BeginPrepare() { return absl::OkStatus(); }
  // Builds what op `op` needs (weights, operators); an op it cannot run is an error
  // naming the op (CheckProfile should have caught it before).
  virtual absl::Status PrepareOp(int op) = 0;
  // The buffers were (re)allocated for `batch` (first run, or a new batch size).
  virtual absl::Status SetUpBatch(int64_t batch) {
    (void)batch;
    return absl::OkStatus();
  }
  // Quantizes / converts `batch` input samples into the input tensor's buffer.
  virtual absl::Status RunInput(const float* input, int64_t batch, void* out) = 0;
  // Runs op `op` on the planned buffers (Buffer()).
  virtual absl::Status RunOp(int op, int64_t batch) = 0;
  // Fills `output` from the model output's buffer.
  virtual void WriteOutput(const void* out, int64_t batch, RunOutput* output) = 0;
  // Widens `count` values of a buffer of tensor `tensor` to int32 (ReadTensor); false
  // for float backends.
  virtual bool ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const {
    (void)tensor, (void)data, (void)count, (void)out;
    return false;
  }
  // The inverse (RunOpAlone): stores `count` int values of tensor `tensor` into its buffer.
  virtual bool WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const {
    (void)tensor, (void)values, (void)count, (void)data;
    return false;
  }

  // The buffer of activation tensor `tensor` (valid after SetUpBatch; fixed until
  // the batch size changes).
  void* Buffer(int tensor) { return buffers_[buffer_of_[tensor]].data(); }
  template <typename T>
  T* Data(int tensor) {
    return static_cast<T*>(Buffer(tensor));
  }

  bool profiling() const { return profiling_; }

  // Shared by integer backends holding int32 values: the input quantization
  // (QuantizeInputValue with the input tensor's qparams) and the output
  // (shape, widened values, dequantized logits).
  void QuantizeInputInt32(const float* input, int64_t count, int32_t* out) const;
  // The same into int8/uint8 bytes (AVX2, 32 values per step; identical results).
  void QuantizeInputBytes(const float* input, int64_t count, uint8_t* out) const;
  // For backends whose buffers hold int8 (s8) or uint8 bytes (xnnpack, onednn): widening
  // to int32 (ReadBuffer, the output) and back (WriteBuffer).
  static void WidenBytes(const void* data, int64_t count, bool s8, int32_t* out);
  static void NarrowToBytes(const int32_t* values, int64_t count, bool s8, void* data);
  // Whether op `l`'s clamp is narrower than the range of `dtype` (a fused ReLU/ReLU6), and
  // that clamp applied in place to `count` bytes (for ops a library runs without one).
  static bool ClampIsNarrower(const Op& l, DType dtype);
  static void ClampBytes(void* data, int64_t count, bool s8, int32_t lo, int32_t hi);
  void FinishIntegerOutput(const int32_t* q, int64_t batch, RunOutput* output) const;

 private:
  absl::Status PlanBuffers();
  // Adds the time since *t to stage `stage` and resets *t (profiling only).
  void Lap(int stage, std::chrono::steady_clock::time_point* t) {
    const auto now = std::chrono::steady_clock::now();
    stage_seconds_[stage] += std::chrono::duration<double>(now - *t).count();
    *t = now;
  }
  absl::Status AllocateFor(int64_t batch);

  QuantizedModel model_;
  std::vector<Shape> shapes_;
  std::vector<int> buffer_of_;                 // per tensor
  std::vector<int64_t> buffer_elements_;       // per buffer, values per sample
  std::vector<std::vector<uint8_t>> buffers_;  // allocated for batch_
  int64_t batch_ = -1;
  bool prepared_ = false;
  bool profiling_ = false;
  bool keep_intermediates_ = false;
  std::vector<double> stage_seconds_;
};

// Builds the registered backend `name` with default settings.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name);

// Input quantization, the definition every integer backend follows:
// q = clamp(zero_point + nearbyint(x * (1.0f / scale)), dtype range), float math,
// round half to even (PyTorch/fbgemm's quantize_val and XNNPACK's convert). A NaN
// input gives qmin (as the AVX2 loop's max(r, qmin) does), never an undefined cast.
inline int32_t QuantizeInputValue(float x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const float r = std::nearbyint(x * inv_scale) + static_cast<float>(zero_point);
  return !(r >= qmin) ? qmin : (r > qmax ? qmax : static_cast<int32_t>(r));
}
}  // namespace quant::backends

#endif  // QUANT_BACKENDS_BACKEND_H_
