#include "quant/quantizers/quantizer.h"

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {

absl::StatusOr<std::unique_ptr<Quantizer>> BuildQuantizer(ParamReader& p) {
  return Registry<Quantizer>::Get().CreateFrom(p, "quantizer", "affine", "which quantizer");
}

absl::StatusOr<QParams> Quantizer::IntegerGrid() const {
  return absl::UnimplementedError(absl::StrCat(
      "quantizer ", Describe(), " has no integer grid (its values are not scale * (q - zero_point) for integers q); "
      "the integer model needs affine, lsq, lsq_plus, pact or dorefa"));
}

absl::StatusOr<std::unique_ptr<Quantizer>> BuildQuantizerFromYaml(const std::string& yaml,
                                                                  const std::string& file) {
  YAML::Node node;
  try {
    node = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not valid YAML: ", e.what()));
  }
  ParamReader p(node, file, "");
  auto q = BuildQuantizer(p);
  if (!q.ok()) return q.status();
  absl::Status s = p.Finish();
  if (!s.ok()) return s;
  return q;
}

}  // namespace quant
