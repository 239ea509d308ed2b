#include "experiments/config_loader.h"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir ? dir : "/tmp";
}

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = TmpDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char kBase[] =
    "name: base\n"
    "seed: 0\n"
    "dataset: {name: synthetic, train_size: 64}\n"
    "output: {dir: runs}\n";

TEST(ConfigLoaderTest, PlainFileIsOneExperiment) {
  const std::string path = Write("base.yaml", kBase);
  auto specs = LoadExperiments(path, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 1u);
  EXPECT_EQ((*specs)[0].name, "base");
  EXPECT_EQ((*specs)[0].config_id.size(), 16u);
  EXPECT_EQ((*specs)[0].source_file, path);
}

TEST(ConfigLoaderTest, SetOverridesNestedValuesAndRecordsOrigin) {
  const std::string path = Write("base.yaml", kBase);
  auto specs = LoadExperiments(path, {"dataset.train_size=128", "train.optimizer.lr=0.1", "seed=3"});
  ASSERT_TRUE(specs.ok()) << specs.status();
  const ExperimentSpec& s = (*specs)[0];
  EXPECT_EQ(s.root["dataset"]["train_size"].as<int>(), 128);
  EXPECT_EQ(s.root["dataset"]["name"].Scalar(), "synthetic");  // siblings kept
  EXPECT_EQ(s.root["train"]["optimizer"]["lr"].as<double>(), 0.1);
  EXPECT_EQ(s.root["seed"].as<int>(), 3);
  EXPECT_EQ(s.overrides, (std::vector<std::string>{"dataset.train_size=128",
                                                   "train.optimizer.lr=0.1", "seed=3"}));
  EXPECT_EQ(s.origins->at("seed"), "command line --set seed=3");
  // An override changes the id; the same override gives the same id.
  auto plain = LoadExperiments(path, {});
  auto again = LoadExperiments(path, {"dataset.train_size=128", "train.optimizer.lr=0.1", "seed=3"});
  EXPECT_NE((*plain)[0].config_id, s.config_id);
  EXPECT_EQ((*again)[0].config_id, s.config_id);
}

TEST(ConfigLoaderTest, SetErrors) {
  const std::string path = Write("base.yaml", kBase);
  EXPECT_THAT(LoadExperiments(path, {"seed"}).status().message(),
              HasSubstr("--set seed: expected key.path=value"));
  EXPECT_THAT(LoadExperiments(path, {"seed.x=1"}).status().message(),
              HasSubstr("'seed' is not a map"));
  EXPECT_THAT(LoadExperiments(path, {"a..b=1"}).status().message(), HasSubstr("bad key path"));
}

TEST(ConfigLoaderTest, OutputDirDoesNotChangeTheId) {
  const std::string path = Write("base.yaml", kBase);
  auto a = LoadExperiments(path, {"output.dir=elsewhere"});
  auto b = LoadExperiments(path, {});
  EXPECT_EQ((*a)[0].config_id, (*b)[0].config_id);
}

TEST(ConfigLoaderTest, ASweepTooLargeToExpandIsRefusedBeforeExpanding) {
  Write("base.yaml", kBase);
  std::string values;
  for (int i = 0; i < 1024; ++i) values += (i ? ", " : "") + std::to_string(i);
  // 1024^4 = 2^40 members: refused at once (expanding them would exhaust memory).
  const std::string sweep =
      Write("huge.yaml", "base: base.yaml\nsweep:\n  seed: [" + values + "]\n  train.epochs: [" + values +
                             "]\n  train.batch_size: [" + values + "]\n  dataset.train_size: [" + values + "]\n");
  const auto start = std::chrono::steady_clock::now();
  auto specs = LoadExperiments(sweep, {});
  ASSERT_FALSE(specs.ok());
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_THAT(std::string(specs.status().message()),
              HasSubstr("huge.yaml: the sweep has 1.1e+12 members (seed: 1024 x train.epochs: 1024 x "
                        "train.batch_size: 1024 x dataset.train_size: 1024), more than the 100000"));
}

