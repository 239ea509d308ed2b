// PTQ passes (registry kind "ptq_pass"): transforms of the BN-folded float net that
// run before quantization, composed in order in YAML:
//
//   ptq: {method: static, passes: [cle, bias_absorption, {name: bias_correction, mode: analytic}]}
//
// A pass changes FloatNet's weights and biases (WeightedLayer::torch_weight / bias,
// then SyncWeightedLayer) or its fused activations, and appends what it did, in
// numbers, to the context's notes (they go into the record's ptq_notes). A pattern a
// pass cannot handle is skipped and said, never silently treated.
//
// Each pass is one file pair plus its QUANTLAB_REGISTER line (cle_pass,
// bias_absorption_pass, bias_correction_pass).
#ifndef QUANT_PTQ_PTQ_PASS_H_
#define QUANT_PTQ_PTQ_PASS_H_

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/ptq/converter.h"
#include "quant/quantizers/quant_config.h"

namespace quant::ptq {

struct PtqPassContext {
  FloatNet* net = nullptr;
  const QuantConfig* quant = nullptr;   // the weight specs a pass may need (bias correction)
  const float* calibration = nullptr;   // NHWC calibration images (may be null: data-free)
  int64_t images = 0;
  std::vector<std::string>* notes = nullptr;
  uint64_t seed = 0;    // the run's seed: passes that sample draw from it
  FILE* log = nullptr;  // progress of long passes (may be null)
  std::string name;     // the run's name, the progress lines' prefix
};

class PtqPass {
 public:
  static constexpr char kRegistryKind[] = "ptq_pass";
  virtual ~PtqPass() = default;
  virtual std::string Describe() const = 0;
  virtual absl::Status Run(PtqPassContext& ctx) = 0;
};

// Reads `passes:` (a list of names or {name: ..., params}) of a ptq section.
absl::StatusOr<std::vector<std::unique_ptr<PtqPass>>> ReadPasses(ParamReader& ptq);

// A pair of consecutive weighted layers for equalization/absorption: the output
// channels of `first` feed the input channels of `second`, through the fused
// activation of `first` and per-channel ops (max/average/global-average pools) only,
// every tensor on the way consumed by the next op alone.
struct LayerPair {
  int first = -1, second = -1;  // indices into FloatNet::weighted
  bool depthwise_second = false;  // second is a depthwise conv: input channel i is its output channel i
};

// Every such pair of `net`, in op order; the weighted layers that have a single
// consumer but cannot pair get one line each in `skipped` ("stem -> ir1_add: an add").
std::vector<LayerPair> FindLayerPairs(const FloatNet& net, std::vector<std::string>* skipped);

// The weights of input channel `c` of layer `w` (conv [O, C/groups, k, k] or linear
// [O, I]), as flat indices into torch_weight. Depthwise: output channel c's kernel.
std::vector<int64_t> InputChannelIndices(const WeightedLayer& w, int64_t c, bool depthwise);

// Runs the float executor of `model` (FloatNet::model, or a copy with other weights) over
// `n` NHWC images (`per_image` values each) in batches, and hands the input of weighted
// layer `w` to `rows_fn` as im2col rows in the lowered weight layout (K = kh * kw * C/groups
// for a conv, I for a linear): rows_fn(group, rows [count, K] row-major, count). A grouped
// conv gives each group's rows separately. Batches are handed in order, so that two runs
// over two nets see the same positions in the same order.
// With `grids` (CalibratedActivationGrids), the images and every op output with a grid are
// fake-quantized on it first: the inputs the quantized net gives.
absl::Status ForEachInputRows(const backends::QuantizedModel& model, const WeightedLayer& w, const float* images,
                              int64_t n, int64_t per_image,
                              const std::function<void(int64_t group, const float* rows, int64_t count)>& rows_fn,
                              const std::map<int, QParams>* grids = nullptr);

// The activation grids the conversion would calibrate on ctx.net with ctx.quant over the
// calibration images, by tensor index: the input and every op output with qparams of its own
// (passes that reconstruct with quantized activations, then pin them: FloatNet::activation_grid).
absl::StatusOr<std::map<int, QParams>> CalibratedActivationGrids(const PtqPassContext& ctx);

// x = (clamp(round(x / s) + z, qmin, qmax) - z) s on a per-tensor grid, as the fake_quant backend rounds.
void FakeQuantizeOnGrid(const QParams& grid, float* x, int64_t n);

// The grid layer `w`'s weight quantizer of `quant` picks on its current float weight (the
// one the conversion would use); nullopt when the layer's weights stay float. A per-block
// grid is refused, naming `pass` and the layer.
absl::StatusOr<std::optional<QParams>> WeightGridOf(const QuantConfig& quant, const WeightedLayer& w,
                                                    const std::string& pass);

// Output channels of a weighted layer, and the values of each in torch_weight.
int64_t OutputChannels(const WeightedLayer& w);
int64_t ValuesPerOutputChannel(const WeightedLayer& w);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_PTQ_PASS_H_
