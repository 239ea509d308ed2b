// The Backend interface (registry kind "backend"): something that executes a
// QuantizedModel. Prepare() once per model (validates it, checks it against the
// backend's profile, creates operators/packs weights); Run() any number of
// times on float NHWC input batches. Quantizing the input is part of Run (it is
// part of what deployment pays), and so is dequantizing the last layer.
//
// A BackendProfile declares what a backend can run, as data; CheckProfile()
// turns a mismatch into an error naming the layer, the backend and the rule, so
// that a config is rejected at validation time rather than failing (or silently
// diverging) later.
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
  int min_weight_bits = 2;
  int max_weight_bits = 8;
  bool grouped_conv = true;
  bool max_pool2d = true;
  // Whether a 1x1 max pool window (an identity) is accepted.
  bool max_pool2d_single_element = true;
  // Largest requantization scale s_in*s_w/s_out the backend accepts (0: any).
  double max_requantization_scale = 0.0;
  std::string requantization;  // how it rounds, for docs and error messages
};

// Adds to `profile` every activation/weight dtype pair (int8, uint8), per-tensor
// and per-channel, with any weight zero point, for both fully connected and
// conv layers: what a backend with its own kernels for every case supports
// (reference, gemmlowp, fake_quant). `note` names how it runs them.
void SupportEveryDtype(const std::string& note, BackendProfile* profile);

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

// OK if `profile` covers every layer of `model`; otherwise an UnimplementedError
// "backend 'xnnpack' cannot run layer 5 'fc1' (fully_connected): <rule>; supported: <...>".
absl::Status CheckProfile(const QuantizedModel& model, const BackendProfile& profile);

// What Run produces for a batch of N images.
struct RunOutput {
  Shape shape;                      // [N, last layer's output shape...]
  DType dtype = DTYPE_UNSPECIFIED;  // of `quantized`; unspecified for float backends
  std::vector<int32_t> quantized;   // the int8/uint8 outputs of the last layer (widened)
  std::vector<float> logits;        // dequantized: scale * (q - zero_point), or the float outputs
};

class Backend {
 public:
  static constexpr char kRegistryKind[] = "backend";
  virtual ~Backend() = default;

  virtual const BackendProfile& profile() const = 0;
  const std::string& name() const { return profile().backend; }

  // Validates `model`, checks it against profile(), then builds what Run needs.
  // The model is copied; call again to switch models.
  absl::Status Prepare(const QuantizedModel& model);

  // `input` holds batch * prod(input_shape) floats, NHWC (for 1-channel images
  // NCHW and NHWC coincide).
  absl::Status Run(const float* input, int64_t batch, RunOutput* output);
  // A tensor [N, ...] whose trailing elements match the model's input shape.
  absl::Status Run(const Tensor& input, RunOutput* output);

  // Where the time goes: when enabled, Run adds the wall time of each stage to
  // stage_seconds(): [0] input quantization/conversion, [i + 1] layer i (the last
  // also includes dequantizing the output). Backends that do not time stages leave it empty.
  void set_profiling(bool on) {
    profiling_ = on;
    stage_seconds_.assign(on ? model_.layers_size() + 1 : 0, 0.0);
  }
  const std::vector<double>& stage_seconds() const { return stage_seconds_; }

  const QuantizedModel& model() const { return model_; }
  // Activation shapes (see InferShapes).
  const std::vector<Shape>& shapes() const { return shapes_; }

 protected:
  virtual absl::Status PrepareImpl() = 0;
  virtual absl::Status RunImpl(const float* input, int64_t batch, RunOutput* output) = 0;

  bool profiling() const { return profiling_; }
  // Adds the time since *t to stage `stage` and resets *t (profiling only).
  void Lap(int stage, std::chrono::steady_clock::time_point* t) {
    const auto now = std::chrono::steady_clock::now();
    stage_seconds_[stage] += std::chrono::duration<double>(now - *t).count();
    *t = now;
  }

  // Shared by integer backends: output shape + dequantized logits from `quantized`.
  void FinishIntegerOutput(int64_t batch, RunOutput* output) const;

 private:
  QuantizedModel model_;
  std::vector<Shape> shapes_;
  bool prepared_ = false;
  bool profiling_ = false;
  std::vector<double> stage_seconds_;
};

// Builds the registered backend `name` with default settings.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name);

// Input quantization, the definition every integer backend follows:
// q = clamp(zero_point + nearbyint(x * (1.0f / scale)), dtype range), float math,
// round half to even (PyTorch/fbgemm's quantize_val and XNNPACK's convert).
inline int32_t QuantizeInputValue(float x, float inv_scale, int32_t zero_point, int32_t qmin, int32_t qmax) {
  const float r = std::nearbyint(x * inv_scale) + static_cast<float>(zero_point);
  return r < qmin ? qmin : (r > qmax ? qmax : static_cast<int32_t>(r));
}
}  // namespace quant::backends

#endif  // QUANT_BACKENDS_BACKEND_H_
