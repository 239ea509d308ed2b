// Layers of quantlab's small CPU networks: the base class every op (graph node
// kernel) derives from, its parameters, and the hook points where quantization
// is inserted. A Layer is the kernel of one node of a Graph (quant/nn/graph.h):
// it reads one or more input values and writes one output value.
//
// Ops are plugins (registry `op:`): each op's .cc registers a factory that reads
// its YAML settings, e.g.
//   QUANTLAB_REGISTER(Layer, "hardswish", CreateHardswish, "x * relu6(x + 3) / 6");
// so a new op is one .h/.cc pair and one registration line (see contrib/).
//
// Single-input ops implement Build/Forward/Backward. Ops with several inputs
// (add, concat) derive from MultiInputLayer and implement the *Inputs forms.
//
// A layer works on whole mini-batches: tensors are [B, ...sample shape].
// Forward(x, &y) computes the output into a caller-owned buffer that is reused
// from batch to batch (Tensor::Resize keeps capacity), and Backward(x, y, dy,
// &dx) writes the input gradient (skipped when dx is null, e.g. for the first
// layer) and *overwrites* the gradients of the layer's parameters.
//
// Hook points (for fake quantization, PACT, LSQ, ...):
//  - the weight transform runs on the weight before the layer uses it; the
//    layer computes with the transformed weight and sends the weight gradient
//    back through the transform's Backward (straight-through estimators etc.);
//  - the output transform runs on the layer's output; the Model applies it
//    between this layer and the next, and its Backward between their backward
//    passes.
// A transform may own trainable parameters (a PACT clip, an LSQ step size):
// the Model hands them to the optimizer with the layer's own.
#ifndef QUANT_NN_LAYER_H_
#define QUANT_NN_LAYER_H_

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/tensor.h"
#include "quant/nn/rng.h"

namespace quant::nn {

using Shape = std::vector<int64_t>;

// A trainable tensor and its gradient (same shape).
struct Parameter {
  std::string name;  // "weight", "bias", or a transform's own name
  Tensor value;
  Tensor grad;
  void Allocate(const Shape& shape) {
    value = Tensor(shape);
    grad = Tensor(shape);
  }
};

// A differentiable map at a hook point. Forward and Backward see the same
// `in`: Backward is called after the Forward of the same step.
class TensorTransform {
 public:
  virtual ~TensorTransform() = default;
  virtual std::string Describe() const = 0;
  // out = f(in); `training` says whether statistics may update.
  virtual void Forward(const Tensor& in, Tensor* out, bool training) = 0;
  // grad_in = (df/din)^T grad_out; also overwrites the transform's own parameter gradients.
  virtual void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) = 0;
  virtual std::vector<Parameter*> parameters() { return {}; }
};

class Layer {
 public:
  static constexpr char kRegistryKind[] = "op";
  explicit Layer(std::string name) : name_(std::move(name)) {}
  virtual ~Layer() = default;
  Layer(const Layer&) = delete;
  Layer& operator=(const Layer&) = delete;

