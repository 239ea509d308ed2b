// The op plugins are registered under their YAML names. This binary uses the
// ops only through the registry (no symbol of their .cc files), so it fails
// when a library loses `alwayslink = 1` and the linker drops the registration.
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/nn/layer.h"
#include "yaml-cpp/yaml.h"

namespace quant::nn {
namespace {

struct Expected {
  const char* name;
  const char* prefix;
  bool fixed_qparams;
};

TEST(OpRegistryTest, NewOpsAreRegisteredAndCreatedWithoutAName) {
  for (const Expected& e : {Expected{"hardswish", "hardswish", false},
                            Expected{"sigmoid", "sigmoid", true}, Expected{"tanh", "tanh", true},
                            Expected{"global_avg_pool", "gap", false}}) {
    ASSERT_TRUE(Registry<Layer>::Get().Contains(e.name)) << e.name;
    ParamReader p(YAML::Load("{}"), "test.yaml", "graph.nodes");
    absl::StatusOr<std::unique_ptr<Layer>> op = Registry<Layer>::Get().Create(e.name, p);
    ASSERT_TRUE(op.ok()) << op.status();
    EXPECT_EQ((*op)->type(), e.name);
    EXPECT_EQ((*op)->name_prefix(), e.prefix);
    EXPECT_EQ((*op)->name(), "");  // the graph names the node
    float scale;
    int32_t zero_point;
    bool is_signed;
    EXPECT_EQ((*op)->fixed_output_qparams(&scale, &zero_point, &is_signed), e.fixed_qparams)
        << e.name;
    EXPECT_TRUE(p.Finish().ok()) << p.Finish();
  }
}

TEST(OpRegistryTest, UnknownKeysAreErrors) {
  ParamReader p(YAML::Load("{alpha: 2}"), "test.yaml", "graph.nodes");
  ASSERT_TRUE(Registry<Layer>::Get().Create("hardswish", p).ok());
  absl::Status s = p.Finish();
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("alpha"), std::string::npos) << s;
}

}  // namespace
}  // namespace quant::nn
