#include "experiments/config_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "quant/core/fnv_hash.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

// More members than any sweep here needs (the largest has 40), far fewer than would exhaust
// memory or a lifetime of CPU: a sweep of 2^40 members is refused before it is expanded.
constexpr int kMaxSweepMembers = 100000;

std::string ScalarText(const YAML::Node& node) {
  if (node.IsScalar()) return node.Scalar();
  YAML::Emitter out;
  out << YAML::Flow << node;
  return out.c_str();
}

// The shortest dot-separated suffix of `key_path` that no other varied key
// path ends with: "bits" alone is ambiguous when both quant.weights.bits and
// quant.activations.bits vary, so those become "weights.bits" and "activations.bits".
std::string UniqueSuffix(const std::string& key_path, const std::vector<std::string>& all) {
  const std::vector<std::string> parts = absl::StrSplit(key_path, '.');
  for (size_t n = 1; n < parts.size(); ++n) {
    const std::string suffix =
        absl::StrJoin(parts.begin() + static_cast<std::ptrdiff_t>(parts.size() - n), parts.end(), ".");
    bool unique = true;
    for (const std::string& other : all) {
      if (other != key_path && (other == suffix || absl::EndsWith(other, "." + suffix))) unique = false;
    }
    if (unique) return suffix;
  }
  return key_path;
}

// The suffix an axis value contributes to an experiment name: "bits=4" for a
// scalar; a list or map value is named by its position in the axis instead
// ("overrides#2"), which keeps names short and free of YAML syntax.
std::string AxisLabel(const std::string& key_path, const YAML::Node& value,
                      const std::vector<std::string>& varied, size_t position) {
  const std::string key = UniqueSuffix(key_path, varied);
  if (!value.IsScalar()) return absl::StrCat(key, "#", position + 1);
  std::string text = ScalarText(value);
  for (char& c : text) {
    if (c == '/' || c == ' ' || c == ',' || c == '[' || c == ']' || c == '{' || c == '}' ||
        c == ':') {
      c = '_';
    }
  }
  return absl::StrCat(key, "=", text);
}

// One axis of a sweep: a list of alternatives, each a set of assignments.
struct Assignment {
  std::string key_path;
  YAML::Node value;
  std::string origin;
};
using Axis = std::vector<std::vector<Assignment>>;

std::string Where(const std::string& file, const YAML::Node& n) { return NodeLocation(file, n); }

absl::StatusOr<Axis> GridAxis(const std::string& file, const YAML::Node& key, const YAML::Node& values) {
  const std::string path = key.Scalar();
  if (!values.IsSequence() || values.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(Where(file, values), ": sweep.", path,
                                                   ": expected a non-empty list of values"));
  }
  Axis axis;
  for (size_t i = 0; i < values.size(); ++i) {
    axis.push_back({Assignment{path, values[i],
                               absl::StrCat(Where(file, values[i]), " (sweep axis ", path, ")")}});
  }
  return axis;
}

absl::StatusOr<Axis> ZipAxis(const std::string& file, const YAML::Node& group) {
  if (!group.IsMap() || group.size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(file, group), ": zip: expected a map of key paths to equal-length lists"));
  }
  size_t length = 0;
  bool first = true;
  for (const auto& kv : group) {
    if (!kv.second.IsSequence() || kv.second.size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(Where(file, kv.second), ": zip.",
                                                     kv.first.Scalar(),
                                                     ": expected a non-empty list of values"));
    }
    if (first) {
      length = kv.second.size();
      first = false;
    } else if (kv.second.size() != length) {
      return absl::InvalidArgumentError(absl::StrCat(
          Where(file, kv.second), ": zip.", kv.first.Scalar(), ": has ", kv.second.size(),
          " values but the other lists of this zip group have ", length,
          "; lists that vary together must have the same length"));
    }
  }
  Axis axis(length);
  for (const auto& kv : group) {
    const std::string path = kv.first.Scalar();
    for (size_t i = 0; i < length; ++i) {
      axis[i].push_back(Assignment{path, kv.second[i],
                                   absl::StrCat(Where(file, kv.second[i]), " (zip axis ", path, ")")});
    }
  }
  return axis;
}

