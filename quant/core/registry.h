// The plugin registry: one Registry<Interface> per kind of plugin (observer,
// quantizer, format, ...), keyed by the snake_case name a YAML config uses.
// Plugins register themselves next to their implementation with
//
//   QUANTLAB_REGISTER(Observer, "minmax", MinMaxObserver::Create,
//                     "running min/max of everything observed");
//
// in a cc_library with `alwayslink = 1`, so a plugin is added without editing
// the framework (even from a package outside quant/). An Interface names its
// kind with `static constexpr char kRegistryKind[] = "observer";` (the YAML key).
// A duplicate name is a programming error: the process stops at start-up with
// a message naming both. An unknown name is an absl::NotFoundError listing the
// registered names.
#ifndef QUANT_CORE_REGISTRY_H_
#define QUANT_CORE_REGISTRY_H_

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/params.h"
#include "quant/core/suggest.h"

namespace quant {

// What `run --list` prints of one plugin.
struct PluginDescription {
  std::string name;
  std::string help;
  std::vector<ParamInfo> params;
};

// Every registry that exists in this binary, for listings.
class RegistryIndex {
 public:
  using Describer = std::function<std::vector<PluginDescription>()>;
  static RegistryIndex& Get();
  void Add(std::string kind, Describer describer);
  // kind -> its plugins, kinds in alphabetical order.
  std::map<std::string, std::vector<PluginDescription>> DescribeAll() const;

 private:
  std::map<std::string, Describer> registries_;
};

template <typename Interface>
class Registry {
 public:
  using Factory = std::function<absl::StatusOr<std::unique_ptr<Interface>>(ParamReader&)>;

  // The process-wide registry of this kind.
  static Registry& Get() {
    static Registry* registry = new Registry();  // never destroyed: used at exit too
    return *registry;
  }

  static const char* kind() { return Interface::kRegistryKind; }

  // Adds a plugin; AlreadyExistsError if the name is taken, InvalidArgumentError if empty.
  absl::Status Register(std::string name, std::string help, Factory factory) {
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat("empty ", kind(), " name"));
    if (entries_.count(name)) {
      return absl::AlreadyExistsError(
          absl::StrCat("duplicate ", kind(), " registration: '", name, "' is already registered"));
    }
    entries_[name] = Entry{std::move(help), std::move(factory)};
    return absl::OkStatus();
  }

  bool Contains(std::string_view name) const { return entries_.count(std::string(name)) > 0; }

  std::vector<std::string> Names() const {
    std::vector<std::string> names;
    for (const auto& [name, entry] : entries_) names.push_back(name);
    return names;  // sorted: std::map
  }

  // Builds plugin `name`, which reads its settings from `params`.
  absl::StatusOr<std::unique_ptr<Interface>> Create(std::string_view name,
                                                    ParamReader& params) const {
    auto it = entries_.find(std::string(name));
    if (it == entries_.end()) return absl::NotFoundError(UnknownMessage(name));
    return it->second.factory(params);
  }

  // Reads the plugin name from `key` of `params` (e.g. `observer: minmax`) and
  // builds it from the same map. An unknown name is located at the key. With
  // an empty `default_name`, the key is required.
  absl::StatusOr<std::unique_ptr<Interface>> CreateFrom(ParamReader& params, std::string_view key,
                                                        std::string_view default_name,
                                                        std::string_view help) const {
    const std::string name = default_name.empty() ? params.RequiredString(key, help)
                                                  : params.String(key, default_name, help);
    if (absl::Status s = params.status(); !s.ok()) return s;
    if (!Contains(name)) {
      params.Fail(key, UnknownMessage(name));
      return absl::NotFoundError(params.status().message());
    }
    auto plugin = Create(name, params);
    if (!plugin.ok()) return plugin.status();
    if (absl::Status s = params.status(); !s.ok()) return s;
    return plugin;
  }

  // A YAML list of plugins, each a name (`cle`: its defaults) or a map naming it
  // (`{name: gptq, block: 64}`), created in order from `parent`'s list under `key`
  // (`passes: [...]`, `metrics: [...]`). `list` is that node (read by the caller with its
  // own help); `what` names the kind in errors ("pass names"). Every element's keys are
  // checked (Finish), so an unknown one is an error located at it.
  absl::StatusOr<std::vector<std::unique_ptr<Interface>>> CreateList(ParamReader& parent, const YAML::Node& list,
                                                                     std::string_view key,
                                                                     std::string_view what) const {
    std::vector<std::unique_ptr<Interface>> out;
    if (!list.IsSequence()) {
      parent.Fail(key, absl::StrCat("expected a list of ", std::string(what), " or {name: ..., params} maps"));
      return parent.status();
    }
    for (size_t i = 0; i < list.size(); ++i) {
      YAML::Node element = list[i];
      if (element.IsScalar()) {
        YAML::Node map(YAML::NodeType::Map);
        map["name"] = element;
        element = map;
      }
      ParamReader reader = parent.ListElement(element, key, i);
      auto plugin = CreateFrom(reader, "name", "", what);
      if (!plugin.ok()) return plugin.status();
      if (absl::Status s = reader.Finish(); !s.ok()) return s;
      out.push_back(std::move(plugin).value());
    }
    return out;
  }

  // Runs every factory against a describing reader to list its parameters.
  std::vector<PluginDescription> Describe() const {
    std::vector<PluginDescription> out;
    for (const auto& [name, entry] : entries_) {
      ParamReader reader = ParamReader::ForDescription();
      (void)entry.factory(reader);  // only the declarations matter here
      out.push_back(PluginDescription{name, entry.help, reader.Declared()});
    }
    return out;
  }

 private:
  struct Entry {
    std::string help;
    Factory factory;
  };

  Registry() {
    RegistryIndex::Get().Add(kind(), [this] { return Describe(); });
  }

  std::string UnknownMessage(std::string_view name) const {
    const std::vector<std::string> names = Names();
    return absl::StrCat("unknown ", kind(), " '", std::string(name), "'", DidYouMean(name, names),
                        "; registered: ", names.empty() ? "(none linked)" : absl::StrJoin(names, ", "));
  }

  std::map<std::string, Entry> entries_;
};

// Used by QUANTLAB_REGISTER at static-initialisation time.
template <typename Interface>
bool RegisterOrDie(std::string name, std::string help,
                   typename Registry<Interface>::Factory factory) {
  absl::Status s = Registry<Interface>::Get().Register(name, std::move(help), std::move(factory));
  if (!s.ok()) {
    std::fprintf(stderr, "quantlab: fatal at start-up: %s\n", std::string(s.message()).c_str());
    std::exit(2);
  }
  return true;
}

}  // namespace quant

#define QUANTLAB_REGISTER(Interface, name, factory, help)                    \
  static const bool QUANTLAB_REGISTRY_CONCAT_(quantlab_registered_, __LINE__) \
      [[maybe_unused]] = ::quant::RegisterOrDie<Interface>(name, help, factory)
#define QUANTLAB_REGISTRY_CONCAT_INNER_(a, b) a##b
#define QUANTLAB_REGISTRY_CONCAT_(a, b) QUANTLAB_REGISTRY_CONCAT_INNER_(a, b)

#endif  // QUANT_CORE_REGISTRY_H_
