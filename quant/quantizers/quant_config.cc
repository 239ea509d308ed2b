#include "quant/quantizers/quant_config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

bool IsNone(const YAML::Node& n) {
  return n.IsDefined() && n.IsScalar() && (n.Scalar() == "none" || n.Scalar() == "false");
}

// `over`'s keys replace `base`'s. The values are the original nodes, so their
// line marks survive; the new map's keys have none, which `origins` supplies.
YAML::Node Merge(const YAML::Node& base, const YAML::Node& over) {
  YAML::Node merged(YAML::NodeType::Map);
  if (base.IsDefined() && base.IsMap()) {
    for (const auto& kv : base) merged[kv.first.Scalar()] = kv.second;
  }
  for (const auto& kv : over) merged[kv.first.Scalar()] = kv.second;
  return merged;
}

// Applies one override's entry (map, none, or absent) to the spec so far.
YAML::Node Apply(const YAML::Node& current, const YAML::Node& entry) {
  if (!entry.IsDefined()) return current;
  if (IsNone(entry)) return YAML::Node(YAML::NodeType::Undefined);
  return Merge(current, entry);
}

const char* KindName(bool weights) { return weights ? "weights" : "activations"; }

}  // namespace

absl::StatusOr<std::unique_ptr<QuantConfig>> QuantConfig::Read(ParamReader& quant) {
  auto config = std::unique_ptr<QuantConfig>(new QuantConfig());
  config->file_ = quant.file();
  const char* kSpecHelp = "{quantizer, bits, symmetric, granularity, observer, calibration, ...}";
  for (bool weights : {true, false}) {
    const char* kind = KindName(weights);
    if (!quant.Has(kind)) {
      quant.Node(kind, kSpecHelp);  // declared, for listings and suggestions
      continue;
    }
    ParamReader& spec = quant.Map(kind, kSpecHelp);
    (weights ? config->weights_ : config->activations_).reset(spec.node());
    auto built = BuildQuantizer(spec);
    if (!built.ok()) return built.status();
  }
  const YAML::Node list = quant.Node(
      "overrides", "list of {match: regex on layer names, weights: {...}|none, activations: ...}");
  RETURN_IF_ERROR(quant.status());
  if (list.IsDefined() && !list.IsSequence()) {
    quant.Fail("overrides", "expected a list of {match: ..., weights: ..., activations: ...}");
    return quant.status();
  }
  if (!list.IsDefined()) return config;

  // The specs as they stand before each override, to check each merged result.
  // Handles are rebound with reset(): yaml-cpp's operator= on a handle writes
  // through to the node it refers to, which would edit the base specs.
  YAML::Node current[2];
  current[0].reset(config->weights_);
  current[1].reset(config->activations_);
  for (size_t i = 0; i < list.size(); ++i) {
    ParamReader element = quant.ListElement(list[i], "overrides", i);
    Override o;
    o.match = element.RequiredString("match", "regex; the whole layer name must match");
    o.weights = element.Node("weights", "spec keys merged over the weights spec, or none");
    o.activations = element.Node("activations", "spec keys merged over the activations spec, or none");
    RETURN_IF_ERROR(element.Finish());
    o.location = NodeLocation(quant.file(), list[i]);
    try {
      o.regex = std::regex(o.match, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      element.Fail("match", absl::StrCat("not a valid regular expression: ", e.what()));
      return element.status();
    }
    for (int k = 0; k < 2; ++k) {
      const YAML::Node& entry = k == 0 ? o.weights : o.activations;
      const std::string path = absl::StrCat(element.key_path(), ".", KindName(k == 0));
      if (!entry.IsDefined() || IsNone(entry)) {
        current[k].reset(Apply(current[k], entry));
        continue;
      }
      if (!entry.IsMap()) {
        element.Fail(KindName(k == 0), "expected a map of spec keys, or none");
        return element.status();
      }
      // Check the spec this override produces. Keys it sets are located at the
      // override; keys it inherits are said to be inherited.
      auto origins = std::make_shared<OverrideOrigins>();
      for (const auto& kv : entry) {
        (*origins)[absl::StrCat(path, ".", kv.first.Scalar())] = NodeLocation(quant.file(), kv.first);
      }
      if (current[k].IsDefined()) {
        for (const auto& kv : current[k]) {
          const std::string key = absl::StrCat(path, ".", kv.first.Scalar());
          if (!origins->count(key)) {
            (*origins)[key] = absl::StrCat(NodeLocation(quant.file(), kv.second), " (inherited by ",
                                           path, ")");
          }
        }
      }
      current[k].reset(Merge(current[k], entry));
      ParamReader merged(current[k], quant.file(), path, origins);
      auto built = BuildQuantizer(merged);
      if (!built.ok()) return built.status();
      RETURN_IF_ERROR(merged.Finish());
    }
    config->overrides_.push_back(std::move(o));
  }
  return config;
}

bool QuantConfig::quantizes_weights() const {
  if (weights_.IsDefined()) return true;
  for (const Override& o : overrides_) {
    if (o.weights.IsDefined() && !IsNone(o.weights)) return true;
  }
  return false;
}

bool QuantConfig::quantizes_activations() const {
  if (activations_.IsDefined()) return true;
  for (const Override& o : overrides_) {
    if (o.activations.IsDefined() && !IsNone(o.activations)) return true;
  }
  return false;
}

QuantConfig::Resolved QuantConfig::For(const std::string& layer) const {
  Resolved r;
  r.weights.reset(weights_);
  r.activations.reset(activations_);
  for (size_t i = 0; i < overrides_.size(); ++i) {
    const Override& o = overrides_[i];
    if (!std::regex_match(layer, o.regex)) continue;
    r.weights.reset(Apply(r.weights, o.weights));
    r.activations.reset(Apply(r.activations, o.activations));
    r.overrides_applied.push_back(static_cast<int>(i));
  }
  return r;
}

absl::StatusOr<std::unique_ptr<Quantizer>> QuantConfig::Build(const std::string& layer,
                                                             Kind kind) const {
  const Resolved r = For(layer);
  const YAML::Node& spec = kind == Kind::kWeights ? r.weights : r.activations;
  if (!spec.IsDefined()) return std::unique_ptr<Quantizer>();
  ParamReader reader(spec, file_,
                     absl::StrCat("quant.", KindName(kind == Kind::kWeights), " (layer ", layer, ")"));
  ASSIGN_OR_RETURN(std::unique_ptr<Quantizer> q, BuildQuantizer(reader));
  RETURN_IF_ERROR(reader.Finish());
  return q;
}

absl::StatusOr<std::unique_ptr<Quantizer>> QuantConfig::WeightQuantizer(
    const std::string& layer) const {
  return Build(layer, Kind::kWeights);
}

absl::StatusOr<std::unique_ptr<Quantizer>> QuantConfig::ActivationQuantizer(
    const std::string& layer) const {
  return Build(layer, Kind::kActivations);
}

std::vector<std::string> QuantConfig::UnmatchedOverrides(
    const std::vector<std::string>& layers) const {
  std::vector<std::string> warnings;
  for (size_t i = 0; i < overrides_.size(); ++i) {
    bool matched = false;
    for (const std::string& l : layers) matched = matched || std::regex_match(l, overrides_[i].regex);
    if (!matched) {
      warnings.push_back(absl::StrCat(overrides_[i].location, ": quant.overrides[", i, "]: match '",
                                      overrides_[i].match, "' matches no layer; the layers are: ",
                                      absl::StrJoin(layers, ", ")));
    }
  }
  return warnings;
}

absl::StatusOr<std::string> QuantConfig::Describe(const std::string& layer) const {
  ASSIGN_OR_RETURN(auto w, WeightQuantizer(layer));
  ASSIGN_OR_RETURN(auto a, ActivationQuantizer(layer));
  return absl::StrCat(layer, ": weights ", w ? w->Describe() : "float", "; activations ",
                      a ? a->Describe() : "float");
}

}  // namespace quant