TEST(ConfigLoaderTest, DeeplyNestedYamlIsRefusedWhereItPassesTheLimit) {
  const std::string deep = Write("deep.yaml", "a: " + std::string(10000, '[') + std::string(10000, ']') + "\n");
  auto specs = LoadExperiments(deep, {});
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(std::string(specs.status().message()),
              HasSubstr("deep.yaml:1:68: lists/maps nested deeper than 64 levels"));
  // Brackets inside quotes and comments do not count.
  Write("base.yaml", kBase);
  const std::string quoted = Write("quoted.yaml", "base: base.yaml  # [[[[\nname: \"" + std::string(100, '[') + "\"\n");
  EXPECT_TRUE(LoadExperiments(quoted, {}).ok()) << LoadExperiments(quoted, {}).status();
}

TEST(ConfigLoaderTest, GridSweepIsTheProductInOrder) {
  Write("base.yaml", kBase);
  const std::string sweep = Write("grid.yaml",
                                  "base: base.yaml\n"
                                  "sweep:\n"
                                  "  seed: [1, 2, 3]\n"
                                  "  dataset.noise: [0.5, 1.0]\n");
  auto specs = LoadExperiments(sweep, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 6u);
  EXPECT_EQ((*specs)[0].name, "base__seed=1__noise=0.5");
  EXPECT_EQ((*specs)[1].name, "base__seed=1__noise=1.0");
  EXPECT_EQ((*specs)[5].name, "base__seed=3__noise=1.0");
  std::set<std::string> ids;
  for (const auto& s : *specs) ids.insert(s.config_id);
  EXPECT_EQ(ids.size(), 6u);  // distinct configs, distinct ids
  // Stable: expanding again gives the same ids in the same order.
  auto again = LoadExperiments(sweep, {});
  for (size_t i = 0; i < specs->size(); ++i) {
    EXPECT_EQ((*specs)[i].config_id, (*again)[i].config_id);
  }
  // The base file's own experiment has the id of the matching sweep member.
  auto member = LoadExperiments(TmpDir() + "/base.yaml", {"seed=2", "dataset.noise=0.5"});
  EXPECT_EQ((*member)[0].config_id, (*specs)[2].config_id);
}

TEST(ConfigLoaderTest, ZipVariesListsTogetherAndCombinesWithGrid) {
  Write("base.yaml", kBase);
  const std::string sweep = Write("zip.yaml",
                                  "base: base.yaml\n"
                                  "name: z\n"
                                  "set: {dataset.test_size: 32}\n"
                                  "sweep: {seed: [1, 2]}\n"
                                  "zip:\n"
                                  "  dataset.train_size: [64, 128, 256]\n"
                                  "  dataset.noise: [0.1, 0.2, 0.3]\n");
  auto specs = LoadExperiments(sweep, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 6u);  // 2 (grid) x 3 (zip)
  EXPECT_EQ((*specs)[4].name, "z__seed=2__train_size=128__noise=0.2");
  EXPECT_EQ((*specs)[4].root["dataset"]["train_size"].as<int>(), 128);
  EXPECT_EQ((*specs)[4].root["dataset"]["noise"].Scalar(), "0.2");
  EXPECT_EQ((*specs)[4].root["dataset"]["test_size"].as<int>(), 32);
  EXPECT_THAT((*specs)[4].origins->at("dataset.noise"), HasSubstr("zip.yaml:7:"));
}

TEST(ConfigLoaderTest, MemberNamesAreUnambiguousAndFreeOfYamlSyntax) {
  Write("base.yaml", kBase);
  // Two varied keys ending in "train_size" are told apart by one more path
  // element; a map-valued alternative is named by its position.
  const std::string sweep = Write("names.yaml",
                                  "base: base.yaml\n"
                                  "zip:\n"
                                  "  dataset.train_size: [64, 128]\n"
                                  "  extra.train_size: [1, 2]\n"
                                  "  dataset.augment: [{flip: true}, {flip: false}]\n");
  auto specs = LoadExperiments(sweep, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[1].name, "base__dataset.train_size=128__extra.train_size=2__augment#2");
  EXPECT_TRUE((*specs)[1].root["dataset"]["augment"]["flip"].IsScalar());
}

