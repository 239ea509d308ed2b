// Conversion of a trained quant::nn::Model (a graph) into a QuantizedModel v2, as a
// pipeline of named passes over a float graph. Each pass is a function that takes
// the graph, changes it, and appends one line to a PassLog saying what it did in
// numbers (ONNX Runtime's graph transformers / TVM's Sequential, in small):
//
//   extract            nn::Model -> FloatGraph: one node per nn node (type(), typed
//                      accessors; no dynamic_cast, no Describe() parsing), weights in
//                      PyTorch layout, the nn fusion groups (quant/nn/fusion.h)
//   fold_batch_norm    BatchNorm folded into the conv/linear of its fusion group with
//                      quant/training/bn_folding.h's FoldBatchNorm (the one fold QAT uses)
//   fuse_activations   ReLU/ReLU6 fused into the conv/linear/add of its fusion group
//                      (the integer model's output clamp)
//   remove_identities  Dropout dropped (identity at inference)
//   lower              FloatGraph -> FloatNet: a v2 QuantizedModel with FLOAT32 tensors
//                      (NHWC activations, OHWI conv weights, the NCHW->NHWC column
//                      permutation of a linear after a flatten), the float model
//   choose_qparams     (QuantizeStatic) observers/calibration of the QuantConfig on float
//                      forward passes of the float executor, per tensor
//   quantize_weights   (QuantizeStatic) integer weights, int32 biases at s_in*s_w, clamps,
//                      requantization multipliers and lookup tables (ComputeRequantization)
//
// The float executor (FloatForward, floatk::RunGraph) runs the lowered float graph,
// or any range of its ops, with hooks that see or replace each op's input and output
// (PyTorch FX Interpreter-like): calibration, dynamic quantization, and later bias
// correction / AdaRound.
#ifndef QUANT_PTQ_CONVERTER_H_
#define QUANT_PTQ_CONVERTER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"
#include "quant/core/tensor.h"
#include "quant/nn/fusion.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/quantizers/quantizer.h"

