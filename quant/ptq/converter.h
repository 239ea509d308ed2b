// Conversion of a trained quant::nn::Model into a QuantizedModel.
//
// Step 1, ExtractFloatNet: the float network in the integer model's structure
// (quantized_model.proto): BatchNorm folded into the preceding conv/linear,
// ReLU/ReLU6 fused into the preceding layer, Dropout dropped, conv weights
// OIHW -> OHWI and the columns of the first linear after a flatten permuted
// from NCHW to NHWC order. Float weights only; it is what calibration and the
// float simulations run. The weights are also kept in PyTorch's layout (with
// the permutation to the model layout), because quantizer specs (per-channel
// axis, per-group blocks) address that layout.
//
// Step 2, QuantizeStatic: per layer quantizers (from the QuantConfig), weights
// quantized to integers, activation ranges calibrated on float forward passes,
// int32 biases at s_in*s_w, clamps for the fused activations, requantization
// multipliers (ComputeRequantization). Any layer the format cannot express is
// an error naming the layer.
#ifndef QUANT_PTQ_CONVERTER_H_
#define QUANT_PTQ_CONVERTER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/quantized_model.h"
#include "quant/core/tensor.h"
#include "quant/nn/model.h"
#include "quant/quantizers/quant_config.h"
#include "quant/quantizers/quantizer.h"

namespace quant::ptq {

// One conv/linear of the float net.
struct WeightedLayer {
  int index = 0;             // into FloatNet::model.layers
  std::string name;          // the nn layer's name (quantizer specs address it)
  Tensor torch_weight;       // BN-folded, PyTorch layout: [O, I] or [O, I, kh, kw]
  // model_layout[j] = torch_weight[perm[j]]: OHWI / NHWC-ordered columns.
  std::vector<int64_t> perm;
  std::vector<float> bias;   // BN-folded
};

struct FloatNet {
  backends::QuantizedModel model;  // structure + float_weights/float_bias, no quantization
  std::vector<WeightedLayer> weighted;
  std::vector<int64_t> nn_input_shape;  // the nn model's sample shape ([C, H, W] or [F])
};

// Fails (InvalidArgument naming the nn layer) on a layer the integer format cannot
// express: average pooling, Hardtanh, a BatchNorm or activation with nothing to fold into.
absl::StatusOr<FloatNet> ExtractFloatNet(nn::Model& model);

// NCHW images [N, C, H, W] -> NHWC (a copy; identity order when C == 1).
std::vector<float> ToNhwc(const Tensor& images);
std::vector<float> ToNhwc(const float* images, int64_t n, const std::vector<int64_t>& chw);

// Float forward of `net` on `batch` NHWC inputs into `logits`. Optional hooks:
// `before(weighted_index, data, count)` may modify the input of each conv/linear
// in place (dynamic quantization); `after(layer_index, data, count)` sees each
// layer's output after its fused activation (calibration).
using Hook = std::function<absl::Status(int, float*, int64_t)>;
absl::Status FloatForward(const backends::QuantizedModel& net, const float* input, int64_t batch,
                          std::vector<float>* logits, const Hook& before = nullptr, const Hook& after = nullptr);

// The quantizers of a static conversion, one per weighted layer plus the input's.
struct StaticQuantizers {
  std::unique_ptr<Quantizer> input;
  std::vector<std::unique_ptr<Quantizer>> weights;      // per FloatNet::weighted
  std::vector<std::unique_ptr<Quantizer>> activations;  // outputs of FloatNet::weighted
};

// Builds them from `config` (the input uses the activation spec of the name
// "input"); rejects, naming the layer, a float weight/activation (none), a
// per-group weight granularity, activations that are not per-tensor, more than 8
// bits, or mixed activation signedness.
absl::StatusOr<StaticQuantizers> MakeStaticQuantizers(const FloatNet& net, const QuantConfig& config);

// Calibrates the activation quantizers on `calibration` (n NHWC inputs, in
// batches of `batch_size`), quantizes weights and biases and returns the
// validated integer model (float weights kept). A scale of 0/NaN/inf is an
// error naming the layer.
absl::StatusOr<backends::QuantizedModel> QuantizeStatic(const FloatNet& net, StaticQuantizers& q,
                                                        const float* calibration, int64_t n,
                                                        int64_t batch_size = 256);

}  // namespace quant::ptq

#endif  // QUANT_PTQ_CONVERTER_H_
