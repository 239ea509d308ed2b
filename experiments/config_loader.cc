#include "experiments/config_loader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
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
  if (fs::exists(beside)) return beside.lexically_normal().string();
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

void Finalise(ExperimentSpec& spec, const std::vector<std::string>& labels) {
  const YAML::Node name = spec.root["name"];
  std::string base = name && name.IsScalar() ? name.Scalar() : "experiment";
  if (!labels.empty()) base = absl::StrCat(base, "__", absl::StrJoin(labels, "__"));
  spec.name = base;
  spec.config_id = ConfigId(spec.root);
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
    return absl::NotFoundError(absl::StrCat(path, ": cannot open the config file (",
                                            std::filesystem::exists(path) ? "not readable"
                                                                          : "no such file",
                                            ")"));
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
  ASSIGN_OR_RETURN(YAML::Node doc, LoadYamlFile(path));
  std::vector<Assignment> command_line;
  for (const std::string& s : sets) {
    ASSIGN_OR_RETURN(auto kv, ParseAssignment(s));
    command_line.push_back(Assignment{kv.first, kv.second, absl::StrCat("command line --set ", s)});
  }

  const bool is_sweep = doc["base"] || doc["sweep"] || doc["zip"];
  std::vector<ExperimentSpec> specs;
  if (!is_sweep) {
    ASSIGN_OR_RETURN(ExperimentSpec spec, MakeSpec(path, doc));
    for (const Assignment& a : command_line) RETURN_IF_ERROR(Apply(spec, a));
    Finalise(spec, {});
    specs.push_back(std::move(spec));
    return specs;
  }

  // A sweep file: read its own keys strictly.
  ParamReader sweep(doc, path, "");
  const std::string base = sweep.RequiredString("base", "the experiment file the sweep varies");
  const std::string prefix = sweep.String("name", "", "prefix for the experiment names");
  const YAML::Node fixed = sweep.Node("set", "assignments applied to every experiment");
  const YAML::Node grid = sweep.Node("sweep", "key path -> list of values (grid product)");
  const YAML::Node zip = sweep.Node("zip", "key path -> equal-length lists that vary together");
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
  if (base_doc["base"] || base_doc["sweep"]) {
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
    Finalise(spec, labels);
    specs.push_back(std::move(spec));
  } while (Advance(index, axes));
  return specs;
}

std::string EmitYaml(const YAML::Node& node) {
  YAML::Emitter out;
  out << node;
  return std::string(out.c_str()) + "\n";
}

std::string ConfigId(const YAML::Node& root) {
  YAML::Node copy = YAML::Clone(root);
  copy.remove("output");  // where results go does not change them
  const std::string text = EmitYaml(copy);
  uint64_t h = 1469598103934665603ull;  // FNV-1a 64: stable across builds and machines
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

}  // namespace quant