// Next combination of axis indices; false after the last one.
bool Advance(std::vector<size_t>& index, const std::vector<Axis>& axes) {
  for (size_t k = axes.size(); k-- > 0;) {
    if (++index[k] < axes[k].size()) return true;
    index[k] = 0;
  }
  return false;
}

std::string ResolveBase(const std::string& sweep_file, const std::string& base) {
  namespace fs = std::filesystem;
  if (fs::path(base).is_absolute()) return base;
  const fs::path beside = fs::path(sweep_file).parent_path() / base;
  std::error_code ec;  // a name too long for the file system is "not there", not an exception
  if (fs::exists(beside, ec)) return beside.lexically_normal().string();
  return base;  // relative to the working directory (the workspace root under bazel run)
}

absl::StatusOr<ExperimentSpec> MakeSpec(const std::string& file, YAML::Node root) {
  ExperimentSpec spec;
  spec.source_file = file;
  spec.root = std::move(root);
  spec.origins = std::make_shared<OverrideOrigins>();
  return spec;
}

absl::Status Apply(ExperimentSpec& spec, const Assignment& a) {
  RETURN_IF_ERROR(SetAtPath(spec.root, a.key_path, YAML::Clone(a.value)));
  (*spec.origins)[a.key_path] = a.origin;
  spec.overrides.push_back(absl::StrCat(a.key_path, "=", ScalarText(a.value)));
  return absl::OkStatus();
}

// The files being loaded, outermost first: a dependency that names one of them is a cycle.
using LoadStack = std::vector<std::string>;

absl::StatusOr<std::vector<ExperimentSpec>> Load(const std::string& path, const std::vector<std::string>& sets,
                                                 LoadStack& stack);

// Every `init_from` key of the config (at any depth of maps), with its key path.
void FindInitFrom(const YAML::Node& node, const std::string& prefix,
                  std::vector<std::pair<std::string, YAML::Node>>& out) {
  if (!node.IsMap()) return;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar()) continue;
    const std::string path = prefix.empty() ? kv.first.Scalar() : absl::StrCat(prefix, ".", kv.first.Scalar());
    if (kv.first.Scalar() == "init_from") {
      out.emplace_back(path, kv.second);
    } else {
      FindInitFrom(kv.second, path, out);
    }
  }
}

// A dependency's config file: beside the file that names it, else beside the top-level
// config (a sweep's `set:`), else relative to the working directory.
std::string ResolveDependencyFile(const std::string& spec_file, const std::string& top_file, const std::string& name) {
  namespace fs = std::filesystem;
  if (fs::path(name).is_absolute()) return name;
  for (const std::string& dir_of : {spec_file, top_file}) {
    const fs::path beside = fs::path(dir_of).parent_path() / name;
    std::error_code ec;
    if (fs::exists(beside, ec)) return beside.lexically_normal().string();
  }
  return name;
}

