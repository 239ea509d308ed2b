#include "quant/core/params.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/suggest.h"

namespace quant {
namespace {

std::string ShortValue(const YAML::Node& node) {
  if (node.IsScalar()) return "'" + node.Scalar() + "'";
  if (node.IsSequence()) return "a list";
  if (node.IsMap()) return "a map";
  return "nothing (null)";
}

std::string DoubleText(double v) { return absl::StrCat(v); }

// "an integer", "a number".
std::string WithArticle(const std::string& noun) {
  return (noun[0] == 'i' ? "an " : "a ") + noun;
}

template <typename T>
std::string ListText(const std::vector<T>& values) {
  return "[" + absl::StrJoin(values, ", ") + "]";
}

// yaml-cpp reads integers with std::ios base detection (so "010" would be 8);
// configs are decimal, so integers are parsed here.
bool ParseInt(const YAML::Node& node, int64_t* out) {
  if (!node.IsScalar()) return false;
  const std::string& s = node.Scalar();
  if (s.empty()) return false;
  size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
  if (i == s.size()) return false;
  for (size_t j = i; j < s.size(); ++j) {
    if (s[j] < '0' || s[j] > '9') return false;
  }
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0) return false;
  *out = v;
  return true;
}

bool ParseDouble(const YAML::Node& node, double* out) {
  if (!node.IsScalar()) return false;
  try {
    *out = node.as<double>();
  } catch (const YAML::Exception&) {
    return false;
  }
  return true;
}

bool ParseBool(const YAML::Node& node, bool* out) {
  if (!node.IsScalar()) return false;
  const std::string& s = node.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "False" || s == "FALSE") {
    *out = false;
    return true;
  }
  return false;  // yes/no/on/off are not accepted: they are too easy to misread
}

bool ParseString(const YAML::Node& node, std::string* out) {
  if (!node.IsScalar()) return false;
  *out = node.Scalar();
  return true;
}

bool ParseValue(const YAML::Node& n, int64_t* out) { return ParseInt(n, out); }
bool ParseValue(const YAML::Node& n, double* out) { return ParseDouble(n, out); }
bool ParseValue(const YAML::Node& n, bool* out) { return ParseBool(n, out); }
bool ParseValue(const YAML::Node& n, std::string* out) { return ParseString(n, out); }

}  // namespace

std::string NodeLocation(const std::string& file, const YAML::Node& node) {
  if (!node.IsDefined()) return file;
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return file;
  return absl::StrCat(file, ":", mark.line + 1, ":", mark.column + 1);
}

ParamReader::ParamReader(YAML::Node node, std::string file, std::string key_path,
                         std::shared_ptr<const OverrideOrigins> origins)
    : node_(std::move(node)),
      file_(std::move(file)),
      key_path_(std::move(key_path)),
      origins_(std::move(origins)) {
  if (node_.IsDefined() && !node_.IsNull() && !node_.IsMap()) {
    FailHere(absl::StrCat("expected a map of settings ({key: value, ...}), got ", ShortValue(node_)));
  }
}

ParamReader ParamReader::ForDescription() {
  ParamReader r;
  r.describing_ = true;
  return r;
}

bool ParamReader::Has(std::string_view key) const {
  if (describing_ || !node_.IsMap()) return false;
  return static_cast<bool>(node_[std::string(key)]);
}

std::string ParamReader::Where(const YAML::Node& node, const std::string& key_path) const {
  if (origins_ != nullptr) {
    // The longest overridden prefix of key_path (exact, or followed by '.' or '[').
    for (std::string prefix = key_path; !prefix.empty();) {
      auto it = origins_->find(prefix);
      if (it != origins_->end()) return it->second;
      const size_t cut = prefix.find_last_of(".[");
      if (cut == std::string::npos) break;
      prefix.resize(cut);
    }
  }
  return NodeLocation(file_, node);
}

std::string ParamReader::KeyPath(std::string_view key) const {
  if (key.empty()) return key_path_;
  if (key_path_.empty()) return std::string(key);
  return absl::StrCat(key_path_, ".", std::string(key));
}

std::string ParamReader::Location(std::string_view key) const {
  if (!describing_ && node_.IsMap()) {
    for (const auto& kv : node_) {
      if (kv.first.IsScalar() && kv.first.Scalar() == key) {
        return absl::StrCat(Where(kv.first, KeyPath(key)), ": ", KeyPath(key));
      }
    }
  }
  const std::string path = key_path_.empty() ? "(top level)" : key_path_;
  return absl::StrCat(Where(node_, key_path_), ": ", key.empty() ? path : KeyPath(key));
}

