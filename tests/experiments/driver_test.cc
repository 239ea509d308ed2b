// End-to-end tests of //experiments:run: the binary is run as a user would.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_split.h"
#include "experiments/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/onednn_backend.h"
#include "tests/experiments/driver_test_util.h"

namespace quant {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using driver_test::Read;
using driver_test::Result;
using driver_test::RunDirs;
using driver_test::RunDriver;
using driver_test::TmpDir;
using driver_test::Write;

int CountRunDirs(const std::string& dir) { return static_cast<int>(RunDirs(dir).size()); }

fs::path OnlyRun(const std::string& dir) {
  std::vector<fs::path> runs = RunDirs(dir);
  EXPECT_EQ(runs.size(), 1u) << dir;
  return runs.empty() ? fs::path(dir) / "none" : runs[0];
}

TEST(DriverTest, EveryShippedConfigValidates) {
  int checked = 0;
  for (const auto& entry : fs::directory_iterator("configs")) {
    if (entry.path().extension() != ".yaml") continue;
    const Result r = RunDriver("--validate --config=" + entry.path().string());
    EXPECT_EQ(r.exit_code, 0) << entry.path() << ":\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr("valid")) << entry.path();
    ++checked;
  }
  EXPECT_GE(checked, 3);
}

TEST(DriverTest, RunWritesConfigAndRecord) {
  const std::string out = TmpDir("run");
  const Result r = RunDriver("--config=configs/synthetic_smoke.yaml --output_dir=" + out +
                             " --set dataset.train_size=100");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(CountRunDirs(out), 1);
  const fs::path run = OnlyRun(out);
  EXPECT_THAT(run.filename().string(), ::testing::StartsWith("synthetic_smoke-"));
  // <output_dir>/<name> points at the latest successful run.
  EXPECT_TRUE(fs::is_symlink(fs::path(out) / "synthetic_smoke"));
  EXPECT_EQ(fs::read_symlink(fs::path(out) / "synthetic_smoke"), run.filename());
  EXPECT_TRUE(fs::exists(run / "config.yaml"));
  EXPECT_TRUE(fs::exists(run / "result.pb.txt"));
  auto record = ReadRecordJson((run / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->name(), "synthetic_smoke");
  EXPECT_EQ(record->status(), quantlab::ResultRecord::OK);
  EXPECT_EQ(record->seed(), 1u);
  EXPECT_EQ(record->config_id().size(), 16u);
  EXPECT_GT(record->peak_rss_bytes(), 0);
  EXPECT_GT(record->host().hardware_threads(), 0);
  EXPECT_FALSE(record->start_time().empty());
  EXPECT_THAT(record->dataset(), HasSubstr("100 train"));
  EXPECT_EQ(record->overrides(0), "dataset.train_size=100");
  // snake_case field names in the JSON
  std::ifstream json(run / "result.json");
  std::stringstream text;
  text << json.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("\"peak_rss_bytes\""));
  EXPECT_THAT(text.str(), HasSubstr("\"config_id\""));
  // The resolved config re-loads to the same id.
  const Result again = RunDriver("--validate --config=" + (run / "config.yaml").string());
  EXPECT_THAT(again.output, HasSubstr(record->config_id()));
}

// A YAML graph (residual add, depthwise conv, sigmoid, concat, global average
// pool) end to end: float training, static int8 PTQ, the integer backends.
TEST(DriverTest, YamlGraphTrainsQuantizesAndRunsOnIntegerBackends) {
  const std::string out = TmpDir("graph");
  const Result r = RunDriver("--config=configs/graph_smoke.yaml --output_dir=" + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto record = ReadRecordJson((OnlyRun(out) / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->status(), quantlab::ResultRecord::OK);
  ASSERT_EQ(record->backends_size(), 3);
  const auto& ref = record->backends(0);
  const auto& gemmlowp = record->backends(1);
  EXPECT_EQ(ref.backend(), "reference");
  EXPECT_GT(ref.test_accuracy(), 0.35);  // 4 classes: well above chance
  EXPECT_EQ(gemmlowp.backend(), "gemmlowp");
  EXPECT_EQ(gemmlowp.agreement_with_reference().outputs_identical(),
            gemmlowp.agreement_with_reference().outputs_compared());
  // Per op: gemmlowp equals the reference on every op, add and concat included.
  bool saw_add = false, saw_concat = false;
  for (const auto& op : gemmlowp.per_op()) {
    EXPECT_EQ(op.agreement().outputs_identical(), op.agreement().outputs_compared()) << op.op();
    EXPECT_GT(op.alone().outputs_compared(), 0) << op.op();
    EXPECT_EQ(op.alone().outputs_identical(), op.alone().outputs_compared()) << op.op();
    saw_add = saw_add || op.kind() == "add";
    saw_concat = saw_concat || op.kind() == "concat";
  }
  EXPECT_TRUE(saw_add);
  EXPECT_TRUE(saw_concat);
  EXPECT_THAT(r.output, HasSubstr("1 fixed (sigmoid/tanh)"));
  // The float simulation, each op alone on the reference's inputs: within one step.
  const auto& fq = record->backends(2);
  EXPECT_EQ(fq.backend(), "fake_quant");
  for (const auto& op : fq.per_op()) EXPECT_LE(op.alone().max_abs_steps(), 1) << op.op();
  EXPECT_THAT(r.output, HasSubstr("gemmlowp     each op alone on the reference's inputs: 9 of 9 ops identical"));
  // XNNPACK (2022) has no concat: refused at validation, naming the op, the node and the backend.
  const Result x = RunDriver("--validate --config=configs/graph_smoke.yaml --set evaluate.backends=[xnnpack]"
                             " --set quant.activations.signed=true");
  EXPECT_EQ(x.exit_code, 1) << x.output;
  EXPECT_THAT(x.output, HasSubstr("backend 'xnnpack' cannot run op 'cat' (concat)"));
}

// Each bad input: non-zero exit, one "error:" line naming file:line, no run directory.
TEST(DriverTest, BadInputsFailCleanlyWithoutResults) {
  const std::string dir = TmpDir("bad");
  const std::string out = dir + "/runs";
  struct Case {
    std::string yaml;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"name: t\ndataset: {name: synthetic, noize: 1}\n",
       "t.yaml:2:28: dataset.noize: unknown key 'noize' (did you mean 'noise'?)"},
      {"name: t\nseed: many\n", "t.yaml:2:7: seed: expected an integer, got 'many'"},
      {"name: t\ndataset: {name: synthetik}\n",
       "t.yaml:2:17: dataset.name: unknown dataset 'synthetik' (did you mean 'synthetic'?)"},
      {"name: t\ndataset: {name: [synthetic}\n", "t.yaml:2:27: YAML syntax error"},
      {"seed: 1\n", "t.yaml:1:1: name: required string is missing"},
      {"name: t\nseed: 1\ndataset: {name: synthetic}\nseed: 2\n",
       "t.yaml:4:1: key 'seed' appears twice in this map (first at line 2); keep one"},
      {"name: t\ndataset: {name: synthetic, noise: 1, noise: 2}\n", "t.yaml:2:38: key 'noise' appears twice"},
      {"name: t\ndataset: {name: synthetic}\nmodel: {name: mlp}\nquant: {weights: {bits: 8}}\n"
       "ptq: {method: static}\nevaluate: {backends: [xnnpak]}\n",
       "evaluate.backends: unknown backend 'xnnpak' (did you mean 'xnnpack'?)"},
      // Checked against the machine's memory before anything is allocated (was std::bad_alloc).
      {"name: t\ndataset: {name: synthetic}\nmodel: {name: mlp, hidden: [1000000000]}\n",
       "node 1 'fc1' (linear): Linear(784, 1000000000) cannot be built on its input [784] (output of flatten1): "
       "Linear(784, 1000000000): a parameter of shape [1000000000, 784] needs 5841.3 GiB (value and gradient), "
       "more than this machine's"},
  };
  for (const Case& c : cases) {
    const std::string path = Write(dir + "/t.yaml", c.yaml);
    const Result r = RunDriver("--config=" + path + " --output_dir=" + out);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << r.output;
    const std::vector<std::string> lines = absl::StrSplit(r.output, '\n', absl::SkipEmpty());
    EXPECT_EQ(lines.size(), 1u) << r.output;
    EXPECT_EQ(CountRunDirs(out), 0) << "a failed validation left a run directory";
  }
  const Result missing = RunDriver("--config=" + dir + "/absent.yaml");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("absent.yaml: cannot open the config file (no such file)"));
  const Result zero = RunDriver("--validate --config=/dev/zero");
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_THAT(zero.output, HasSubstr("/dev/zero: the config file is larger than 16 MiB"));
  const Result no_config = RunDriver("");
  EXPECT_EQ(no_config.exit_code, 1);
  EXPECT_THAT(no_config.output, HasSubstr("pass --config=FILE"));
}

// Nothing is written outside the output dir: a run name is one directory name
// (no separator, no "." or "..", no control bytes, valid UTF-8, at most 200
// bytes), from the config, --set or a sweep axis alike; the output dir is
// neither empty nor the file system root. Each is refused before anything is
// written, naming where the value came from.
TEST(DriverTest, RunNamesAndOutputDirsCannotEscape) {
  const std::string dir = TmpDir("paths");
  const std::string out = dir + "/A/B/C/D";
  const std::string base = Write(dir + "/base.yaml", "name: ok\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n");
  struct Case {
    std::string args, expected;
  };
  const std::vector<Case> cases = {
      {"--set name=../../../x", "command line --set name=../../../x: name: the run name '../../../x' contains a path separator"},
      {"--set name=..", "the run name '..' is '.' or '..'"},
      {"--set name=.", "the run name '.' is '.' or '..'"},
      {"--set 'name=a\\b'", "contains a path separator"},
      {"--set name=" + std::string(201, 'n'), "is 201 bytes long; at most 200 are allowed"},
      {"--output_dir=/", "--output_dir: the output dir '/' is the file system root"},
  };
  for (const Case& c : cases) {
    const Result r = RunDriver("--config=" + base + " " + (c.args.rfind("--output_dir", 0) == 0 ? "" : "--output_dir=" + out + " ") + c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.expected)) << c.args;
  }
  // Bytes a shell argument cannot carry portably come from a config file.
  const std::string control = Write(dir + "/control.yaml", "name: \"x\\x01y\"\ndataset: {name: synthetic}\n");
  const Result ctl = RunDriver("--config=" + control + " --output_dir=" + out);
  EXPECT_EQ(ctl.exit_code, 1) << ctl.output;
  EXPECT_THAT(ctl.output, HasSubstr("control.yaml:1:1: name: the run name 'x\\x01y' contains the control byte 0x01"));
  const std::string latin1 = Write(dir + "/latin1.yaml", "name: caf\xe9\ndataset: {name: synthetic}\n");
  const Result l1 = RunDriver("--config=" + latin1 + " --output_dir=" + out);
  EXPECT_EQ(l1.exit_code, 1) << l1.output;
  EXPECT_THAT(l1.output, HasSubstr("is not valid UTF-8"));
  const std::string empty = Write(dir + "/empty.yaml", "name: e\ndataset: {name: synthetic}\noutput: {dir: \"\"}\n");
  const Result e = RunDriver("--config=" + empty);
  EXPECT_EQ(e.exit_code, 1) << e.output;
  EXPECT_THAT(e.output, HasSubstr("empty.yaml:3:10: output.dir: the output dir is empty"));
  const std::string sweep = Write(dir + "/sweep.yaml", "base: base.yaml\nsweep:\n  name: [fine, \"../evil\"]\n");
  const Result s = RunDriver("--config=" + sweep + " --output_dir=" + out);
  EXPECT_EQ(s.exit_code, 1) << s.output;
  EXPECT_THAT(s.output, HasSubstr("sweep.yaml:3:"));
  EXPECT_THAT(s.output, HasSubstr("contains a path separator"));
  // Nothing was created anywhere: not under the output dir, not above it.
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(dir + "/A/x-"));
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    EXPECT_FALSE(entry.is_directory() && entry.path().filename().string().find('-') != std::string::npos)
        << "unexpected run directory " << entry.path();
  }
  // An output dir that cannot be created: one error, and no claim of a record that does not exist.
  Write(dir + "/plainfile", "x");
  const Result w = RunDriver("--config=" + base + " --output_dir=" + dir + "/plainfile/runs");
  EXPECT_EQ(w.exit_code, 1) << w.output;
  EXPECT_THAT(w.output, HasSubstr("cannot create the run directory"));
  EXPECT_THAT(w.output, HasSubstr("ok: FAILED ("));
  EXPECT_THAT(w.output, HasSubstr("), no record written"));
  EXPECT_THAT(w.output, ::testing::Not(HasSubstr("-> ")));
  // A unicode name is a fine directory name.
  const Result u = RunDriver("--config=" + base + " --output_dir=" + out + " --set name=café_β");
  EXPECT_EQ(u.exit_code, 0) << u.output;
  EXPECT_TRUE(fs::is_symlink(fs::path(out) / "café_β"));
}