TEST(ConfigLoaderTest, SweepMembersKeepTheBaseFilesLineNumbers) {
  Write("base.yaml", kBase);
  const std::string sweep = Write("marks.yaml", "base: base.yaml\nsweep: {seed: [1, 2]}\n");
  auto specs = LoadExperiments(sweep, {});
  ASSERT_TRUE(specs.ok());
  // dataset is on line 3 of base.yaml (0-based mark 2) in every member.
  for (const auto& s : *specs) EXPECT_EQ(s.root["dataset"]["train_size"].Mark().line, 2);
}

TEST(ConfigLoaderTest, ZipListsOfDifferentLengthsAreAnError) {
  Write("base.yaml", kBase);
  const std::string sweep = Write("badzip.yaml",
                                  "base: base.yaml\n"
                                  "zip:\n"
                                  "  seed: [1, 2]\n"
                                  "  dataset.noise: [0.1, 0.2, 0.3]\n");
  EXPECT_THAT(LoadExperiments(sweep, {}).status().message(),
              HasSubstr("badzip.yaml:4:18: zip.dataset.noise: has 3 values but the other lists"));
}

TEST(ConfigLoaderTest, SweepFileKeysAreChecked) {
  Write("base.yaml", kBase);
  const std::string sweep = Write("typo.yaml", "base: base.yaml\nsweeep: {seed: [1]}\n");
  EXPECT_THAT(LoadExperiments(sweep, {}).status().message(),
              HasSubstr("typo.yaml:2:1: sweeep: unknown key 'sweeep' (did you mean 'sweep'?)"));
  const std::string empty_axis = Write("empty.yaml", "base: base.yaml\nsweep: {seed: []}\n");
  EXPECT_THAT(LoadExperiments(empty_axis, {}).status().message(),
              HasSubstr("sweep.seed: expected a non-empty list of values"));
}

TEST(ConfigLoaderTest, SeedsAreAnAxisOfSweepsAndOfPlainFiles) {
  Write("seeds_base.yaml", kBase);
  const std::string sweep = Write("seeds_sweep.yaml",
                                  "base: seeds_base.yaml\n"
                                  "sweep: {dataset.train_size: [32, 64]}\n"
                                  "seeds: [0, 1, 2]\n");
  auto specs = LoadExperiments(sweep, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 6u);
  // The seed varies fastest.
  EXPECT_EQ((*specs)[0].name, "base__train_size=32__seed=0");
  EXPECT_EQ((*specs)[2].name, "base__train_size=32__seed=2");
  EXPECT_EQ((*specs)[3].name, "base__train_size=64__seed=0");
  EXPECT_EQ((*specs)[4].root["seed"].as<int>(), 1);

  const std::string plain = Write("seeds_plain.yaml",
                                  "name: p\n"
                                  "seeds: [3, 5]\n"
                                  "dataset: {name: synthetic, train_size: 64}\n");
  specs = LoadExperiments(plain, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[1].name, "p__seed=5");
  EXPECT_EQ((*specs)[1].root["seed"].as<int>(), 5);
  EXPECT_FALSE((*specs)[1].root["seeds"].IsDefined());

  struct Case {
    const char* text;
    const char* error;
  };
  for (const Case& c : {
           Case{"name: p\nseeds: [1, -2]\n",
                "seeds_bad.yaml:2:12: seeds[1]: expected a non-negative integer, not '-2'"},
           Case{"name: p\nseeds: [1, 2, 1]\n", "seeds[2]: seed 1 is listed twice (first at line 2)"},
           Case{"name: p\nseeds: []\n", "seeds: expected a non-empty list"},
           Case{"name: p\nseed: 1\nseeds: [1, 2]\n", "give either seed or seeds"},
           Case{"base: seeds_base.yaml\nsweep: {seed: [1, 2]}\nseeds: [3]\n", "the sweep varies `seed` already"},
       }) {
    const std::string path = Write("seeds_bad.yaml", c.text);
    auto bad = LoadExperiments(path, {});
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_THAT(bad.status().message(), HasSubstr(c.error)) << c.text;
  }
}

