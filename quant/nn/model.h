// A network (registry `model:`): a sequence of named layers with the output
// hooks between them, run on mini-batches. A model plugin's factory only reads
// its settings; Build(sample_shape, num_classes, seed) creates the layers for
// the dataset, checks that their shapes chain (an error names the layer index,
// the layer and both shapes, before any training) and initialises them.
//
// Forward/Backward keep every activation in buffers owned by the model and
// reused from batch to batch. Backward skips the input gradient of every layer
// before the first trainable one (e.g. the first conv's dx).
#ifndef QUANT_NN_MODEL_H_
#define QUANT_NN_MODEL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/nn/layer.h"

namespace quant::nn {

class Model {
 public:
  static constexpr char kRegistryKind[] = "model";
  virtual ~Model() = default;

  // The registry name, e.g. "cnn".
  virtual std::string name() const = 0;

  absl::Status Build(const Shape& sample_shape, int num_classes, uint64_t seed);
  bool built() const { return built_; }

  // Logits [B, num_classes] of a batch [B, ...sample_shape]; valid until the next Forward.
  const Tensor& Forward(const Tensor& x);
  // Gradients of every parameter (overwritten) from d(loss)/d(logits), for the last Forward(x).
  void Backward(const Tensor& x, const Tensor& dlogits);

  void set_training(bool training);
  bool training() const { return training_; }

  int num_layers() const { return static_cast<int>(layers_.size()); }
  Layer& layer(int i) { return *layers_[i]; }
  const Layer& layer(int i) const { return *layers_[i]; }
  Layer* FindLayer(const std::string& name);
  // Layers whose whole name matches `regex` (ECMAScript); a bad regex is InvalidArgument.
  absl::StatusOr<std::vector<Layer*>> MatchLayers(const std::string& regex);

  // Trainable tensors, named "<layer>.<param>" (and hook transforms' own).
  std::vector<std::pair<std::string, Parameter*>> NamedParameters();
  std::vector<Parameter*> Parameters();
  // Everything a checkpoint holds, in a fixed order: parameters then buffers, layer by layer.
  std::vector<std::pair<std::string, Tensor*>> StateTensors();
  int64_t NumParameters();

  // FLOPs per sample of Forward and of Backward (as Backward runs: no input
  // gradient before the first trainable layer).
  int64_t ForwardFlopsPerSample() const;
  int64_t BackwardFlopsPerSample() const;

  const Shape& sample_shape() const { return sample_shape_; }
  int num_classes() const { return num_classes_; }
  // One line per layer: index, name, description, output shape.
  std::string Summary() const;

  // Per-layer wall time of Forward and Backward (including hooks), for
  // benchmarks; off by default.
  void set_profiling(bool on) { profiling_ = on; }
  struct LayerTime {
    double forward = 0, backward = 0;
  };
  const std::vector<LayerTime>& layer_times() const { return times_; }
  void ResetLayerTimes() { times_.assign(layers_.size(), LayerTime()); }

 protected:
  // The layers for this input and class count (unbuilt). Errors are InvalidArgument.
  virtual absl::StatusOr<std::vector<std::unique_ptr<Layer>>> MakeLayers(const Shape& sample_shape,
                                                                         int num_classes) = 0;

 private:
  bool NeedsInputGrad(int i) const;

  bool built_ = false;
  bool training_ = true;
  Shape sample_shape_;
  int num_classes_ = 0;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> out_shapes_;
  int first_trainable_ = 0;
  // Per layer: raw output, output after the output transform, gradients.
  std::vector<Tensor> out_, post_, grad_out_, grad_in_;
  bool profiling_ = false;
  std::vector<LayerTime> times_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_MODEL_H_
