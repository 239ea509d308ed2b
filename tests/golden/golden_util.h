// Helpers for golden-vector tests (see tests/golden/README.md).
//
// A golden test names a file by its place in the golden tree, e.g.
// "torch/observers.json". FilesFor() returns the repository's copy and, when
// the environment variable QUANTLAB_GOLDEN_DIR names a directory, every file
// with the same base name below it, so that further vectors in the same schema
// are checked without code changes. Each file's results are counted per
// operation and printed as `golden: <path> <op>: N of M identical`; the test
// fails unless N == M.
#ifndef TESTS_GOLDEN_GOLDEN_UTIL_H_
#define TESTS_GOLDEN_GOLDEN_UTIL_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace quant::golden {

using Json = nlohmann::json;

// Paths to check for `relative_name` (repository copy first).
std::vector<std::string> FilesFor(const std::string& relative_name);

// Parses a JSON file; ADD_FAILURE()s and returns null on error.
Json LoadJson(const std::string& path);

// "0x3f800000" -> 0x3f800000.
uint64_t ParseHex(const std::string& hex);
float BitsToFloat(uint32_t bits);
uint32_t FloatToBits(float value);
double BitsToDouble(uint64_t bits);

// The torch files' float32 encoding: {"bits": [u32...], "dec": [...]}.
std::vector<float> FloatArray(const Json& encoded);
// A scalar in the same encoding (one element), or a plain JSON number.
float FloatScalar(const Json& encoded);

// Index of the column named `name` in a {"columns": [...], "rows": ...}
// table; ADD_FAILURE()s and returns 0 when there is none.
int ColumnIndex(const Json& table, const std::string& name);

// Counts identical results per operation for one file.
class Tally {
 public:
  explicit Tally(std::string path) : path_(std::move(path)) {}
  // Records one comparison; the first few mismatches are printed with `detail`.
  void Add(const std::string& op, bool identical, const std::string& detail = "");
  // Prints one `golden:` line per operation and EXPECTs every one complete.
  // Also fails if no comparison at all was made for an op listed in `expected_ops`.
  void Report(const std::vector<std::string>& expected_ops = {}) const;
  int total() const;

 private:
  std::string path_;
  std::map<std::string, std::pair<int, int>> counts_;  // op -> (identical, total)
  std::map<std::string, int> printed_;
};

}  // namespace quant::golden

#endif  // TESTS_GOLDEN_GOLDEN_UTIL_H_
