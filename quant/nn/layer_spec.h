// A layer described as data: what the `sequential` model reads from YAML and
// what the built-in models (mlp, cnn, cnn_bn) are written in. MakeLayer turns
// a spec into an unbuilt Layer; sizes left at -1 are inferred from the input
// at Build, sizes given are checked against it.
//
// YAML (one list element of `model.layers`):
//   {type: conv2d, name: conv1, out_channels: 16, kernel: 3, stride: 1, padding: 1, bias: true}
//   {type: linear, out_features: 10, in_features: 1568}
//   {type: maxpool2d, kernel: 2}   {type: avgpool2d, kernel: 2, stride: 2}
//   {type: relu} {type: relu6} {type: hardtanh, min_val: -1, max_val: 1}
//   {type: flatten} {type: dropout, p: 0.5} {type: batchnorm1d} {type: batchnorm2d, momentum: 0.1}
// or just the type as a string: `- relu`.
#ifndef QUANT_NN_LAYER_SPEC_H_
#define QUANT_NN_LAYER_SPEC_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/layer.h"

namespace quant::nn {

struct LayerSpec {
  std::string type;  // one of LayerTypes()
  std::string name;  // "" = automatic: conv1, fc2, bn1, relu3, pool1, flatten1, dropout1
  int64_t in = -1;   // in_features / in_channels / num_features
  int64_t out = 0;   // out_features / out_channels
  int64_t kernel = 3;
  int64_t stride = 0;  // 0: 1 for conv, kernel for pooling
  int64_t padding = 0;
  bool bias = true;
  double p = 0.5;          // dropout
  double lo = -1, hi = 1;  // hardtanh
  double momentum = 0.1, eps = 1e-5;  // batchnorm
};

const std::vector<std::string>& LayerTypes();

// Reads one spec from its YAML map (the caller Finish()es the reader).
LayerSpec ReadLayerSpec(ParamReader& p);

// Fills empty names with automatic ones, counting per kind in order
// ("conv1", "conv2", "fc1", ...).
void AssignLayerNames(std::vector<LayerSpec>* specs);

std::unique_ptr<Layer> MakeLayer(const LayerSpec& spec);

}  // namespace quant::nn

#endif  // QUANT_NN_LAYER_SPEC_H_
