#include "tests/golden/golden_util.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace quant::golden {

std::vector<std::string> FilesFor(const std::string& relative_name) {
  std::vector<std::string> files;
  const std::string repo_copy = "tests/golden/" + relative_name;
  if (std::filesystem::exists(repo_copy)) {
    files.push_back(repo_copy);
  } else {
    ADD_FAILURE() << "golden file missing from the test data: " << repo_copy;
  }
  const char* dir = std::getenv("QUANTLAB_GOLDEN_DIR");
  if (dir != nullptr && *dir != '\0') {
    const std::string base = std::filesystem::path(relative_name).filename().string();
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      ADD_FAILURE() << "QUANTLAB_GOLDEN_DIR is not a directory: " << dir;
      return files;
    }
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir, ec)) {
      if (entry.is_regular_file() && entry.path().filename() == base) {
        files.push_back(entry.path().string());
      }
    }
  }
  return files;
}

Json LoadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    ADD_FAILURE() << "cannot open " << path;
    return Json();
  }
  Json j = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "not valid JSON: " << path;
    return Json();
  }
  return j;
}

uint64_t ParseHex(const std::string& hex) { return std::strtoull(hex.c_str(), nullptr, 16); }

float BitsToFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t FloatToBits(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

double BitsToDouble(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

std::vector<float> FloatArray(const Json& encoded) {
  std::vector<float> out;
  const Json& bits = encoded.at("bits");
  if (bits.is_array()) {
    out.reserve(bits.size());
    for (const Json& b : bits) out.push_back(BitsToFloat(b.get<uint32_t>()));
  } else {
    out.push_back(BitsToFloat(bits.get<uint32_t>()));
  }
  return out;
}

float FloatScalar(const Json& encoded) {
  if (encoded.is_number()) return encoded.get<float>();
  std::vector<float> v = FloatArray(encoded);
  EXPECT_EQ(v.size(), 1u);
  return v.empty() ? 0.0f : v[0];
}

int ColumnIndex(const Json& table, const std::string& name) {
  const Json& cols = table.at("columns");
  for (size_t i = 0; i < cols.size(); ++i) {
    if (cols[i] == name) return static_cast<int>(i);
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

void Tally::Add(const std::string& op, bool identical, const std::string& detail) {
  auto& c = counts_[op];
  c.second += 1;
  if (identical) {
    c.first += 1;
  } else if (printed_[op]++ < 5) {
    std::printf("golden mismatch: %s %s: %s\n", path_.c_str(), op.c_str(), detail.c_str());
  }
}

void Tally::Report(const std::vector<std::string>& expected_ops) const {
  for (const std::string& op : expected_ops) {
    EXPECT_TRUE(counts_.count(op)) << path_ << ": no comparisons made for " << op;
  }
  for (const auto& [op, c] : counts_) {
    std::printf("golden: %s %s: %d of %d identical\n", path_.c_str(), op.c_str(), c.first,
                c.second);
    EXPECT_EQ(c.first, c.second) << path_ << " " << op;
    EXPECT_GT(c.second, 0) << path_ << " " << op;
  }
  std::fflush(stdout);
}

int Tally::total() const {
  int n = 0;
  for (const auto& [op, c] : counts_) n += c.second;
  return n;
}

}  // namespace quant::golden
