// A network (registry `model:`) as a graph: named values and nodes. A node is
// an op (a Layer, quant/nn/layer.h) with one or more input values and one
// output value. Value 0 is the model's input; value i + 1 is the output of
// node i; nodes are kept in topological order, so a chain (mlp, cnn) is node i
// reading value i.
//
// A model plugin's factory only reads its settings; Build(sample_shape,
// num_classes, seed) asks the plugin for its GraphSpec (quant/nn/graph.h),
// names the nodes, resolves inputs, sorts topologically, infers and checks
// every shape (an error names the node, its op, where it was written and each
// input's shape and producer) and initialises the parameters, node by node
// from Rng::Stream(seed, node index).
//
// Execution. Forward runs the nodes in order. In training mode every value is
// kept (Backward needs them); in eval mode values live in buffers planned by
// liveness (quant/nn/buffer_plan.h), reused as soon as the last consumer ran.
// Backward runs the nodes in reverse order; where a value fans out, the
// gradients of its consumers are summed; gradient buffers are planned by
// liveness too. Nothing is allocated once the first batch has run. Backward
// skips every input gradient that nothing trainable needs (e.g. the first
// conv's dx).
//
// Quantization hooks sit on values: a node's output transform
// (Layer::set_output_transform) is applied to its output value, so every
// consumer of the value sees the transformed tensor.
#ifndef QUANT_NN_MODEL_H_
#define QUANT_NN_MODEL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/graph.h"
#include "quant/nn/layer.h"

namespace quant::nn {

class Model {
 public:
  static constexpr char kRegistryKind[] = "model";
  static constexpr int kInputValue = 0;
  virtual ~Model() = default;

  // The registry name, e.g. "cnn".
  virtual std::string name() const = 0;

  absl::Status Build(const Shape& sample_shape, int num_classes, uint64_t seed);
  bool built() const { return built_; }

  // Winograd F(2x2, 3x3) for every eligible conv (Conv2d::WinogradLayer):
  // the `winograd` key of a `model:` section (CreateModel). Faster, not
  // bit-identical to the default kernels, so off by default. Before Build.
  void set_winograd(bool on) { winograd_ = on; }
  bool winograd() const { return winograd_; }

  // Logits [B, num_classes] of a batch [B, ...sample_shape]; valid until the next Forward.
  const Tensor& Forward(const Tensor& x);
  // Gradients of every parameter (overwritten) from d(loss)/d(logits), for the last Forward(x).
  void Backward(const Tensor& x, const Tensor& dlogits);

  void set_training(bool training);
  // Frees the activation and gradient buffers (they are allocated again by the next
  // Forward/Backward, which then computes the same values). For the phases after
  // training, so that conversion and backend evaluation do not run next to a full
  // training batch's worth of memory.
  void ReleaseBuffers();
  bool training() const { return training_; }

  // Nodes, in topological order. ("Layer" is the op of a node.)
  int num_layers() const { return static_cast<int>(nodes_.size()); }
  Layer& layer(int i) { return *nodes_[i].op; }
  const Layer& layer(int i) const { return *nodes_[i].op; }
  Layer* FindLayer(const std::string& name);
  int FindNode(const std::string& name) const;  // -1 if none
  // Layers whose whole name matches `regex` (ECMAScript); a bad regex is InvalidArgument.
  absl::StatusOr<std::vector<Layer*>> MatchLayers(const std::string& regex);

  // The graph. Value ids: kInputValue, or OutputOf(node).
  static int OutputOf(int node) { return node + 1; }
  static int ProducerOf(int value) { return value - 1; }  // -1 for the input
  int num_values() const { return num_layers() + 1; }
  const std::vector<int>& inputs_of(int node) const { return nodes_[node].inputs; }
  const std::vector<int>& consumers(int value) const { return consumers_[value]; }
  int output_value() const { return output_value_; }
  // Per-sample shape of a value ([C, H, W] or [F]).
  const Shape& value_shape(int value) const { return value_shapes_[value]; }
  // "input", or the producing node's name.
  std::string value_name(int value) const;
  // True when every node reads the previous node's output (mlp, cnn, sequential).
  bool is_chain() const;
  // Warnings found at Build (e.g. a node whose output nothing reads).
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The last Forward's value `v` (after its output transform). Every value in
  // training mode or with keep_values; otherwise only the input and the output.
  // In training mode without keep_values, a conv whose only consumer is a ReLU
  // (ReLU6, Hardtanh) and which has no output transform computes the
  // activation in its own kernels (Layer::SetOutputClamp): the conv's value is
  // then the activation's output before the activation's transform (QAT's fake
  // quantization, which still runs). The bits of everything else are the same.
  const Tensor& value(int v) const { return *value_ptr_[v]; }
  void set_keep_values(bool keep) { keep_values_ = keep; }

  // A transform of the model input (value 0) before any node reads it: QAT's
  // fake quantization of the input (train.integer_exact), so that training sees
  // the input grid the integer model will use. No gradient flows to the input.
  void set_input_transform(std::shared_ptr<TensorTransform> t) { input_transform_ = std::move(t); }
  TensorTransform* input_transform() const { return input_transform_.get(); }