// Flags are checked like YAML keys: a negative or non-numeric --seed is an
// error (it used to be ignored), and --threads / --jobs beyond the machine
// need --oversubscribe.
TEST(DriverTest, FlagsAreValidated) {
  const std::string base = "--validate --config=configs/synthetic_smoke.yaml ";
  Result r = RunDriver(base + "--seed=-5");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--seed=-5: expected a non-negative integer"));
  r = RunDriver(base + "--seed=12x");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  r = RunDriver(base + "--seed=7");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("seed 7,"));
  r = RunDriver(base + "--threads=100000");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("hardware threads"));
  EXPECT_THAT(r.output, HasSubstr("--oversubscribe"));
  r = RunDriver(base + "--threads=100000 --oversubscribe");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(DriverTest, SweepRunsInBatchResumesAndSurvivesAFailure) {
  const std::string dir = TmpDir("sweep");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml",
        "name: b\nseed: 0\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n");
  // The second value of dataset.name fails at load time (missing files), not validation.
  Write(dir + "/sweep.yaml",
        "base: base.yaml\n"
        "sweep: {seed: [1, 2]}\n");
  const Result first = RunDriver("--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("2 experiments: 2 ran ok, 0 failed, 0 skipped"));
  const Result second = RunDriver("--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_THAT(second.output, HasSubstr("2 experiments: 0 ran ok, 0 failed, 2 skipped"));

  Write(dir + "/mixed.yaml",
        "base: base.yaml\n"
        "zip:\n"
        "  dataset.name: [synthetic, fashion_mnist, synthetic]\n"
        "  dataset.seed: [1, 2, 3]\n"
        "set: {dataset.train_size: 64}\n");
  // fashion_mnist does not take train_size/seed: that is a validation error
  // for the whole sweep, found before anything runs.
  const Result invalid = RunDriver("--config=" + dir + "/mixed.yaml --output_dir=" + out + "2");
  EXPECT_EQ(invalid.exit_code, 1);
  EXPECT_EQ(CountRunDirs(out + "2"), 0);

  // A run that fails while running is recorded and the others go on.
  Write(dir + "/fails.yaml",
        "base: base.yaml\n"
        "sweep: {dataset: [{name: synthetic, train_size: 32}, {name: fashion_mnist, dir: /absent},"
        " {name: synthetic, train_size: 48}]}\n");
  const Result mixed = RunDriver("--config=" + dir + "/fails.yaml --jobs=1 --output_dir=" + out + "3");
  EXPECT_EQ(mixed.exit_code, 1) << mixed.output;
  EXPECT_THAT(mixed.output, HasSubstr("3 experiments: 2 ran ok, 1 failed, 0 skipped"));
  EXPECT_THAT(mixed.output, HasSubstr("/absent/train-images-idx3-ubyte.gz: cannot open"));
  int failed_records = 0;
  for (const fs::path& run : RunDirs(out + "3")) {
    auto rec = ReadRecordJson((run / "result.json").string());
    ASSERT_TRUE(rec.ok()) << run;
    if (rec->status() == quantlab::ResultRecord::FAILED) {
      ++failed_records;
      EXPECT_THAT(rec->error(), HasSubstr("/absent"));
    }
  }
  EXPECT_EQ(failed_records, 1);
  // Re-running retries only the failed one.
  const Result retry = RunDriver("--config=" + dir + "/fails.yaml --output_dir=" + out + "3");
  EXPECT_THAT(retry.output, HasSubstr("3 experiments: 0 ran ok, 1 failed, 2 skipped"));
}

// init_from: {config: ...}: the experiment started from runs first, once, into the same
// output dir; a second run reuses it; a failing one stops its dependents, named.
TEST(DriverTest, DependenciesRunFirstOnceAndAreReused) {
  const std::string dir = TmpDir("deps");
  const std::string out = dir + "/out";
  Write(dir + "/fp.yaml",
        "name: fp\nseed: 0\ndataset: {name: synthetic, train_size: 128, test_size: 32}\n"
        "model: {name: mlp}\ntrain: {epochs: 1, batch_size: 64}\n");
  Write(dir + "/ft.yaml",
        "name: ft\nseed: 0\ndataset: {name: synthetic, train_size: 128, test_size: 32}\n"
        "model: {name: mlp}\ntrain: {epochs: 1, batch_size: 64, init_from: {config: fp.yaml}}\n");
  Write(dir + "/sweep.yaml", "base: ft.yaml\nseeds: [1, 2, 3]\n");
  const Result plan = RunDriver("--validate --config=" + dir + "/sweep.yaml --output_dir=" + out);
  ASSERT_EQ(plan.exit_code, 0) << plan.output;
  EXPECT_THAT(plan.output, HasSubstr("3 experiment(s) valid, starting from 1 other(s): fp"));
  EXPECT_THAT(plan.output, HasSubstr("starts from fp: runs first (no OK record yet)"));
  EXPECT_EQ(CountRunDirs(out), 0);

  const Result first = RunDriver("--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_THAT(first.output, HasSubstr("4 experiments: 4 ran ok, 0 failed, 0 skipped"));
  // fp ran before every member, once.
  EXPECT_LT(first.output.find("[done 1/4] fp: ok"), first.output.find("[start 2/4]")) << first.output;
  EXPECT_EQ(CountRunDirs(out), 4);
  std::string fp_dir;
  for (const fs::path& run : RunDirs(out)) {
    if (run.filename().string().rfind("fp-", 0) == 0) fp_dir = run.string();
  }
  ASSERT_FALSE(fp_dir.empty());
  for (const fs::path& run : RunDirs(out)) {
    if (run.filename().string().rfind("ft__seed=", 0) != 0) continue;
    EXPECT_THAT(Read(run / "config.yaml"), HasSubstr("init_from: " + fp_dir + "/model.pb")) << run;
    EXPECT_THAT(Read(run / "log.txt"), HasSubstr("starting from " + fp_dir + "/model.pb")) << run;
  }
  // The seeds are aggregated in the summary.
  EXPECT_THAT(first.output, HasSubstr("over seeds"));
  EXPECT_THAT(first.output, HasSubstr("(n=3)"));

  const Result again = RunDriver("--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("4 experiments: 0 ran ok, 0 failed, 4 skipped"));
  // One experiment with a dependency: the dependency is reused, the experiment runs (as always alone).
  const Result single = RunDriver("--config=" + dir + "/ft.yaml --output_dir=" + out);
  ASSERT_EQ(single.exit_code, 0) << single.output;
  EXPECT_THAT(single.output, HasSubstr("2 experiments: 1 ran ok, 0 failed, 1 skipped"));

  // A dependency that fails: its dependents do not run, and say why.
  Write(dir + "/bad_fp.yaml",
        "name: bad_fp\ndataset: {name: fashion_mnist, dir: /absent}\nmodel: {name: mlp}\n"
        "train: {epochs: 1}\n");
  Write(dir + "/bad_ft.yaml",
        "name: bad_ft\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n"
        "model: {name: mlp}\ntrain: {epochs: 1, init_from: {config: bad_fp.yaml}}\n");
  const Result failed = RunDriver("--config=" + dir + "/bad_ft.yaml --output_dir=" + out + "2");
  EXPECT_EQ(failed.exit_code, 1) << failed.output;
  EXPECT_THAT(failed.output, HasSubstr("bad_ft: not run: it starts from bad_fp, which failed"));
  EXPECT_THAT(failed.output, HasSubstr("2 experiments: 0 ran ok, 2 failed"));

  // A plain path that is not there: a validation error naming the producer, nothing run.
  Write(dir + "/plain.yaml",
        "name: plain\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n"
        "model: {name: mlp}\ntrain: {epochs: 1, init_from: runs/fp/model.pb}\n");
  const Result missing = RunDriver("--validate --config=" + dir + "/plain.yaml --output_dir=" + out + "3");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.output, HasSubstr("plain.yaml:4:31: train.init_from: no checkpoint runs/fp/model.pb"));
  EXPECT_THAT(missing.output, HasSubstr("fp.yaml would produce it: write `train.init_from: {config: fp.yaml}`"));
  EXPECT_FALSE(fs::exists(out + "3"));
}

TEST(DriverTest, TrainsAndRecordsEpochs) {
  const std::string dir = TmpDir("train");
  Write(dir + "/train.yaml",
        "name: tiny\n"
        "seed: 0\n"
        "dataset: {name: synthetic, train_size: 512, test_size: 256, num_classes: 4,"
        " image_size: 6, noise: 1.0}\n"
        "model: {name: mlp}\n"
        "train: {scheme: fp32, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05,"
        " momentum: 0.9}}\n");
  const Result r = RunDriver("--config=" + dir + "/train.yaml --output_dir=" + dir + "/runs");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("epoch 2/2"));
  const fs::path run = OnlyRun(dir + "/runs");
  auto record = ReadRecordJson((run / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  ASSERT_EQ(record->epochs_size(), 2);
  EXPECT_EQ(record->epochs(1).epoch(), 2);
  EXPECT_EQ(record->epochs(1).scheme(), "fp32");
  EXPECT_GT(record->epochs(1).seconds(), 0);
  EXPECT_GT(record->epochs(1).samples_per_s(), 0);
  EXPECT_LT(record->epochs(1).train_loss(), record->epochs(0).train_loss());
  // Prototypes plus unit noise in 36 dimensions are easy: far above chance (25 %).
  EXPECT_GT(record->metrics().at("float_test_accuracy"), 0.9);
  EXPECT_DOUBLE_EQ(record->metrics().at("float_test_accuracy"), record->epochs(1).test_accuracy());
  EXPECT_DOUBLE_EQ(record->metrics().at("final_test_accuracy"), record->epochs(1).test_accuracy());
  EXPECT_TRUE(fs::exists(run / "model.pb"));
}

TEST(DriverTest, ModelThatDoesNotChainIsRejectedBeforeRunning) {
  const std::string dir = TmpDir("chain");
  Write(dir + "/bad.yaml",
        "name: bad\n"
        "dataset: {name: fashion_mnist}\n"
        "model:\n"
        "  name: sequential\n"
        "  layers:\n"
        "    - flatten\n"
        "    - {type: linear, in_features: 100, out_features: 10}\n"
        "train: {epochs: 1}\n");
  const Result r = RunDriver("--config=" + dir + "/bad.yaml --output_dir=" + dir + "/runs");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("bad.yaml:5:3: model.layers: model sequential: node 1 'fc1' (linear"));
  EXPECT_THAT(r.output, HasSubstr("bad.yaml:7:7: model.layers[1]"));
  EXPECT_THAT(r.output, HasSubstr("784"));
  EXPECT_THAT(r.output, HasSubstr("100"));
  EXPECT_EQ(CountRunDirs(dir + "/runs"), 0);
}

TEST(DriverTest, QuantSectionIsCheckedAndOverridesWarn) {
  const std::string dir = TmpDir("quant");
  Write(dir + "/q.yaml",
        "name: q\n"
        "dataset: {name: fashion_mnist}\n"
        "model: {name: mlp}\n"
        "quant:\n"
        "  weights: {bits: 4, symmetric: true}\n"
        "  overrides:\n"
        "    - {match: conv1, weights: {bits: 8}}\n");
  const Result ok = RunDriver("--validate --config=" + dir + "/q.yaml");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("warning: " + dir + "/q.yaml:7:7: quant.overrides[0]: match "
                                   "'conv1' matches no layer; the layers are: flatten1, fc1"));
  Write(dir + "/bad.yaml",
        "name: q\n"
        "dataset: {name: fashion_mnist}\n"
        "quant:\n"
        "  activations: {bits: 8, observer: histgram}\n");
  const Result bad = RunDriver("--validate --config=" + dir + "/bad.yaml");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_THAT(bad.output, HasSubstr("bad.yaml:4:36: quant.activations.observer: unknown observer "
                                    "'histgram' (did you mean 'histogram'?)"));
}

constexpr char kPtqBase[] =
    "name: ptq\n"
    "seed: 0\n"
    "dataset: {name: synthetic, train_size: 512, test_size: 256, num_classes: 4, image_size: 8, noise: 1.0}\n"
    "model: {name: cnn, channels: [4, 8], hidden: 16}\n"
    "train: {scheme: fp32, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05, momentum: 0.9}}\n";

TEST(DriverTest, StaticPtqAndEvaluateRecordEveryBackend) {
  const std::string dir = TmpDir("ptq");
  Write(dir + "/p.yaml",
        std::string(kPtqBase) +
            "quant:\n"
            "  weights: {bits: 8, symmetric: true, granularity: per_channel, observer: per_channel_minmax}\n"
            "  activations: {bits: 8, signed: true, observer: histogram, calibration: percentile}\n"
            "ptq: {method: static, calibration_batches: 2, batch_size: 64}\n"
            "evaluate: {backends: [reference, fake_quant, gemmlowp, xnnpack, xnnpack_f32], batch1_images: 20}\n");
  const Result r = RunDriver("--config=" + dir + "/p.yaml --output_dir=" + dir + "/runs");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, ::testing::Not(HasSubstr("not run")));
  const fs::path run = OnlyRun(dir + "/runs");
  EXPECT_TRUE(fs::exists(run / "model.qlq"));
  auto record = ReadRecordJson((run / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->not_available_size(), 0);
  ASSERT_EQ(record->backends_size(), 5);
  const double float_acc = record->metrics().at("ptq_float_test_accuracy");
  EXPECT_GT(float_acc, 0.5);
  EXPECT_NEAR(record->metrics().at("ptq_test_accuracy"), float_acc, 0.05);
  for (const auto& b : record->backends()) {
    EXPECT_NEAR(b.test_accuracy(), float_acc, 0.05) << b.backend();
    EXPECT_GT(b.images_per_s_batch1(), 0) << b.backend();
    EXPECT_GT(b.images_per_s_batch256(), 0) << b.backend();
    EXPECT_GT(b.model_size_bytes(), 0) << b.backend();
    EXPECT_GE(b.agreement_with_reference().top1_agreement(), 0.95) << b.backend();
  }
  const auto& ref = record->backends(0);
  EXPECT_EQ(ref.agreement_with_reference().outputs_identical(), ref.agreement_with_reference().outputs_compared());
  const auto& gl = record->backends(2);
  EXPECT_EQ(gl.backend(), "gemmlowp");
  EXPECT_EQ(gl.agreement_with_reference().outputs_identical(), 256 * 4);
  const auto& xnn = record->backends(3);
  EXPECT_LE(xnn.agreement_with_reference().max_abs_steps(), 1);
  EXPECT_LT(gl.model_size_bytes(), record->backends(4).model_size_bytes());
}

// onednn needs VNNI: where the CPU lacks it, the run still succeeds, the record and the
// terminal say why onednn was not evaluated, and the other backends are.
TEST(DriverTest, BackendThisMachineCannotRunIsSaidAndTheOthersRun) {
  const std::string dir = TmpDir("no_vnni");
  Write(dir + "/p.yaml",
        std::string(kPtqBase) +
            "quant:\n"
            "  weights: {bits: 8, symmetric: true, granularity: per_channel, observer: per_channel_minmax}\n"
            "  activations: {bits: 8, signed: false, observer: minmax}\n"
            "ptq: {method: static, calibration_batches: 2, batch_size: 64}\n"
            "evaluate: {backends: [reference, onednn], batch1_images: 5}\n");
  const Result r = RunDriver("--config=" + dir + "/p.yaml --output_dir=" + dir + "/runs");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto record = ReadRecordJson((OnlyRun(dir + "/runs") / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  if (backends::OnednnBackend::HasVnni()) {
    EXPECT_EQ(record->not_available_size(), 0);
    ASSERT_EQ(record->backends_size(), 2);
    EXPECT_EQ(record->backends(1).backend(), "onednn");
  } else {
    ASSERT_EQ(record->not_available_size(), 1);
    EXPECT_THAT(record->not_available(0), HasSubstr("evaluate on onednn: backend 'onednn' needs a CPU with VNNI"));
    EXPECT_THAT(r.output, HasSubstr("not evaluated on this machine: backend 'onednn' needs a CPU with VNNI"));
    ASSERT_EQ(record->backends_size(), 1);
    EXPECT_EQ(record->backends(0).backend(), "reference");
  }
}

TEST(DriverTest, QatRunDeploysItsOwnQuantizersAndRecordsBothAccuraciesAndTheDebugger) {
  const std::string dir = TmpDir("from_qat");
  const std::string qat =
      "name: qat\n"
      "seed: 0\n"
      "dataset: {name: synthetic, train_size: 512, test_size: 256, num_classes: 4, image_size: 8, noise: 1.0}\n"
      "model: {name: cnn, channels: [4, 8], hidden: 16}\n"
      "train: {scheme: qat, pretrain: {epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05}},\n"
      "        epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.01}}\n"
      "quant:\n"
      "  weights: {quantizer: lsq, bits: 4}\n"
      "  activations: {quantizer: lsq, bits: 4}\n"
      "  overrides: [{match: conv1|fc2, weights: {bits: 8}, activations: {bits: 8}}]\n"
      "ptq: {method: from_qat}\n";
  Write(dir + "/q.yaml", qat + "evaluate: {backends: [reference, gemmlowp, xnnpack], batch1_images: 20, debug: true}\n");
  const Result v = RunDriver("--validate --config=" + dir + "/q.yaml");
  ASSERT_EQ(v.exit_code, 0) << v.output;
  EXPECT_THAT(v.output, HasSubstr("numerical debugger on 64 test images"));
  const Result r = RunDriver("--config=" + dir + "/q.yaml --output_dir=" + dir + "/runs");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("vs QAT-simulated"));
  EXPECT_THAT(r.output, HasSubstr("debugger: "));
  auto record = ReadRecordJson((OnlyRun(dir + "/runs") / "result.json").string());
  ASSERT_TRUE(record.ok()) << record.status();
  const double simulated = record->metrics().at("qat_simulated_test_accuracy");
  EXPECT_EQ(simulated, record->metrics().at("final_test_accuracy"));  // the QAT model's own accuracy
  ASSERT_EQ(record->backends_size(), 3);
  for (const auto& b : record->backends()) {
    EXPECT_NEAR(b.test_accuracy(), simulated, 0.02) << b.backend();
    // The float QAT model sees the unquantized synthetic input (noise, off any grid) and float
    // biases; on a model at ~50 % accuracy that moves some top-1s (train.integer_exact removes it).
    EXPECT_GE(b.prediction_agreement_with_simulation(), 0.8) << b.backend();
  }
  // input + conv1, pool1, conv2, pool2, flatten, fc1, fc2
  ASSERT_EQ(record->debug_tensors_size(), 8);
  EXPECT_EQ(record->debug_tensors(0).tensor(), "input");
  EXPECT_EQ(record->debug_tensors(3).tensor(), "conv2");
  EXPECT_EQ(record->debug_tensors(3).quant_min(), 0);   // LSQ's unsigned 4-bit grid after the ReLU
  EXPECT_EQ(record->debug_tensors(3).quant_max(), 15);
  EXPECT_THAT(record->debug_summary(), HasSubstr("reference == gemmlowp"));

  // Without QAT training there is nothing to convert: refused at validation, naming the key.
  Write(dir + "/fp.yaml", std::string(kPtqBase) +
                              "quant: {weights: {bits: 8}, activations: {bits: 8}}\nptq: {method: from_qat}\n");
  const Result fp = RunDriver("--validate --config=" + dir + "/fp.yaml");
  EXPECT_EQ(fp.exit_code, 1);
  EXPECT_THAT(fp.output, HasSubstr("fp.yaml:7:"));
  EXPECT_THAT(fp.output, HasSubstr("needs train.scheme: qat in the same config"));
}

TEST(DriverTest, BackendThatCannotRunALayerIsRejectedAtValidation) {
  const std::string dir = TmpDir("ptqbad");
  // uint8 activations with per-channel int8 weights: XNNPACK has no such operator.
  Write(dir + "/p.yaml",
        std::string(kPtqBase) +
            "quant:\n"
            "  weights: {bits: 8, symmetric: true, granularity: per_channel, observer: per_channel_minmax}\n"
            "  activations: {bits: 8}\n"
            "ptq: {method: static}\n"
            "evaluate: {backends: [reference, xnnpack]}\n");
  const Result r = RunDriver("--config=" + dir + "/p.yaml --output_dir=" + dir + "/runs");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("evaluate.backends: backend 'xnnpack' cannot run layer 'conv1' (conv2d)"));
  EXPECT_THAT(r.output, HasSubstr("rule:"));
  EXPECT_EQ(CountRunDirs(dir + "/runs"), 0);
  // An op one backend cannot run: int8 average pooling on xnnpack (XNNPACK 2022-02 has qu8 only).
  Write(dir + "/avg.yaml",
        "name: avg\n"
        "dataset: {name: synthetic, image_size: 8}\n"
        "model: {name: sequential, layers: [{type: conv2d, out_channels: 4}, relu, {type: avgpool2d, kernel: 2},"
        " flatten, {type: linear, out_features: 10}]}\n"
        "quant: {weights: {bits: 8, symmetric: true}, activations: {bits: 8, signed: true}}\n"
        "ptq: {method: static}\n"
        "evaluate: {backends: [reference, xnnpack]}\n");
  const Result avg = RunDriver("--validate --config=" + dir + "/avg.yaml");
  EXPECT_EQ(avg.exit_code, 1) << avg.output;
  EXPECT_THAT(avg.output, HasSubstr("backend 'xnnpack' cannot run op 'pool1' (average_pool2d): rule: average_pool2d "
                                    "with int8 activations is not supported"));
  // A layer no backend runs: Hardtanh.
  Write(dir + "/ht.yaml",
        "name: ht\n"
        "dataset: {name: synthetic, image_size: 8}\n"
        "model: {name: sequential, layers: [flatten, {type: linear, out_features: 8}, hardtanh,"
        " {type: linear, out_features: 10}]}\n"
        "quant: {weights: {bits: 8, symmetric: true}, activations: {bits: 8}}\n"
        "ptq: {method: static}\n"
        "evaluate: {backends: [reference]}\n");
  const Result ht = RunDriver("--validate --config=" + dir + "/ht.yaml");
  EXPECT_EQ(ht.exit_code, 1) << ht.output;
  EXPECT_THAT(ht.output, HasSubstr("node 2 'hardtanh1' (Hardtanh("));
  EXPECT_THAT(ht.output, HasSubstr("no backend can run it: only ReLU and ReLU6 are fused"));
  // PTQ without specs; evaluate without an integer model; an unknown backend.
  Write(dir + "/noquant.yaml", std::string(kPtqBase) + "ptq: {method: static}\n");
  EXPECT_THAT(RunDriver("--validate --config=" + dir + "/noquant.yaml").output,
              HasSubstr("PTQ needs a `quant:` section"));
  Write(dir + "/dyn.yaml", std::string(kPtqBase) +
                               "quant: {weights: {bits: 8, symmetric: true}, activations: {bits: 8}}\n"
                               "ptq: {method: dynamic}\nevaluate: {backends: [reference]}\n");
  EXPECT_THAT(RunDriver("--validate --config=" + dir + "/dyn.yaml").output,
              HasSubstr("evaluate runs the integer model of `ptq: {method: static}`"));
  Write(dir + "/unk.yaml", std::string(kPtqBase) +
                               "quant: {weights: {bits: 8, symmetric: true}, activations: {bits: 8}}\n"
                               "ptq: {method: static}\nevaluate: {backends: [referense]}\n");
  EXPECT_THAT(RunDriver("--validate --config=" + dir + "/unk.yaml").output,
              HasSubstr("unknown backend 'referense'"));
}

TEST(DriverTest, WeightOnlyAndDynamicPtqReportAccuracy) {
  const std::string dir = TmpDir("ptqwo");
  for (const char* method : {"weight_only", "dynamic"}) {
    Write(dir + "/" + method + ".yaml",
          std::string(kPtqBase) +
              "quant:\n"
              "  weights: {bits: 4, symmetric: true, granularity: per_channel}\n"
              "  activations: {bits: 8}\n"
              "  overrides: [{match: 'fc.*', weights: {granularity: per_block, axis: 1, block_size: 4}}]\n"
              "ptq: {method: " + method + "}\n");
    const Result r = RunDriver("--config=" + dir + "/" + method + ".yaml --output_dir=" + dir + "/runs_" + method);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const fs::path run = OnlyRun(dir + "/runs_" + method);
    auto record = ReadRecordJson((run / "result.json").string());
    ASSERT_TRUE(record.ok()) << record.status();
    EXPECT_GT(record->metrics().at("ptq_test_accuracy"), 0.5) << method;
    EXPECT_NEAR(record->metrics().at("ptq_test_accuracy"), record->metrics().at("ptq_float_test_accuracy"), 0.1)
        << method;
    EXPECT_GT(record->metrics().at("ptq_model_bytes"), 0) << method;
    EXPECT_EQ(record->backends_size(), 0);
  }
}

TEST(DriverTest, ListShowsRegistriesWithParameters) {
  const Result r = RunDriver("--list");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("dataset:"));
  EXPECT_THAT(r.output, HasSubstr("fashion_mnist"));
  EXPECT_THAT(r.output, HasSubstr("train_limit"));
  EXPECT_THAT(r.output, HasSubstr("integer in [0, 60000]; default 0."));
  for (const char* kind : {"model:", "scheme:", "optimizer:", "schedule:", "ptq:", "backend:"}) {
    EXPECT_THAT(r.output, HasSubstr(kind));
  }
}

}  // namespace
}  // namespace quant
