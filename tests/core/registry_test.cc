#include "quant/core/registry.h"

#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

// A plugin interface private to this test, so the test owns its registry.
class Greeter {
 public:
  static constexpr char kRegistryKind[] = "greeter";
  virtual ~Greeter() = default;
  virtual std::string Greet() const = 0;
};

class Hello : public Greeter {
 public:
  explicit Hello(int repeat) : repeat_(repeat) {}
  static absl::StatusOr<std::unique_ptr<Greeter>> Create(ParamReader& p) {
    const int repeat = p.IntInRange("repeat", 1, 1, 3, "how many times");
    return std::unique_ptr<Greeter>(new Hello(repeat));
  }
  std::string Greet() const override {
    std::string s;
    for (int i = 0; i < repeat_; ++i) s += "hello";
    return s;
  }

 private:
  int repeat_;
};

QUANTLAB_REGISTER(Greeter, "hello", Hello::Create, "says hello");

YAML::Node Yaml(const std::string& text) { return YAML::Load(text); }

TEST(RegistryTest, RegisteredByMacroAndCreated) {
  ParamReader p(Yaml("{greeter: hello, repeat: 2}"), "t.yaml", "g");
  auto g = Registry<Greeter>::Get().CreateFrom(p, "greeter", "", "which greeter");
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_EQ((*g)->Greet(), "hellohello");
  EXPECT_TRUE(p.Finish().ok());
}

TEST(RegistryTest, UnknownNameListsKnownOnesAndNearest) {
  ParamReader p(Yaml("{greeter: helo}"), "t.yaml", "g");
  auto g = Registry<Greeter>::Get().CreateFrom(p, "greeter", "", "which greeter");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(g.status().message(), HasSubstr("t.yaml:1:11: g.greeter: unknown greeter 'helo'"));
  EXPECT_THAT(g.status().message(), HasSubstr("did you mean 'hello'?"));
  EXPECT_THAT(g.status().message(), HasSubstr("registered: hello"));
}

TEST(RegistryTest, DirectCreateUnknownIsNotFound) {
  ParamReader p(YAML::Node(), "t.yaml", "");
  auto g = Registry<Greeter>::Get().Create("nobody", p);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(g.status().message(), HasSubstr("unknown greeter 'nobody'"));
}

TEST(RegistryTest, DuplicateRejected) {
  absl::Status s = Registry<Greeter>::Get().Register("hello", "again", Hello::Create);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("'hello' is already registered"));
  EXPECT_EQ(Registry<Greeter>::Get().Register("", "", Hello::Create).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RegistryTest, DuplicateMacroRegistrationStopsTheProcess) {
  EXPECT_EXIT(RegisterOrDie<Greeter>("hello", "again", Hello::Create),
              ::testing::ExitedWithCode(2), "duplicate greeter registration: 'hello'");
}

TEST(RegistryTest, NamesAreSortedAndDescribeListsParameters) {
  ASSERT_TRUE(Registry<Greeter>::Get()
                  .Register("abc", "first", [](ParamReader& p) { return Hello::Create(p); })
                  .ok());
  EXPECT_EQ(Registry<Greeter>::Get().Names(), (std::vector<std::string>{"abc", "hello"}));
  auto all = RegistryIndex::Get().DescribeAll();
  ASSERT_TRUE(all.count("greeter"));
  const auto& plugins = all["greeter"];
  ASSERT_EQ(plugins.size(), 2u);
  EXPECT_EQ(plugins[1].name, "hello");
  EXPECT_EQ(plugins[1].help, "says hello");
  ASSERT_EQ(plugins[1].params.size(), 1u);
  EXPECT_EQ(plugins[1].params[0].key, "repeat");
  EXPECT_EQ(plugins[1].params[0].default_value, "1");
  EXPECT_EQ(plugins[1].params[0].type, "integer in [1, 3]");
}

TEST(RegistryTest, FactoryParameterErrorsSurface) {
  ParamReader p(Yaml("{greeter: hello, repeat: 7}"), "t.yaml", "g");
  auto g = Registry<Greeter>::Get().CreateFrom(p, "greeter", "", "which greeter");
  ASSERT_FALSE(g.ok());
  EXPECT_THAT(g.status().message(),
              HasSubstr("t.yaml:1:26: g.repeat: expected an integer in [1, 3], got 7"));
}

}  // namespace
}  // namespace quant
//x
