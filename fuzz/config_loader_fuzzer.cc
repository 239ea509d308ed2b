// Fuzzes the experiment-config loader (YAML file -> ExperimentSpecs, with sweeps)
// and the ParamReader on what it loads, as the driver and every plugin use it.
#include <cstdint>
#include <string>
#include <vector>

#include "experiments/config_loader.h"
#include "fuzz/fuzz_util.h"
#include "quant/core/params.h"

namespace {

// Reads the config's well-known sections through ParamReader the way plugin
// factories do (every getter kind, nested maps, list elements), then Finish().
void ReadParams(const quant::ExperimentSpec& spec) {
  quant::ParamReader root(spec.root, spec.source_file, "", spec.origins);
  root.String("name", "", "");
  root.IntInRange("seed", 0, 0, 1 << 30, "");
  quant::ParamReader& train = root.Map("train", "");
  train.Choice("scheme", "fp32", {"fp32", "qat", "binary"}, "");
  train.IntInRange("epochs", 1, 0, 1000, "");
  train.Double("lr", 0.1, "");
  train.Bool("integer_exact", false, "");
  quant::ParamReader& quant_section = root.Map("quant", "");
  quant::ParamReader& weights = quant_section.Map("weights", "");
  weights.IntInRange("bits", 8, 1, 32, "");
  weights.DoubleInRange("percentile", 99.9, 0, 100, "");
  weights.IntList("shape", {}, "");
  weights.DoubleList("values", {}, "");
  weights.StringList("names", {}, "");
  const YAML::Node nodes = root.Node("model", "");
  if (nodes.IsSequence()) {
    for (size_t i = 0; i < nodes.size() && i < 16; ++i) {
      quant::ParamReader element = root.ListElement(nodes[i], "model", i);
      element.String("op", "", "");
      element.Finish().IgnoreError();
    }
  }
  root.Finish().IgnoreError();
  quant::EmitYaml(spec.root);
  quant::ConfigId(spec.root);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = quant::fuzz::ScratchPath(".yaml");
  quant::fuzz::WriteScratch(path, data, size);
  auto specs = quant::LoadExperiments(path, {});
  if (specs.ok()) {
    // Bounded: a sweep can expand to many experiments, each read the same way.
    for (size_t i = 0; i < specs->size() && i < 8; ++i) ReadParams((*specs)[i]);
  }
  // The --set path: "key.path=value" with a YAML value.
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto assignment = quant::ParseAssignment(text);
  if (assignment.ok()) {
    YAML::Node root = YAML::Load("{name: x}");
    quant::SetAtPath(root, assignment->first, assignment->second).IgnoreError();
  }
  return 0;
}