namespace quant::ptq {

// What the passes did, one line per pass ("fold_batch_norm: 2 BatchNorms folded: bn1 into conv1, ...").
using PassLog = std::vector<std::string>;

// The float graph the passes transform: the nn graph's nodes and values.
struct FloatNode {
  std::string type;               // nn::Layer::type()
  std::string name;               // the nn node's name (quantizer specs address it)
  std::string describe;           // Describe(), for error messages only
  std::vector<int> inputs;        // value ids (0: model input, i + 1: output of node i)
  nn::Layer* layer = nullptr;     // typed accessors (not owned)
  Tensor weight;                  // conv/linear: PyTorch layout ([O, I] / [O, I/groups, k, k]), BN-folded
  std::vector<float> bias;        // conv/linear, BN-folded
  backends::Activation fused = backends::ACTIVATION_NONE;
  bool removed = false;           // folded, fused or an identity: its output value is its input's
};

struct FloatGraph {
  std::string source_model;
  std::vector<FloatNode> nodes;
  std::vector<nn::Shape> value_shapes;  // per value id, per sample ([C, H, W] or [F])
  int output_value = 0;
  std::vector<nn::FusionGroup> groups;  // nn::FindFusionGroups of the model
  // The value that value id `v` stands for once removed nodes are skipped.
  int Resolve(int v) const;
  std::string NodeLabel(int node) const;  // "node 3 'bn1' (BatchNorm2d(8))"
};

absl::StatusOr<FloatGraph> ExtractGraph(nn::Model& model, PassLog* log);
absl::Status FoldBatchNormPass(FloatGraph* graph, PassLog* log);
absl::Status FuseActivationsPass(FloatGraph* graph, PassLog* log);
absl::Status RemoveIdentitiesPass(FloatGraph* graph, PassLog* log);

// One conv/linear of the lowered float net.
struct WeightedLayer {
  int index = 0;             // op index into FloatNet::model.ops
  int weight_tensor = -1;    // tensor indices in FloatNet::model
  int bias_tensor = -1;
  std::string name;          // the nn node's name (quantizer specs address it)
  Tensor torch_weight;       // BN-folded, PyTorch layout: [O, I] or [O, I/groups, kh, kw]
  // model_layout[j] = torch_weight[perm[j]]: OHWI / NHWC-ordered columns.
  std::vector<int64_t> perm;
  std::vector<float> bias;   // BN-folded
  // The folded BatchNorm's affine parameters (gamma, beta per output channel; empty
  // without one): the pre-activation output is ~N(beta, gamma^2) per channel, which
  // data-free passes (bias absorption, analytic bias correction) use (Nagel et al. 2019).
  std::vector<float> bn_gamma, bn_beta;
  // Set by a pass that chose the integer weights itself (gptq, adaround): torch_weight
  // then lies on this grid, and quantize_weights takes the codes from it instead of
  // observing the weight again (which could pick another scale).
  std::optional<QParams> weight_grid;
};

struct FloatNet {
  backends::QuantizedModel model;  // v2 graph, FLOAT32 tensors, float_data weights; no quantization
  std::vector<WeightedLayer> weighted;
  std::vector<int64_t> nn_input_shape;  // the nn model's sample shape ([C, H, W] or [F])
  PassLog log;                          // what extract .. lower did
  // The tensor of each nn value id (0: the input, i + 1: node i's output); a removed
  // node's value is the tensor it passes on (a fused ReLU's is its conv's output).
  std::vector<int> value_tensor;
  // Ops whose output range is fixed whatever the data (sigmoid, tanh), by op
  // index: the op's nn::Layer::fixed_output_qparams (PyTorch's quint8 ones).
  struct FixedQParams {
    float scale = 0;
    int32_t zero_point = 0;
  };
  std::map<int, FixedQParams> fixed_output;
  // Set by a pass that fixed activation grids itself (brecq/qdrop with act_quant: the
  // grids, with learned step sizes, that the reconstruction trained against), by tensor
  // index (the input or an op output with its own qparams): choose_qparams takes them
  // instead of observing, so the integer model uses exactly those grids.
  std::map<int, QParams> activation_grid;
};

absl::StatusOr<FloatNet> LowerPass(const FloatGraph& graph, PassLog* log);

// After a pass changed net->weighted[k].torch_weight / bias: writes them into the
// lowered model's float tensors (OHWI / permuted layout).
void SyncWeightedLayer(FloatNet* net, int k);

// extract -> fold_batch_norm -> fuse_activations -> remove_identities -> lower. Fails
// (InvalidArgument naming the nn node) on a node the integer format cannot express:
// Hardtanh, a BatchNorm or activation with nothing to fold/fuse into, an op without an
// integer form.
absl::StatusOr<FloatNet> ExtractFloatNet(nn::Model& model);

// NCHW images [N, C, H, W] -> NHWC (a copy; identity order when C == 1).
std::vector<float> ToNhwc(const Tensor& images);
std::vector<float> ToNhwc(const float* images, int64_t n, const std::vector<int64_t>& chw);

// Float forward of `net` on `batch` NHWC inputs into `logits`. Optional hooks:
// `before(weighted_index, data, count)` may modify (a copy of) the input of each
// conv/linear (dynamic quantization); `after(op_index, data, count)` sees each op's
// output after its fused activation (calibration).
using Hook = std::function<absl::Status(int, float*, int64_t)>;
absl::Status FloatForward(const backends::QuantizedModel& net, const float* input, int64_t batch,
                          std::vector<float>* logits, const Hook& before = nullptr, const Hook& after = nullptr);

// Ops whose output has qparams of its own (the others keep their input's: max pool,
// flatten, reshape; or have fixed ones: sigmoid, tanh).
bool OwnOutputQParams(const backends::Op& op);

// The quantizers of a static conversion.
struct StaticQuantizers {
  std::unique_ptr<Quantizer> input;
  std::vector<std::unique_ptr<Quantizer>> weights;      // per FloatNet::weighted
  // Per op of FloatNet::model: the quantizer of its output, or null when the output
  // keeps its input's qparams (max pool, flatten, reshape) or has fixed ones (sigmoid, tanh).
  std::vector<std::unique_ptr<Quantizer>> activations;
  bool is_signed = true;  // the model's activation dtype (int8 / uint8)
};

// Builds them from `config` (the input uses the activation spec of the name "input",
// each op's output the spec of its nn node's name); rejects, naming the layer, a
// float weight/activation (none), a quantizer that is not affine (static PTQ needs an
// integer grid: e.g. format_cast), a per-group weight granularity, activations that
// are not per-tensor, more than 8 bits, or mixed activation signedness.
absl::StatusOr<StaticQuantizers> MakeStaticQuantizers(const FloatNet& net, const QuantConfig& config);

// Sets op's output clamp: the grid's [lo, hi] narrowed by its fused ReLU / ReLU6.
void SetOutputClamp(backends::Op* op, float scale, int32_t zero_point, int32_t lo, int32_t hi);

// Writes layer `w`'s integer weights (`codes` in PyTorch layout, stored in the model's
// OHWI / permuted order) with `grid`'s scales and zero points, and its int32 bias at
// s_in * s_w[c] (the input tensor's qparams must be set). Returns the weight count.
int64_t WriteWeightsAndBias(const WeightedLayer& w, const std::vector<int32_t>& codes, const QParams& grid,
                            backends::DType dtype, int bits, backends::QuantizedModel* m);

// choose_qparams (calibrates the activation quantizers on `calibration`: n NHWC inputs,
// in batches of `batch_size`) then quantize_weights; returns the validated integer model
// (float weights kept). A scale of 0/NaN/inf is an error naming the layer. `log` (optional)
// gets one line per pass.
absl::StatusOr<backends::QuantizedModel> QuantizeStatic(const FloatNet& net, StaticQuantizers& q,
                                                        const float* calibration, int64_t n,
                                                        int64_t batch_size = 256, PassLog* log = nullptr);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_CONVERTER_H_