TEST(ConfigLoaderTest, DependenciesAreLoadedAndTheirIdIsPartOfTheDependents) {
  Write("dep_fp.yaml", kBase);
  const std::string dependent = Write("dep_q.yaml",
                                      "name: q\n"
                                      "dataset: {name: synthetic, train_size: 64}\n"
                                      "train: {init_from: {config: dep_fp.yaml}}\n");
  auto specs = LoadExperiments(dependent, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ((*specs)[0].dependencies.size(), 1u);
  const Dependency& d = (*specs)[0].dependencies[0];
  EXPECT_EQ(d.key_path, "train.init_from");
  EXPECT_EQ(d.checkpoint, "model.pb");
  EXPECT_EQ(d.spec->name, "base");
  EXPECT_THAT(d.location, HasSubstr("dep_q.yaml:3:"));

  // The dependency's config is part of the dependent's id (through the dependency's id).
  const std::string id = (*specs)[0].config_id;
  auto changed = LoadExperiments(Write("dep_q2.yaml",
                                       "name: q\n"
                                       "dataset: {name: synthetic, train_size: 64}\n"
                                       "train: {init_from: {config: dep_fp.yaml, set: {dataset.train_size: 32}}}\n"),
                                 {});
  ASSERT_TRUE(changed.ok()) << changed.status();
  EXPECT_NE((*changed)[0].config_id, id);
  EXPECT_EQ((*changed)[0].dependencies[0].spec->root["dataset"]["train_size"].as<int>(), 32);

  // The path goes in once the output dir is known.
  ExperimentSpec spec = (*specs)[0];
  ASSERT_TRUE(ResolveCheckpoints(spec, "OUT").ok());
  EXPECT_EQ(spec.root["train"]["init_from"].as<std::string>(), "OUT/base-" + d.spec->config_id + "/model.pb");

  // A cycle, a sweep as a dependency, a missing file, an unknown key.
  Write("cycle_a.yaml", "name: a\ntrain: {init_from: {config: cycle_b.yaml}}\n");
  Write("cycle_b.yaml", "name: b\ntrain: {init_from: {config: cycle_a.yaml}}\n");
  Write("dep_sweep.yaml", "base: dep_fp.yaml\nseeds: [1, 2]\n");
  struct Case {
    const char* file;
    const char* text;
    const char* error;
  };
  for (const Case& c : {
           Case{"cycle_a.yaml", nullptr, "makes a cycle of dependencies"},
           Case{"dep_bad.yaml", "name: q\ntrain: {init_from: {config: dep_sweep.yaml}}\n",
                "is a sweep of 2 experiments; a dependency must be one experiment"},
           Case{"dep_bad.yaml", "name: q\ntrain: {init_from: {config: absent.yaml}}\n",
                "train.init_from.config: absent.yaml: absent.yaml: cannot open the config file"},
           Case{"dep_bad.yaml", "name: q\ntrain: {init_from: {config: dep_fp.yaml, file: x}}\n",
                "dep_bad.yaml:2:42: train.init_from.file: unknown key"},
           Case{"dep_bad.yaml", "name: q\ntrain: {init_from: {config: dep_fp.yaml, checkpoint: ../x.pb}}\n",
                "must be a file name in the run directory"},
       }) {
    const std::string path = c.text != nullptr ? Write(c.file, c.text) : TmpDir() + "/" + c.file;
    auto bad = LoadExperiments(path, {});
    ASSERT_FALSE(bad.ok()) << c.file;
    EXPECT_THAT(std::string(bad.status().message()), HasSubstr(c.error)) << c.file;
  }
}

TEST(ConfigLoaderTest, AMissingCheckpointNamesTheKeyTheLineAndTheConfigThatProducesIt) {
  Write("ckpt_fp32.yaml", "name: ckpt_fp32\ndataset: {name: synthetic}\n");
  const std::string path = Write("ckpt_user.yaml",
                                 "name: u\n"
                                 "dataset: {name: synthetic}\n"
                                 "ptq: {init_from: runs/ckpt_fp32/model.pb}\n");
  auto specs = LoadExperiments(path, {});
  ASSERT_TRUE(specs.ok()) << specs.status();
  ExperimentSpec spec = (*specs)[0];
  const absl::Status s = ResolveCheckpoints(spec, TmpDir() + "/out");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("ckpt_user.yaml:3:18: ptq.init_from: no checkpoint runs/ckpt_fp32/model.pb"));
  EXPECT_THAT(s.message(), HasSubstr(TmpDir() + "/out/runs/ckpt_fp32/model.pb"));
  EXPECT_THAT(s.message(),
              HasSubstr("ckpt_fp32.yaml would produce it: write `ptq.init_from: {config: ckpt_fp32.yaml}`"));

  // Found in the output dir: the path becomes that file.
  std::filesystem::create_directories(TmpDir() + "/out/runs/ckpt_fp32");
  std::ofstream(TmpDir() + "/out/runs/ckpt_fp32/model.pb") << "x";
  spec = (*specs)[0];
  ASSERT_TRUE(ResolveCheckpoints(spec, TmpDir() + "/out").ok());
  EXPECT_EQ(spec.root["ptq"]["init_from"].as<std::string>(), TmpDir() + "/out/runs/ckpt_fp32/model.pb");
}

