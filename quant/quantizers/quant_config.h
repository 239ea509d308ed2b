// The `quant:` section of an experiment: how weights and activations are
// quantized, with per-layer overrides chosen by regex on layer names.
//
//   quant:
//     weights:     {quantizer: affine, bits: 4, symmetric: true, granularity: per_channel}
//     activations: {quantizer: affine, bits: 4, observer: histogram, calibration: mse}
//     overrides:                      # applied in order; a later match wins per key
//       - match: "conv1|fc3"          # the whole layer name must match (ECMAScript)
//         weights: {bits: 8}          # merged over the spec so far
//         activations: {bits: 8}
//       - match: "fc3"
//         activations: none           # leave this layer's output in float
//
// Read() builds every spec (base and each override merged over it) once, so a
// bad key or value anywhere is reported before anything runs, located at the
// override that introduced it. QAT schemes and PTQ methods then ask for the
// quantizers of each layer by name.
#ifndef QUANT_QUANTIZERS_QUANT_CONFIG_H_
#define QUANT_QUANTIZERS_QUANT_CONFIG_H_

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/quantizers/quantizer.h"
#include "yaml-cpp/yaml.h"

namespace quant {

class QuantConfig {
 public:
  // The specs that apply to one layer after the overrides.
  struct Resolved {
    YAML::Node weights{YAML::NodeType::Undefined};      // a spec map, or undefined: float
    YAML::Node activations{YAML::NodeType::Undefined};  // likewise
    std::vector<int> overrides_applied;  // indices into overrides, in order
  };

  // Reads `quant` (the section's reader; its keys are marked read, so the
  // caller's Finish() checks them). Every spec is built once to check it.
  static absl::StatusOr<std::unique_ptr<QuantConfig>> Read(ParamReader& quant);

  bool quantizes_weights() const;
  bool quantizes_activations() const;
  int num_overrides() const { return static_cast<int>(overrides_.size()); }

  Resolved For(const std::string& layer) const;
  // The layer's weight / activation quantizer; null when that layer's weights
  // (activations) stay in float.
  absl::StatusOr<std::unique_ptr<Quantizer>> WeightQuantizer(const std::string& layer) const;
  absl::StatusOr<std::unique_ptr<Quantizer>> ActivationQuantizer(const std::string& layer) const;

  // One warning per override whose regex matches none of `layers`, naming the
  // override's location and listing the layer names.
  std::vector<std::string> UnmatchedOverrides(const std::vector<std::string>& layers) const;

  // "fc1: weights affine 4-bit ...; activations ..." for plans and logs.
  absl::StatusOr<std::string> Describe(const std::string& layer) const;

 private:
  struct Override {
    std::string match;
    std::regex regex;
    YAML::Node weights;      // map, "none", or undefined (no change)
    YAML::Node activations;
    std::string location;    // "file:line:col" of the override
  };
  enum class Kind { kWeights, kActivations };

  absl::StatusOr<std::unique_ptr<Quantizer>> Build(const std::string& layer, Kind kind) const;

  std::string file_;
  // Base specs; undefined: not quantized. (A default YAML::Node is a defined null.)
  YAML::Node weights_{YAML::NodeType::Undefined};
  YAML::Node activations_{YAML::NodeType::Undefined};
  std::vector<Override> overrides_;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_QUANT_CONFIG_H_