void ParamReader::Record(absl::Status status) const {
  if (status_.ok()) status_ = std::move(status);
}

void ParamReader::Fail(std::string_view key, std::string_view message) {
  // Locate value errors at the value itself when it exists.
  std::string where;
  if (Has(key)) {
    where = absl::StrCat(Where(node_[std::string(key)], KeyPath(key)), ": ", KeyPath(key));
  } else {
    where = Location(key);
  }
  Record(absl::InvalidArgumentError(absl::StrCat(where, ": ", std::string(message))));
}

void ParamReader::FailHere(std::string_view message) {
  Record(absl::InvalidArgumentError(absl::StrCat(Location(""), ": ", std::string(message))));
}

YAML::Node ParamReader::Declare(std::string_view key, std::string type, std::string default_value,
                                bool required, std::string_view help) {
  const bool seen = std::any_of(declared_.begin(), declared_.end(),
                                [&](const ParamInfo& p) { return p.key == key; });
  if (!seen) {
    declared_.push_back(ParamInfo{std::string(key), std::move(type), std::move(default_value),
                                  required, std::string(help)});
  }
  if (describing_ || !node_.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
  const YAML::Node& const_node = node_;
  const YAML::Node value = const_node[std::string(key)];
  // An absent key gives a "zombie" node that throws when asked its type.
  if (!value.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
  return value;
}

template <typename T>
T ParamReader::Scalar(std::string_view key, const char* type_name, const T& default_value,
                      std::string default_text, bool required, std::string_view help) {
  const YAML::Node value = Declare(key, type_name, required ? "" : default_text, required, help);
  if (describing_) return default_value;
  if (!value.IsDefined()) {
    if (required) Fail(key, absl::StrCat("required ", type_name, " is missing"));
    return default_value;
  }
  T out{};
  if (!ParseValue(value, &out)) {
    Fail(key, absl::StrCat("expected ", WithArticle(type_name), ", got ", ShortValue(value)));
    return default_value;
  }
  return out;
}

int64_t ParamReader::Int(std::string_view key, int64_t default_value, std::string_view help) {
  return Scalar<int64_t>(key, "integer", default_value, absl::StrCat(default_value), false, help);
}

int64_t ParamReader::RequiredInt(std::string_view key, std::string_view help) {
  return Scalar<int64_t>(key, "integer", 0, "", true, help);
}

int64_t ParamReader::IntInRange(std::string_view key, int64_t default_value, int64_t lo, int64_t hi,
                                std::string_view help) {
  const int64_t v = Int(key, default_value, help);
  declared_.back().type = absl::StrCat("integer in [", lo, ", ", hi, "]");
  if (!describing_ && (v < lo || v > hi)) {
    Fail(key, absl::StrCat("expected an integer in [", lo, ", ", hi, "], got ", v));
    return default_value;
  }
  return v;
}

double ParamReader::Double(std::string_view key, double default_value, std::string_view help) {
  return Scalar<double>(key, "number", default_value, DoubleText(default_value), false, help);
}

double ParamReader::RequiredDouble(std::string_view key, std::string_view help) {
  return Scalar<double>(key, "number", 0.0, "", true, help);
}

double ParamReader::DoubleInRange(std::string_view key, double default_value, double lo, double hi,
                                  std::string_view help) {
  const double v = Double(key, default_value, help);
  declared_.back().type = absl::StrCat("number in [", lo, ", ", hi, "]");
  if (!describing_ && !(v >= lo && v <= hi)) {
    Fail(key, absl::StrCat("expected a number in [", lo, ", ", hi, "], got ", v));
    return default_value;
  }
  return v;
}

bool ParamReader::Bool(std::string_view key, bool default_value, std::string_view help) {
  return Scalar<bool>(key, "boolean (true/false)", default_value,
                      default_value ? "true" : "false", false, help);
}

std::string ParamReader::String(std::string_view key, std::string_view default_value,
                                std::string_view help) {
  return Scalar<std::string>(key, "string", std::string(default_value),
                             std::string(default_value), false, help);
}

std::string ParamReader::RequiredString(std::string_view key, std::string_view help) {
  return Scalar<std::string>(key, "string", "", "", true, help);
}

std::string ParamReader::Choice(std::string_view key, std::string_view default_value,
                                const std::vector<std::string>& choices, std::string_view help) {
  const std::string v = String(key, default_value, help);
  declared_.back().type = "one of " + absl::StrJoin(choices, "|");
  if (describing_) return v;
  if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
    Fail(key, absl::StrCat("expected one of ", absl::StrJoin(choices, ", "), ", got '", v, "'",
                           DidYouMean(v, choices)));
    return std::string(default_value);
  }
  return v;
}

template <typename T>
std::vector<T> ParamReader::List(std::string_view key, const char* type_name,
                                 std::vector<T> default_value, std::string_view help) {
  const YAML::Node value =
      Declare(key, absl::StrCat(type_name, " list"), ListText(default_value), false, help);
  if (describing_ || !value.IsDefined()) return default_value;
  std::vector<T> out;
  if (value.IsScalar()) {  // a single value stands for a list of one
    T v{};
    if (ParseValue(value, &v)) return {v};
  } else if (value.IsSequence()) {
    for (size_t i = 0; i < value.size(); ++i) {
      T v{};
      if (!ParseValue(value[i], &v)) {
        Fail(key, absl::StrCat("element ", i, ": expected ", WithArticle(type_name), ", got ",
                               ShortValue(value[i])));
        return default_value;
      }
      out.push_back(v);
    }
    return out;
  }
  Fail(key, absl::StrCat("expected a list of ", type_name, "s, got ", ShortValue(value)));
  return default_value;
}

std::vector<int64_t> ParamReader::IntList(std::string_view key, std::vector<int64_t> default_value,
                                          std::string_view help) {
  return List<int64_t>(key, "integer", std::move(default_value), help);
}

std::vector<double> ParamReader::DoubleList(std::string_view key, std::vector<double> default_value,
                                            std::string_view help) {
  return List<double>(key, "number", std::move(default_value), help);
}

std::vector<std::string> ParamReader::StringList(std::string_view key,
                                                 std::vector<std::string> default_value,
                                                 std::string_view help) {
  return List<std::string>(key, "string", std::move(default_value), help);
}

ParamReader& ParamReader::Map(std::string_view key, std::string_view help) {
  auto it = children_.find(key);
  if (it != children_.end()) return *it->second;
  const YAML::Node value = Declare(key, "map", "{}", false, help);
  std::unique_ptr<ParamReader> child;
  if (describing_) {
    child.reset(new ParamReader(ForDescription()));
  } else {
    child.reset(new ParamReader(value, file_, KeyPath(key), origins_));
  }
  return *children_.emplace(std::string(key), std::move(child)).first->second;
}

YAML::Node ParamReader::Node(std::string_view key, std::string_view help) {
  return Declare(key, "structured value", "", false, help);
}

ParamReader ParamReader::ListElement(const YAML::Node& element, std::string_view key,
                                     size_t index) const {
  return ParamReader(element, file_, absl::StrCat(KeyPath(key), "[", index, "]"), origins_);
}

absl::Status ParamReader::status() const {
  if (!status_.ok()) return status_;
  for (const auto& [key, child] : children_) {
    absl::Status s = child->status();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status ParamReader::Finish() const {
  if (absl::Status s = status(); !s.ok()) return s;
  if (describing_ || !node_.IsMap()) return absl::OkStatus();
  std::vector<std::string> accepted;
  for (const ParamInfo& p : declared_) accepted.push_back(p.key);
  for (const auto& kv : node_) {
    const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "?";
    if (std::find(accepted.begin(), accepted.end(), key) != accepted.end()) continue;
    return absl::InvalidArgumentError(absl::StrCat(
        Where(kv.first, KeyPath(key)), ": ", KeyPath(key), ": unknown key '", key, "'",
        DidYouMean(key, accepted), "; accepted here: ",
        accepted.empty() ? "(none)" : absl::StrJoin(accepted, ", ")));
  }
  for (const auto& [key, child] : children_) {
    absl::Status s = child->Finish();
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

std::vector<ParamInfo> ParamReader::Declared() const {
  std::vector<ParamInfo> out;
  for (const ParamInfo& p : declared_) {
    out.push_back(p);
    auto it = children_.find(p.key);
    if (it == children_.end()) continue;
    for (ParamInfo c : it->second->Declared()) {
      c.key = p.key + "." + c.key;
      out.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace quant