// A name longer than the file system allows (ENAMETOOLONG) is a missing file, not an
// exception: found by the config_loader fuzzer in a sweep's base.
TEST(ConfigLoaderTest, PathsTooLongForTheFileSystemAreErrorsNotCrashes) {
  const std::string long_name(5000, 'x');
  auto base = LoadExperiments(Write("long_base.yaml", "base: " + long_name + ".yaml\nsweep: {seed: [1]}\n"), {});
  ASSERT_FALSE(base.ok());
  EXPECT_THAT(std::string(base.status().message()), HasSubstr("cannot open the config file"));
  auto dep =
      LoadExperiments(Write("long_dep.yaml", "name: q\ntrain: {init_from: {config: " + long_name + ".yaml}}\n"), {});
  ASSERT_FALSE(dep.ok());
  EXPECT_THAT(std::string(dep.status().message()), HasSubstr("train.init_from.config"));
  auto plain = LoadExperiments(Write("long_plain.yaml", "name: q\nptq: {init_from: " + long_name + "}\n"), {});
  ASSERT_TRUE(plain.ok()) << plain.status();
  ExperimentSpec spec = (*plain)[0];
  const absl::Status s = ResolveCheckpoints(spec, "out");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr("ptq.init_from: no checkpoint"));
}

TEST(ConfigLoaderTest, FileErrors) {
  EXPECT_EQ(LoadExperiments("/no/such.yaml", {}).status().code(), absl::StatusCode::kNotFound);
  const std::string bad = Write("syntax.yaml", "name: x\ndataset: {name: [a}\n");
  EXPECT_THAT(LoadExperiments(bad, {}).status().message(),
              HasSubstr("syntax.yaml:2:19: YAML syntax error"));
  const std::string list = Write("list.yaml", "- a\n- b\n");
  EXPECT_THAT(LoadExperiments(list, {}).status().message(),
              HasSubstr("list.yaml:1:1: expected a map of settings at the top level"));
  const std::string missing_base = Write("mb.yaml", "base: nothere.yaml\nsweep: {seed: [1]}\n");
  EXPECT_THAT(LoadExperiments(missing_base, {}).status().message(),
              HasSubstr("nothere.yaml: cannot open the config file"));
}

}  // namespace
}  // namespace quant