  // The name quantization specs address by regex, e.g. "conv1", "fc2".
  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }
  // e.g. "Linear(784, 256)"; valid after Build for inferred sizes. For people:
  // code asks type() and the typed accessors, never parses this.
  virtual std::string Describe() const = 0;
  // The registry name of the op, e.g. "conv2d", "relu6", "add".
  virtual std::string type() const = 0;
  // Prefix of automatic node names: "conv" gives conv1, conv2, ...
  virtual std::string name_prefix() const { return type(); }

  // Number of inputs the op takes: 1 for most, -1 for any number >= 1 (concat).
  virtual int num_inputs() const { return 1; }
  // The graph calls these; single-input ops get them for free from the
  // one-input forms below. `x` and `dx` have one entry per input; a null dx
  // entry means that input's gradient is not needed.
  virtual absl::StatusOr<Shape> BuildInputs(const std::vector<Shape>& inputs);
  virtual void ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) { Forward(*x[0], y); }
  virtual void BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                              const std::vector<Tensor*>& dx) {
    Backward(*x[0], y, dy, dx[0]);
  }

  // Checks the input sample shape (no batch dimension), allocates parameters
  // and returns the output sample shape. A mismatch is InvalidArgument
  // stating the expected and the actual shape.
  virtual absl::StatusOr<Shape> Build(const Shape& input) = 0;
  // PyTorch's default initialisation of the parameters, drawn from `rng`.
  virtual void ResetParameters(Rng& rng) {}

  virtual void Forward(const Tensor& x, Tensor* y) = 0;
  virtual void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) = 0;

  virtual std::vector<Parameter*> parameters() { return {}; }
  // State saved in checkpoints but not trained (BatchNorm running statistics).
  virtual std::vector<std::pair<std::string, Tensor*>> buffers() { return {}; }

  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }

  // True, with PyTorch 1.13's fixed output qparams (quint8 sigmoid: 1/256, 0; tanh: 2/256, 128), for ops
  // whose output range is known whatever the data: the QAT scheme puts a `fixed` observer there.
  virtual bool fixed_output_qparams(float* scale, int32_t* zero_point, bool* is_signed) const {
    return false;
  }

  // Forward multiply-adds per sample times 2 (0 for cheap layers); for benchmarks.
  virtual int64_t ForwardFlopsPerSample() const { return 0; }
  // Backward FLOPs per sample: weight gradient, plus the input gradient when asked.
  virtual int64_t BackwardFlopsPerSample(bool input_grad) const { return 0; }

  // A clamp of this layer's own output, out = min(hi, max(lo, v)) (ReLU, ReLU6,
  // Hardtanh: nn::Clamp's formula, bit for bit), applied in the layer's kernels
  // as they store: the executor's fusion of a conv with the activation that
  // follows it in training (Model::Forward). While on, Backward(x, y, dy, dx)
  // receives the clamped output as y and its gradient as dy, and applies the
  // clamp's gradient mask itself. False where the layer has no such epilogue;
  // `on = false` turns it off again.
  virtual bool SetOutputClamp(bool on, float lo, float hi) { return false; }

  // Hook points. Only layers with a weight (has_weight) accept a weight transform.
  virtual bool has_weight() const { return false; }
  void set_weight_transform(std::shared_ptr<TensorTransform> t) {
    weight_transform_ = std::move(t);
    ++hooks_version_;
  }
  TensorTransform* weight_transform() const { return weight_transform_.get(); }
  void set_output_transform(std::shared_ptr<TensorTransform> t) {
    output_transform_ = std::move(t);
    ++hooks_version_;
  }
  TensorTransform* output_transform() const { return output_transform_.get(); }
  // Changes whenever a hook is set or removed (a new hook may reuse an old one's
  // address, so the Model compares this, not pointers, to know when to re-plan).
  uint64_t hooks_version() const { return hooks_version_; }

 protected:
  // The weight as forward uses it: `weight` itself, or its transform.
  const Tensor& EffectiveWeight(const Parameter& weight);
  // The weight the last Forward used (no new transform call), for backward.
  const Tensor& LastEffectiveWeight(const Parameter& weight) const {
    return weight_transform_ ? effective_weight_ : weight.value;
  }
  // Where backward should write the gradient w.r.t. the effective weight.
  Tensor* EffectiveWeightGrad(Parameter& weight);
  // After backward wrote EffectiveWeightGrad: routes it through the transform.
  void FinishWeightGrad(Parameter& weight);

 private:
  std::string name_;
  bool training_ = true;
  std::shared_ptr<TensorTransform> weight_transform_;
  std::shared_ptr<TensorTransform> output_transform_;
  uint64_t hooks_version_ = 0;
  Tensor effective_weight_;
  Tensor effective_weight_grad_;
};

// Base of ops with several inputs (add, concat): they implement the *Inputs
// forms; the one-input forms are never called by the graph.
class MultiInputLayer : public Layer {
 public:
  using Layer::Layer;
  int num_inputs() const override = 0;
  absl::StatusOr<Shape> BuildInputs(const std::vector<Shape>& inputs) override = 0;
  void ForwardInputs(const std::vector<const Tensor*>& x, Tensor* y) override = 0;
  void BackwardInputs(const std::vector<const Tensor*>& x, const Tensor& y, const Tensor& dy,
                      const std::vector<Tensor*>& dx) override = 0;
  absl::StatusOr<Shape> Build(const Shape& input) final { return BuildInputs({input}); }
  void Forward(const Tensor& x, Tensor* y) final { ForwardInputs({&x}, y); }
  void Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) final {
    BackwardInputs({&x}, y, dy, {dx});
  }
};

// OK if a parameter of `shape` (value and gradient, float) fits this machine's
// memory; otherwise InvalidArgument naming `what`, the shape, the bytes and the
// memory, before anything is allocated (model.hidden: [1000000000] used to die
// of std::bad_alloc). Element counts that overflow int64 are refused too.
absl::Status CheckParameterFits(const std::string& what, const Shape& shape);

// Makes `t` have `shape` without touching the heap when it already has it.
inline void EnsureShape(Tensor* t, const Shape& shape) {
  if (t->shape() != shape) t->Resize(shape);
}
// The same for a braced list, compared in place: building a Shape for the
// comparison would allocate on every batch.
inline void EnsureShape(Tensor* t, std::initializer_list<int64_t> shape) {
  const Shape& have = t->shape();
  if (have.size() == shape.size() && std::equal(shape.begin(), shape.end(), have.begin())) return;
  t->Resize(Shape(shape));
}

}  // namespace quant::nn

#endif  // QUANT_NN_LAYER_H_