  // A float executor for analysis and PTQ: runs nodes [begin, end) with the
  // current mode and hooks, reading inputs from and writing outputs (after the
  // output transforms) into `values` (indexed by value id, resized to
  // num_values()). Values the range reads must be set; a missing one is a
  // FailedPrecondition naming the node and the value.
  absl::Status RunNodes(int begin, int end, std::vector<Tensor>* values);

  // Trainable tensors, named "<layer>.<param>" (and hook transforms' own).
  std::vector<std::pair<std::string, Parameter*>> NamedParameters();
  std::vector<Parameter*> Parameters();
  // Everything a checkpoint holds, in a fixed order: parameters then buffers, layer by layer.
  std::vector<std::pair<std::string, Tensor*>> StateTensors();
  int64_t NumParameters();

  // FLOPs per sample of Forward and of Backward (as Backward runs: no input
  // gradient where nothing trainable needs it).
  int64_t ForwardFlopsPerSample() const;
  int64_t BackwardFlopsPerSample() const;

  const Shape& sample_shape() const { return sample_shape_; }
  int num_classes() const { return num_classes_; }
  // One line per node: index, name, description, inputs (unless a chain), output shape.
  std::string Summary() const;

  // Per-node wall time of Forward and Backward (including hooks), for
  // benchmarks; off by default.
  void set_profiling(bool on) { profiling_ = on; }
  struct LayerTime {
    double forward = 0, backward = 0;
  };
  const std::vector<LayerTime>& layer_times() const { return times_; }
  void ResetLayerTimes() { times_.assign(nodes_.size(), LayerTime()); }

 protected:
  // The graph for this input and class count (ops unbuilt). Errors are InvalidArgument.
  virtual absl::StatusOr<GraphSpec> MakeGraph(const Shape& sample_shape, int num_classes) = 0;
  // Called at the end of Build, after every parameter was initialised from the
  // seed: a model whose weights come from a file (ONNX import) sets them here.
  virtual absl::Status AfterBuild() { return absl::OkStatus(); }

 private:
  struct Node {
    std::unique_ptr<Layer> op;
    std::vector<int> inputs;  // value ids
    std::string origin;
    // Reused argument vectors (no allocation per batch).
    std::vector<const Tensor*> x;
    std::vector<Tensor*> dx;
  };
  bool winograd_ = false;
  // clamp_after_[conv]: the Clamp node that may be fused into it (its only
  // consumer; see value()), else -1; clamp_before_[clamp]: that conv, else -1.
  // fused_[clamp]: the last Forward fused it; fused_grad_[clamp]: in Backward,
  // its gradient (after its output transform), which the conv reads.
  std::vector<int> clamp_after_, clamp_before_;
  std::vector<char> fused_;
  std::vector<const Tensor*> fused_grad_;
  void FindClampFusions();
  absl::Status Arrange(GraphSpec spec);
  absl::Status InferShapes();
  void PlanEval();
  void PlanBackward();
  // Which values need a gradient (something trainable produced or precedes them).
  void UpdateNeedsGrad();
  bool Trainable(int node) const;
  Tensor& RawOutput(int node);

  bool built_ = false;
  bool training_ = true;
  bool keep_values_ = false;
  bool values_kept_ = false;  // by the last Forward (Backward needs them)
  Shape sample_shape_;
  int num_classes_ = 0;
  std::vector<Node> nodes_;
  std::vector<std::vector<int>> consumers_;
  std::vector<Shape> value_shapes_;
  int output_value_ = 0;
  std::vector<std::string> warnings_;

  // Training: per node, raw output and output after the output transform.
  std::vector<Tensor> out_, post_;
  std::shared_ptr<TensorTransform> input_transform_;
  Tensor input_post_;  // the input after input_transform_
  std::vector<const Tensor*> value_ptr_;
  // Eval: planned slots; per node the slot of its raw output and of its value.
  std::vector<Tensor*> eval_slots_;  // into out_ / post_
  std::vector<int> eval_raw_slot_, eval_value_slot_;
  // Backward: planned slots for value gradients, hook gradients and fan-out sums.
  std::vector<Tensor> grad_slots_;
  std::vector<int> grad_slot_;                     // per value
  std::vector<int> hook_grad_slot_;                // per node (-1: no output transform)
  std::vector<std::vector<int>> sum_slot_;         // per node, per input (-1: written directly)
  std::vector<char> needs_grad_, written_, trainable_;
  std::vector<uint64_t> hooks_seen_;  // per node: Layer::hooks_version() as planned
  std::vector<const Tensor*> grad_ptr_;

  bool profiling_ = false;
  std::vector<LayerTime> times_;
};

// The model of a `model:` section: the plugin named by `name`, with the
// settings every model has (`winograd`).
absl::StatusOr<std::unique_ptr<Model>> CreateModel(ParamReader& reader);
// The help of the `winograd` key (also for `run --list`).
inline constexpr char kWinogradHelp[] =
    "3x3 stride-1 convs (groups 1, more than one input channel) by Winograd F(2x2, 3x3): faster, "
    "equal to the default kernels only up to float rounding";

}  // namespace quant::nn

#endif  // QUANT_NN_MODEL_H_
