// ParamReader: how every plugin (and the driver) takes its settings from a YAML
// map. Each getter declares a key with its type, default and a one-line help;
// the reader remembers which keys were read, so that after all plugins sharing
// a map have read it, Finish() reports any key nobody read, with the file, line,
// column, key path, the accepted keys and the nearest one. The same declarations
// run against an empty "describing" reader produce `run --list`.
//
// Getters never throw and never abort: a bad value records the first error,
// returns the default, and the error comes out of Finish() (or status()).
#ifndef QUANT_CORE_PARAMS_H_
#define QUANT_CORE_PARAMS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "yaml-cpp/yaml.h"

namespace quant {

// One declared parameter, for listings.
struct ParamInfo {
  std::string key;            // relative to the plugin's map, e.g. "bits" or "optimizer.lr"
  std::string type;           // "int", "float", "bool", "string", "one of a|b", "float list", "map"
  std::string default_value;  // as YAML would spell it; empty when required
  bool required = false;
  std::string help;
};

// Where values that replaced parts of a config came from (a `--set` on the
// command line, a sweep axis): errors about a value at or below such a key
// path are located there, not at the file the rest of the config came from.
using OverrideOrigins = std::map<std::string, std::string>;  // key path -> "where"

class ParamReader {
 public:
  // Reads `node`: a YAML map, or an undefined/null node meaning "no settings".
  // `file` and `key_path` (e.g. "quant.weights"; "" at the document root) are
  // used only to locate errors.
  ParamReader(YAML::Node node, std::string file, std::string key_path,
              std::shared_ptr<const OverrideOrigins> origins = nullptr);
  // A reader over nothing that records every declaration and returns defaults:
  // running a plugin's factory against it lists the plugin's parameters.
  static ParamReader ForDescription();

  ParamReader(ParamReader&&) = default;
  // No assignment: yaml-cpp's Node::operator= writes through to the node a
  // handle refers to, so assigning readers would edit the config they read.
  ParamReader& operator=(ParamReader&&) = delete;

  bool describing() const { return describing_; }
  bool Has(std::string_view key) const;

  int64_t Int(std::string_view key, int64_t default_value, std::string_view help);
  int64_t RequiredInt(std::string_view key, std::string_view help);
  // An integer in [lo, hi]; outside it is an error naming the key and the range.
  int64_t IntInRange(std::string_view key, int64_t default_value, int64_t lo, int64_t hi,
                     std::string_view help);
  double Double(std::string_view key, double default_value, std::string_view help);
  double RequiredDouble(std::string_view key, std::string_view help);
  // A number in [lo, hi] (inclusive bounds).
  double DoubleInRange(std::string_view key, double default_value, double lo, double hi,
                       std::string_view help);
  bool Bool(std::string_view key, bool default_value, std::string_view help);
  std::string String(std::string_view key, std::string_view default_value, std::string_view help);
  std::string RequiredString(std::string_view key, std::string_view help);
  // One of `choices`; anything else is an error listing them (with a near miss).
  std::string Choice(std::string_view key, std::string_view default_value,
                     const std::vector<std::string>& choices, std::string_view help);
  std::vector<int64_t> IntList(std::string_view key, std::vector<int64_t> default_value,
                               std::string_view help);
  std::vector<double> DoubleList(std::string_view key, std::vector<double> default_value,
                                 std::string_view help);
  std::vector<std::string> StringList(std::string_view key, std::vector<std::string> default_value,
                                      std::string_view help);

  // The nested map under `key` (empty if absent). The child is owned by this
  // reader and checked by this reader's Finish(); repeated calls return it again.
  ParamReader& Map(std::string_view key, std::string_view help);
  // The raw node under `key` for structured values (lists of maps), counted as read.
  YAML::Node Node(std::string_view key, std::string_view help);
  // A reader for an element of a list obtained from Node(); the caller Finish()es it.
  ParamReader ListElement(const YAML::Node& element, std::string_view key, size_t index) const;

  // Records an error about the value of `key` (located at it, or at this map
  // when the key is absent): "<file>:<line>:<col>: <path.key>: <message>".
  void Fail(std::string_view key, std::string_view message);
  // Records an error about this map as a whole.
  void FailHere(std::string_view message);

  // The first error recorded so far here or in a child.
  absl::Status status() const;
  // status(); else the first key (in file order) that no getter read, here or
  // in a child: "<loc>: <path>: unknown key 'bitz' (did you mean 'bits'?);
  // accepted here: a, b, c".
  absl::Status Finish() const;

  // Every declaration so far, children's with their "key." prefix.
  std::vector<ParamInfo> Declared() const;
  // "file:line:col: path.key" for `key` (or for this map if the key is absent).
  std::string Location(std::string_view key) const;
  std::string KeyPath(std::string_view key) const;
  const std::string& file() const { return file_; }
  const std::string& key_path() const { return key_path_; }
  const YAML::Node& node() const { return node_; }
  // Applies to this reader and every child made afterwards.
  void SetOverrideOrigins(std::shared_ptr<const OverrideOrigins> origins) {
    origins_ = std::move(origins);
  }

 private:
  ParamReader() = default;
  // Records the declaration; returns the value node, or an invalid node when absent.
  YAML::Node Declare(std::string_view key, std::string type, std::string default_value,
                     bool required, std::string_view help);
  void Record(absl::Status status) const;
  // "file:line:col" of `node`, which sits at `key_path`, or the override's origin.
  std::string Where(const YAML::Node& node, const std::string& key_path) const;
  template <typename T>
  T Scalar(std::string_view key, const char* type_name, const T& default_value,
           std::string default_text, bool required, std::string_view help);
  template <typename T>
  std::vector<T> List(std::string_view key, const char* type_name, std::vector<T> default_value,
                      std::string_view help);

  YAML::Node node_;
  std::string file_;
  std::string key_path_;
  bool describing_ = false;
  std::shared_ptr<const OverrideOrigins> origins_;
  std::vector<ParamInfo> declared_;
  std::map<std::string, std::unique_ptr<ParamReader>, std::less<>> children_;
  // Mutable so that const checks (Finish) can report; first error wins.
  mutable absl::Status status_;
};

// "file:line:col" of a node (1-based), or just "file" when the node has no mark.
std::string NodeLocation(const std::string& file, const YAML::Node& node);

}  // namespace quant

#endif  // QUANT_CORE_PARAMS_H_
