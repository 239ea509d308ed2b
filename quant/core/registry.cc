#include "quant/core/registry.h"

namespace quant {

RegistryIndex& RegistryIndex::Get() {
  static RegistryIndex* index = new RegistryIndex();
  return *index;
}

void RegistryIndex::Add(std::string kind, Describer describer) {
  registries_[std::move(kind)] = std::move(describer);
}

std::map<std::string, std::vector<PluginDescription>> RegistryIndex::DescribeAll() const {
  std::map<std::string, std::vector<PluginDescription>> out;
  for (const auto& [kind, describe] : registries_) out[kind] = describe();
  return out;
}

}  // namespace quant
