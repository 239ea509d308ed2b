// ONNX's own backend conformance data (Debian libonnx-testdata, ONNX 1.12),
// run by quantlab's ONNX runner: every node test and every pytorch-converted
// test whose ops, attributes, element types and opset the runner implements
// must reproduce ONNX's expected outputs (integers bit for bit; floats within
// kRelTol relative plus kAbsTol absolute). The rest are counted and named with
// the reason, never skipped silently.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quant/onnx/onnx_runner.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {
namespace {

namespace fs = std::filesystem;

constexpr char kDataDir[] = "/usr/share/libonnx-testdata/data";
constexpr double kRelTol = 1e-5;
constexpr double kAbsTol = 1e-6;

// "" if `got` matches `want`, else the first difference.
std::string Compare(const OnnxTensor& got, const OnnxTensor& want) {
  if (got.dtype != want.dtype) {
    return absl::StrCat("type ", DTypeName(static_cast<int>(got.dtype)), ", expected ",
                        DTypeName(static_cast<int>(want.dtype)));
  }
  if (got.shape != want.shape) return absl::StrCat("shape ", got.ShapeString(), ", expected ", want.ShapeString());
  for (int64_t k = 0; k < want.numel(); ++k) {
    if (want.is_float()) {
      const double g = got.f[k], w = want.f[k];
      if (std::isnan(w) ? !std::isnan(g) : !(std::fabs(g - w) <= kRelTol * std::fabs(w) + kAbsTol)) {
        return absl::StrCat("element ", k, ": ", g, ", expected ", w);
      }
    } else if (got.i[k] != want.i[k]) {
      return absl::StrCat("element ", k, ": ", got.i[k], ", expected ", want.i[k], " (integers must match exactly)");
    }
  }
  return "";
}

// "" if every data set of the test reproduces; else why not.
std::string RunCase(const OnnxRunner& runner, const fs::path& dir) {
  std::vector<fs::path> sets;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
  }
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) return "no test_data_set_* directory";
  for (const fs::path& set : sets) {
    std::vector<OnnxTensor> inputs, expected;
    for (int k = 0; fs::exists(set / absl::StrCat("input_", k, ".pb")); ++k) {
      absl::StatusOr<OnnxTensor> t = ReadTensorFile((set / absl::StrCat("input_", k, ".pb")).string());
      if (!t.ok()) return std::string(t.status().message());
      inputs.push_back(std::move(t).value());
    }
    for (int k = 0; fs::exists(set / absl::StrCat("output_", k, ".pb")); ++k) {
      absl::StatusOr<OnnxTensor> t = ReadTensorFile((set / absl::StrCat("output_", k, ".pb")).string());
      if (!t.ok()) return std::string(t.status().message());
      expected.push_back(std::move(t).value());
    }
    absl::StatusOr<std::vector<OnnxTensor>> got = runner.Run(inputs);
    if (!got.ok()) return std::string(got.status().message());
    if (got->size() != expected.size()) return absl::StrCat(got->size(), " outputs, expected ", expected.size());
    for (size_t k = 0; k < expected.size(); ++k) {
      const std::string diff = Compare((*got)[k], expected[k]);
      if (!diff.empty()) return absl::StrCat(set.filename().string(), " output ", k, ": ", diff);
    }
  }
  return "";
}

struct Tally {
  std::vector<std::string> passed;
  std::map<std::string, std::string> failed;       // test -> why
  std::map<std::string, std::string> unsupported;  // test -> why
};

Tally RunSuite(const std::vector<std::string>& suites) {
  Tally tally;
  for (const std::string& suite : suites) {
    const fs::path root = fs::path(kDataDir) / suite;
    std::vector<fs::path> cases;
    for (const fs::directory_entry& e : fs::directory_iterator(root)) {
      if (fs::exists(e.path() / "model.onnx")) cases.push_back(e.path());
    }
    std::sort(cases.begin(), cases.end());
    for (const fs::path& c : cases) {
      const std::string name = c.filename().string();
      absl::StatusOr<onnx::ModelProto> model = ReadModelFile((c / "model.onnx").string());
      if (!model.ok()) {
        tally.unsupported[name] = std::string(model.status().message());
        continue;
      }
      OnnxRunner runner(std::move(model).value(), (c / "model.onnx").string());
      if (!runner.Unsupported().empty()) {
        tally.unsupported[name] = runner.Unsupported();
        continue;
      }
      const std::string why = RunCase(runner, c);
      if (why.empty()) {
        tally.passed.push_back(name);
      } else {
        tally.failed[name] = why;
      }
    }
  }
  return tally;
}

TEST(OnnxConformanceTest, SupportedNodeAndPytorchConvertedTestsPass) {
  ASSERT_TRUE(fs::exists(kDataDir)) << kDataDir << " is missing: install libonnx-testdata (scripts/setup.sh)";
  const Tally t = RunSuite({"node", "pytorch-converted"});
  const size_t supported = t.passed.size() + t.failed.size();
  std::printf("onnx conformance: %zu of %zu supported tests pass (%zu unsupported, %zu in all)\n", t.passed.size(),
              supported, t.unsupported.size(), supported + t.unsupported.size());
  for (const auto& [name, why] : t.failed) std::printf("  FAILED %s: %s\n", name.c_str(), why.c_str());
  // The unsupported ones, grouped by the first word of the reason's op.
  std::map<std::string, std::vector<std::string>> by_reason;
  for (const auto& [name, why] : t.unsupported) {
    std::string key = why;
    const size_t colon = why.find("): ");
    if (colon != std::string::npos) key = why.substr(colon + 3);
    by_reason[key].push_back(name);
  }
  std::printf("unsupported, by reason:\n");
  for (const auto& [why, names] : by_reason) {
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "" : " ") + n;
    std::printf("  %s (%zu): %s\n", why.c_str(), names.size(), list.c_str());
  }
  for (const auto& [name, why] : t.failed) ADD_FAILURE() << name << ": " << why;
  EXPECT_GT(t.passed.size(), 100u);
}

// The quantization tests the issue names must be supported and bit-exact.
TEST(OnnxConformanceTest, QuantizationOpsAreBitExact) {
  const Tally t = RunSuite({"node"});
  const std::vector<std::string> prefixes = {
      "test_quantizelinear", "test_dequantizelinear",  "test_dynamicquantizelinear",
      "test_qlinearconv",    "test_qlinearmatmul_2D",  "test_qlinearmatmul_3D",
      "test_convinteger",    "test_basic_convinteger", "test_matmulinteger"};
  int seen = 0;
  for (const std::string& name : t.passed) {
    for (const std::string& p : prefixes) seen += name.rfind(p, 0) == 0;
  }
  for (const auto& [name, why] : t.failed) {
    for (const std::string& p : prefixes) {
      if (name.rfind(p, 0) == 0) ADD_FAILURE() << name << " fails: " << why;
    }
  }
  for (const auto& [name, why] : t.unsupported) {
    for (const std::string& p : prefixes) {
      if (name.rfind(p, 0) == 0) ADD_FAILURE() << name << " is unsupported: " << why;
    }
  }
  // 17 directories in ONNX 1.12's node data match these names.
  EXPECT_EQ(seen, 17);
}

}  // namespace
}  // namespace onnx_io
}  // namespace quant