// Replaces each `init_from: {config: ...}` of `spec` by a marker naming the dependency's
// run ({experiment, config_id, checkpoint}, so that the dependent's id changes with the
// dependency's config) and loads the dependency, recursively.
absl::Status ResolveDependencies(ExperimentSpec& spec, const std::string& top_file, LoadStack& stack) {
  std::vector<std::pair<std::string, YAML::Node>> keys;
  FindInitFrom(spec.root, "", keys);
  for (auto& [key_path, node] : keys) {
    if (!node.IsMap()) continue;
    const std::string where = NodeLocation(spec.source_file, node);
    ParamReader reader(node, spec.source_file, key_path, spec.origins);
    const std::string config = reader.RequiredString("config", "the experiment file whose checkpoint this starts from");
    const YAML::Node set = reader.Node("set", "assignments applied to that experiment (key.path: value)");
    const std::string checkpoint =
        reader.String("checkpoint", "model.pb", "the file of that experiment's run directory to load");
    RETURN_IF_ERROR(reader.Finish());
    if (checkpoint.empty() || checkpoint.find('/') != std::string::npos || checkpoint == "." || checkpoint == "..") {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", key_path, ".checkpoint: '", checkpoint,
                                                     "' must be a file name in the run directory (e.g. model.pb)"));
    }
    std::vector<std::string> sets;
    if (set.IsDefined()) {
      if (!set.IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(NodeLocation(spec.source_file, set), ": ", key_path,
                                                       ".set: expected a map of key paths to values"));
      }
      for (const auto& kv : set) sets.push_back(absl::StrCat(kv.first.Scalar(), "=", ScalarText(kv.second)));
    }
    const std::string file = ResolveDependencyFile(spec.source_file, top_file, config);
    std::error_code ec;
    const std::string canonical = std::filesystem::weakly_canonical(file, ec).string();
    if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
      std::vector<std::string> chain(stack.begin(), stack.end());
      chain.push_back(canonical);
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", key_path, ".config: ", config,
                                                     " makes a cycle of dependencies: ", absl::StrJoin(chain, " -> ")));
    }
    auto loaded = Load(file, sets, stack);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(), absl::StrCat(where, ": ", key_path, ".config: ", config, ": ",
                                                               std::string(loaded.status().message())));
    }
    if (loaded->size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", key_path, ".config: ", file, " is a sweep of ",
                                                     loaded->size(),
                                                     " experiments; a dependency must be one experiment"));
    }
    auto dep = std::make_shared<ExperimentSpec>(std::move(loaded->front()));
    YAML::Node marker(YAML::NodeType::Map);
    marker["experiment"] = dep->name;
    marker["config_id"] = dep->config_id;
    marker["checkpoint"] = checkpoint;
    RETURN_IF_ERROR(SetAtPath(spec.root, key_path, marker));
    spec.dependencies.push_back(Dependency{key_path, checkpoint, where, std::move(dep)});
  }
  return absl::OkStatus();
}

absl::Status Finalise(ExperimentSpec& spec, const std::vector<std::string>& labels, const std::string& top_file,
                      LoadStack& stack) {
  RETURN_IF_ERROR(ResolveDependencies(spec, top_file, stack));
  const YAML::Node name = spec.root["name"];
  std::string base = name && name.IsScalar() ? name.Scalar() : "experiment";
  if (!labels.empty()) base = absl::StrCat(base, "__", absl::StrJoin(labels, "__"));
  spec.name = base;
  spec.config_id = ConfigId(spec.root);
  return absl::OkStatus();
}

// `seeds: [0, 1, 2]`: an axis of the key `seed`, each a non-negative integer, none twice.
absl::StatusOr<Axis> SeedsAxis(const std::string& file, const YAML::Node& values) {
  if (!values.IsSequence() || values.size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(file, values), ": seeds: expected a non-empty list of non-negative integers"));
  }
  Axis axis;
  std::map<uint64_t, int> seen;
  for (size_t i = 0; i < values.size(); ++i) {
    uint64_t seed = 0;
    if (!values[i].IsScalar() || values[i].Scalar().empty() || values[i].Scalar()[0] == '-' ||
        !absl::SimpleAtoi(values[i].Scalar(), &seed) || seed > uint64_t{INT64_MAX}) {
      return absl::InvalidArgumentError(absl::StrCat(Where(file, values[i]), ": seeds[", i,
                                                     "]: expected a non-negative integer, not '", ScalarText(values[i]),
                                                     "'"));
    }
    if (!seen.emplace(seed, values[i].Mark().line + 1).second) {
      return absl::InvalidArgumentError(absl::StrCat(Where(file, values[i]), ": seeds[", i, "]: seed ", seed,
                                                     " is listed twice (first at line ", seen[seed], ")"));
    }
    axis.push_back({Assignment{"seed", values[i], absl::StrCat(Where(file, values[i]), " (seeds)")}});
  }
  return axis;
}

}  // namespace

