// Shared helpers of the format tests: build a registered format from YAML.
#ifndef TESTS_FORMATS_FORMAT_TEST_UTIL_H_
#define TESTS_FORMATS_FORMAT_TEST_UTIL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/formats/number_format.h"

namespace quant::testing_util {

// Creates format `name` from a YAML map of its parameters (e.g. "{n: 8, es: 0}").
inline absl::StatusOr<std::unique_ptr<NumberFormat>> TryMakeFormat(const std::string& name,
                                                                   const std::string& yaml = "{}") {
  ParamReader p(YAML::Load(yaml), "test.yaml", "quant.weights");
  auto f = Registry<NumberFormat>::Get().Create(name, p);
  if (!f.ok()) return f.status();
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return f;
}

inline std::unique_ptr<NumberFormat> MakeFormat(const std::string& name,
                                                const std::string& yaml = "{}") {
  auto f = TryMakeFormat(name, yaml);
  EXPECT_TRUE(f.ok()) << name << " " << yaml << ": " << f.status();
  return f.ok() ? std::move(*f) : nullptr;
}

inline std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace quant::testing_util

#endif  // TESTS_FORMATS_FORMAT_TEST_UTIL_H_
