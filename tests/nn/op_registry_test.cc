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


TEST(OpRegistryTest, MissingWidthNamesTheKey) {
  struct Case {
    const char* op;
    const char* yaml;
    const char* message;
  };
  for (const Case& c :
       {Case{"conv2d", "{kernel: 3}", "graph.nodes.out_channels: a conv2d layer needs out_channels"},
        Case{"linear", "{bias: false}", "graph.nodes.out_features: a linear layer needs out_features"},
        Case{"linear", "{out_features: 0}", "expected an integer in [1, 16777216], got 0"}}) {
    ParamReader p(YAML::Load(c.yaml), "test.yaml", "graph.nodes");
    absl::StatusOr<std::unique_ptr<Layer>> op = Registry<Layer>::Get().Create(c.op, p);
    ASSERT_FALSE(op.ok()) << c.op << " " << c.yaml;
    EXPECT_NE(op.status().message().find(c.message), std::string::npos) << op.status();
  }
}

}  // namespace
}  // namespace quant::nn