// yaml-cpp keeps the first of two equal keys in a map and drops the other
// silently; a config that sets a key twice is a mistake either way.
absl::Status CheckDuplicateKeys(const std::string& path, const YAML::Node& node, int depth = 0) {
  if (depth > 200) {
    return absl::InvalidArgumentError(absl::StrCat(NodeLocation(path, node), ": nesting deeper than 200 levels"));
  }
  if (node.IsMap()) {
    std::map<std::string, YAML::Mark> seen;
    for (const auto& kv : node) {
      if (kv.first.IsScalar()) {
        auto [it, inserted] = seen.emplace(kv.first.Scalar(), kv.first.Mark());
        if (!inserted) {
          return absl::InvalidArgumentError(absl::StrCat(
              NodeLocation(path, kv.first), ": key '", kv.first.Scalar(), "' appears twice in this map (first at line ",
              it->second.line + 1, "); keep one"));
        }
      }
      RETURN_IF_ERROR(CheckDuplicateKeys(path, kv.second, depth + 1));
    }
  } else if (node.IsSequence()) {
    for (const auto& element : node) RETURN_IF_ERROR(CheckDuplicateKeys(path, element, depth + 1));
  }
  return absl::OkStatus();
}

// Brackets nested deeper than any config needs are refused where they pass the limit: yaml-cpp
// recurses per level and its own depth guard says only "bad file". Quoted strings and comments
// are skipped; plain scalars with brackets (a regex) nest shallowly.
absl::Status CheckFlowDepth(const std::string& path, const std::string& text) {
  constexpr int kMaxDepth = 64;
  int depth = 0, line = 1, col = 0;
  char quote = 0;
  bool comment = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    ++col;
    if (c == '\n') {
      ++line, col = 0, comment = false;
      continue;
    }
    if (comment) continue;
    if (quote != 0) {
      if (quote == '"' && c == '\\')
        ++i, ++col;  // an escape: skip the next character
      else if (c == quote)
        quote = 0;
      continue;
    }
    if (c == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\t'))
      comment = true;
    else if (c == '"' || (c == '\'' && (i == 0 || std::string(" \t[{,:").find(text[i - 1]) != std::string::npos)))
      quote = c;
    else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) {
        return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ":", col, ": lists/maps nested deeper than ",
                                                       kMaxDepth, " levels; no config needs that many"));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<YAML::Node> LoadYamlFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::error_code exists_error;
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open the config file (",
                     std::filesystem::exists(path, exists_error) ? "not readable" : "no such file", ")"));
  }
  // Read with a bound: --config=/dev/zero (or a huge file by mistake) must
  // not grow until the machine runs out of memory.
  constexpr size_t kMaxConfigBytes = size_t{16} << 20;
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": the config file is larger than ",
                                                   kMaxConfigBytes >> 20, " MiB; is it the right file?"));
  }
  if (absl::Status s = CheckFlowDepth(path, text); !s.ok()) return s;
  try {
    YAML::Node node = YAML::Load(text);
    if (!node.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ":1:1: expected a map of settings at the top level (name:, dataset:, ...)"));
    }
    if (absl::Status s = CheckDuplicateKeys(path, node); !s.ok()) return s;
    return node;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ":",
                                                   e.mark.column + 1, ": YAML syntax error: ", e.msg));
  }
}

absl::Status SetAtPath(YAML::Node& root, const std::string& key_path, const YAML::Node& value) {
  const std::vector<std::string> parts = absl::StrSplit(key_path, '.');
  for (const std::string& p : parts) {
    if (p.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("bad key path '", key_path, "'"));
    }
  }
  // yaml-cpp nodes are handles: walking with operator[] on copies edits the tree.
  YAML::Node node = root;
  std::string walked;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    walked = walked.empty() ? parts[i] : absl::StrCat(walked, ".", parts[i]);
    YAML::Node next = node[parts[i]];
    if (!next.IsDefined() || next.IsNull()) {
      next = YAML::Node(YAML::NodeType::Map);
      node[parts[i]] = next;
    } else if (!next.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat("cannot set '", key_path, "': '", walked,
                                                     "' is not a map"));
    }
    node.reset(next);
  }
  node[parts.back()] = value;
  return absl::OkStatus();
}

absl::StatusOr<std::pair<std::string, YAML::Node>> ParseAssignment(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--set ", text, ": expected key.path=value (for example --set train.epochs=2)"));
  }
  const std::string key = text.substr(0, eq);
  const std::string value = text.substr(eq + 1);
  try {
    YAML::Node node = value.empty() ? YAML::Node(YAML::NodeType::Null) : YAML::Load(value);
    return std::make_pair(key, node);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", text, ": the value is not valid YAML: ", e.msg));
  }
}

absl::StatusOr<std::vector<ExperimentSpec>> LoadExperiments(const std::string& path,
                                                            const std::vector<std::string>& sets) {
  LoadStack stack;
  return Load(path, sets, stack);
}

namespace {

absl::StatusOr<std::vector<ExperimentSpec>> Load(const std::string& path, const std::vector<std::string>& sets,
                                                 LoadStack& stack) {
  if (stack.size() > 32) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": dependencies nested deeper than 32 levels"));
  }
  std::error_code canonical_error;
  stack.push_back(std::filesystem::weakly_canonical(path, canonical_error).string());
  struct Pop {
    LoadStack& stack;
    ~Pop() { stack.pop_back(); }
  } pop{stack};
  ASSIGN_OR_RETURN(YAML::Node doc, LoadYamlFile(path));
  std::vector<Assignment> command_line;
  for (const std::string& s : sets) {
    ASSIGN_OR_RETURN(auto kv, ParseAssignment(s));
    command_line.push_back(Assignment{kv.first, kv.second, absl::StrCat("command line --set ", s)});
  }

  const bool is_sweep = doc["base"] || doc["sweep"] || doc["zip"];
  std::vector<ExperimentSpec> specs;
  if (!is_sweep && !doc["seeds"]) {
    ASSIGN_OR_RETURN(ExperimentSpec spec, MakeSpec(path, doc));
    for (const Assignment& a : command_line) RETURN_IF_ERROR(Apply(spec, a));
    RETURN_IF_ERROR(Finalise(spec, {}, path, stack));
    specs.push_back(std::move(spec));
    return specs;
  }
  if (!is_sweep) {
    // A plain experiment with `seeds:`: one member per seed, the file itself the base.
    if (doc["seed"]) {
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLocation(path, doc["seed"]), ": give either seed or seeds (a list: one run per seed), not both"));
    }
    ASSIGN_OR_RETURN(Axis seeds, SeedsAxis(path, doc["seeds"]));
    for (size_t i = 0; i < seeds.size(); ++i) {
      ASSIGN_OR_RETURN(YAML::Node member, LoadYamlFile(path));
      member.remove("seeds");
      ASSIGN_OR_RETURN(ExperimentSpec spec, MakeSpec(path, member));
      RETURN_IF_ERROR(Apply(spec, seeds[i].front()));
      for (const Assignment& a : command_line) RETURN_IF_ERROR(Apply(spec, a));
      RETURN_IF_ERROR(Finalise(spec, {AxisLabel("seed", seeds[i].front().value, {"seed"}, i)}, path, stack));
      specs.push_back(std::move(spec));
    }
    return specs;
  }

  // A sweep file: read its own keys strictly.
  ParamReader sweep(doc, path, "");
  const std::string base = sweep.RequiredString("base", "the experiment file the sweep varies");
  const std::string prefix = sweep.String("name", "", "prefix for the experiment names");
  const YAML::Node fixed = sweep.Node("set", "assignments applied to every experiment");
  const YAML::Node grid = sweep.Node("sweep", "key path -> list of values (grid product)");
  const YAML::Node zip = sweep.Node("zip", "key path -> equal-length lists that vary together");
  const YAML::Node seeds = sweep.Node("seeds", "one member per seed (the last axis)");
  RETURN_IF_ERROR(sweep.Finish());

  std::vector<Axis> axes;
  if (grid.IsDefined()) {
    if (!grid.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(NodeLocation(path, grid), ": sweep: expected a map of key paths to lists"));
    }
    for (const auto& kv : grid) {
      ASSIGN_OR_RETURN(Axis axis, GridAxis(path, kv.first, kv.second));
      axes.push_back(std::move(axis));
    }
  }
  if (zip.IsDefined()) {
    if (zip.IsSequence()) {
      for (const auto& group : zip) {
        ASSIGN_OR_RETURN(Axis axis, ZipAxis(path, group));
        axes.push_back(std::move(axis));
      }
    } else {
      ASSIGN_OR_RETURN(Axis axis, ZipAxis(path, zip));
      axes.push_back(std::move(axis));
    }
  }
  if (seeds.IsDefined()) {
    for (const Axis& axis : axes) {
      if (!axis.empty() && !axis.front().empty() && axis.front().front().key_path == "seed") {
        return absl::InvalidArgumentError(
            absl::StrCat(NodeLocation(path, seeds), ": seeds: the sweep varies `seed` already; give one of the two"));
      }
    }
    ASSIGN_OR_RETURN(Axis axis, SeedsAxis(path, seeds));
    axes.push_back(std::move(axis));
  }
  std::vector<Assignment> fixed_assignments;
  if (fixed.IsDefined()) {
    if (!fixed.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(NodeLocation(path, fixed), ": set: expected a map of key paths to values"));
    }
    for (const auto& kv : fixed) {
      fixed_assignments.push_back(Assignment{kv.first.Scalar(), kv.second,
                                             absl::StrCat(NodeLocation(path, kv.second), " (set ",
                                                          kv.first.Scalar(), ")")});
    }
  }

  const std::string base_path = ResolveBase(path, base);
  ASSIGN_OR_RETURN(YAML::Node base_doc, LoadYamlFile(base_path));
  if (base_doc["base"] || base_doc["sweep"] || base_doc["zip"] || base_doc["seeds"]) {
    return absl::InvalidArgumentError(absl::StrCat(sweep.Location("base"), ": ", base_path,
                                                   " is itself a sweep; a base must be one experiment"));
  }

  // Odometer over the axes: the last axis varies fastest.
  std::vector<std::string> varied;
  for (const Axis& axis : axes) {
    if (axis.empty()) continue;
    for (const Assignment& a : axis.front()) varied.push_back(a.key_path);
  }
  // Bounded before anything is expanded: each member is a parsed config (kilobytes) and a run.
  {
    double members = 1;
    std::vector<std::string> sizes;
    for (const Axis& axis : axes) {
      members *= std::max<size_t>(1, axis.size());
      sizes.push_back(
          absl::StrCat(axis.empty() || axis.front().empty() ? "?" : axis.front().front().key_path, ": ", axis.size()));
    }
    if (members > kMaxSweepMembers) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": the sweep has ", absl::StrFormat("%.4g", members), " members (", absl::StrJoin(sizes, " x "),
          "), more than the ", kMaxSweepMembers, " a sweep may have; split it into several sweeps"));
    }
  }
  std::vector<size_t> index(axes.size(), 0);
  do {
    // Parsed afresh for each experiment: YAML::Clone would drop the line and
    // column marks that errors are located with.
    ASSIGN_OR_RETURN(YAML::Node member, LoadYamlFile(base_path));
    ASSIGN_OR_RETURN(ExperimentSpec spec, MakeSpec(base_path, member));
    if (!prefix.empty()) RETURN_IF_ERROR(SetAtPath(spec.root, "name", YAML::Node(prefix)));
    for (const Assignment& a : fixed_assignments) RETURN_IF_ERROR(Apply(spec, a));
    std::vector<std::string> labels;
    for (size_t k = 0; k < axes.size(); ++k) {
      for (const Assignment& a : axes[k][index[k]]) {
        RETURN_IF_ERROR(Apply(spec, a));
        labels.push_back(AxisLabel(a.key_path, a.value, varied, index[k]));
      }
    }
    for (const Assignment& a : command_line) RETURN_IF_ERROR(Apply(spec, a));
    RETURN_IF_ERROR(Finalise(spec, labels, path, stack));
    specs.push_back(std::move(spec));
  } while (Advance(index, axes));
  return specs;
}

}  // namespace

namespace {

// Where the value at `key_path` came from: the --set or sweep axis that put it there, else its file:line:col.
std::string ValueLocation(const ExperimentSpec& spec, const std::string& key_path, const YAML::Node& node) {
  if (spec.origins != nullptr) {
    for (const auto& [path, origin] : *spec.origins) {
      if (key_path == path || absl::StartsWith(key_path, path + ".")) return origin;
    }
  }
  return NodeLocation(spec.source_file, node);
}

// The configs beside `config_file` whose run directory the checkpoint `path` is in: the
// folder of the checkpoint is <output_dir>/<name> (the latest run's link) or <name>-<id>.
std::vector<std::string> ProducersOf(const std::string& path, const std::string& config_file) {
  namespace fs = std::filesystem;
  std::string run = fs::path(path).parent_path().filename().string();
  if (run.size() > 17 && run[run.size() - 17] == '-' &&
      run.find_first_not_of("0123456789abcdef", run.size() - 16) == std::string::npos) {
    run.resize(run.size() - 17);
  }
  std::vector<std::string> found;
  if (run.empty()) return found;
  std::error_code ec;
  fs::path dir = fs::path(config_file).parent_path();
  if (dir.empty()) dir = ".";
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".yaml") continue;
    auto doc = LoadYamlFile(entry.path().string());
    if (!doc.ok() || (*doc)["base"] || (*doc)["sweep"] || (*doc)["zip"]) continue;
    const YAML::Node name = (*doc)["name"];
    if (name.IsScalar() && name.Scalar() == run) found.push_back(entry.path().lexically_normal().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

absl::Status ResolveCheckpoints(ExperimentSpec& spec, const std::string& output_dir) {
  namespace fs = std::filesystem;
  std::set<std::string> from_dependency;
  for (const Dependency& d : spec.dependencies) {
    RETURN_IF_ERROR(
        SetAtPath(spec.root, d.key_path,
                  YAML::Node(absl::StrCat(output_dir, "/", d.spec->name, "-", d.spec->config_id, "/", d.checkpoint))));
    from_dependency.insert(d.key_path);
  }
  std::vector<std::pair<std::string, YAML::Node>> keys;
  FindInitFrom(spec.root, "", keys);
  for (auto& [key_path, node] : keys) {
    // Not a path (a wrong type, or empty: none): the section's reader reports or ignores it.
    if (from_dependency.count(key_path) > 0 || !node.IsScalar() || node.Scalar().empty()) continue;
    const std::string path = node.Scalar();
    std::vector<std::string> tried;
    if (fs::path(path).is_absolute()) {
      tried.push_back(path);
    } else {
      for (const fs::path& candidate :
           {fs::path(output_dir) / path, fs::path(spec.source_file).parent_path() / path, fs::path(path)}) {
        const std::string c = candidate.lexically_normal().string();
        if (std::find(tried.begin(), tried.end(), c) == tried.end()) tried.push_back(c);
      }
    }
    std::error_code ec;
    auto it =
        std::find_if(tried.begin(), tried.end(), [&](const std::string& c) { return fs::is_regular_file(c, ec); });
    if (it != tried.end()) {
      if (*it != path) RETURN_IF_ERROR(SetAtPath(spec.root, key_path, YAML::Node(*it)));
      continue;
    }
    std::string hint;
    const std::vector<std::string> producers = ProducersOf(path, spec.source_file);
    if (!producers.empty()) {
      const std::string relative = fs::path(producers.front()).filename().string();
      hint = absl::StrCat("; ", absl::StrJoin(producers, " and "), " would produce it: write `", key_path,
                          ": {config: ", relative, "}` to have the driver run it first");
    } else {
      hint = absl::StrCat("; give the experiment that produces it as `", key_path,
                          ": {config: <file>.yaml}` and the driver runs it first");
    }
    return absl::NotFoundError(absl::StrCat(ValueLocation(spec, key_path, node), ": ", key_path, ": no checkpoint ",
                                            path, " (looked for ", absl::StrJoin(tried, ", "), ")", hint));
  }
  return absl::OkStatus();
}

std::string EmitYaml(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

std::string ConfigId(const YAML::Node& root) {
  YAML::Node copy = YAML::Clone(root);
  copy.remove("output");  // where results go does not change them
  return absl::StrFormat("%016x", Fnv1a64(EmitYaml(copy)));
}

}  // namespace quant
