// End-to-end tests of //experiments:run when several drivers share one output
// dir, when a driver is killed with SIGKILL mid-sweep, and when a sweep holds
// the same experiment twice: the binary is run as a user would.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "experiments/record.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/experiments/driver_test_util.h"

namespace quant {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

using driver_test::Finish;
using driver_test::Read;
using driver_test::Result;
using driver_test::RunDirs;
using driver_test::RunDriver;
using driver_test::StartDriver;
using driver_test::TmpDir;
using driver_test::Write;

// Run directories whose record parses, says OK and carries the directory's config id.
int OkRecords(const std::string& dir) {
  int ok = 0;
  for (const fs::path& run : RunDirs(dir)) {
    auto r = ReadRecordJson((run / "result.json").string());
    ok += r.ok() && r->status() == quantlab::ResultRecord::OK &&
          absl::EndsWith(run.filename().string(), "-" + r->config_id());
  }
  return ok;
}

// Files named like a temporary of an atomic write anywhere below `dir`.
std::vector<std::string> Temporaries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (absl::StrContains(e.path().filename().string(), ".tmp")) out.push_back(e.path().string());
  }
  return out;
}

void ExpectDatabaseMatchesDisk(const std::string& out_dir);

// Every summary row ("<name> <id> <status> <seconds> <metrics...>") agrees with the
// record on disk: ok/skipped/elsewhere rows have an OK record, failed rows do not.
void ExpectSummaryMatchesDisk(const std::string& output, const std::string& out_dir, int members) {
  int rows = 0;
  bool table = false;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::StartsWith(line, "experiment ") && absl::StrContains(line, " status ")) {
      table = true;
      continue;
    }
    if (table && line.empty()) break;  // the member table ends; the seed groups follow
    if (!table || absl::StrContains(line, " experiments: ")) continue;
    const std::vector<std::string> cols = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (cols.size() < 4) continue;
    ++rows;
    auto r = ReadRecordJson(out_dir + "/" + cols[0] + "-" + cols[1] + "/result.json");
    const bool ok_on_disk = r.ok() && r->status() == quantlab::ResultRecord::OK;
    const bool ok_in_summary = cols[2] == "ok" || cols[2] == "skipped" || cols[2] == "elsewhere";
    EXPECT_EQ(ok_on_disk, ok_in_summary) << cols[0] << " is '" << cols[2] << "' in the summary:\n" << output;
  }
  EXPECT_EQ(rows, members) << output;
  ExpectDatabaseMatchesDisk(out_dir);
}

// The results database of `out_dir` holds every record on disk exactly once, the same
// attempt (start time) and status, and nothing else.
void ExpectDatabaseMatchesDisk(const std::string& out_dir) {
  std::map<std::string, std::pair<std::string, std::string>> on_disk;  // run -> (start time, status)
  for (const auto& e : fs::directory_iterator(out_dir)) {
    if (e.is_symlink() || !e.is_directory()) continue;
    auto r = ReadRecordJson((e.path() / "result.json").string());
    if (!r.ok()) continue;
    on_disk[e.path().filename().string()] = {r->start_time(),
                                             r->status() == quantlab::ResultRecord::OK ? "OK" : "FAILED"};
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((out_dir + "/results.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK)
      << out_dir;
  sqlite3_stmt* q = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT run, start_time, status FROM runs", -1, &q, nullptr), SQLITE_OK);
  std::map<std::string, std::pair<std::string, std::string>> in_db;
  while (sqlite3_step(q) == SQLITE_ROW) {
    auto text = [&](int c) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(q, c))); };
    EXPECT_TRUE(in_db.emplace(text(0), std::make_pair(text(1), text(2))).second) << "twice: " << text(0);
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  EXPECT_EQ(in_db, on_disk);
}

// "N experiments: A ran ok, ..." -> A
int RanOk(const std::string& output) {
  const size_t at = output.find(" experiments: ");
  if (at == std::string::npos) return -1;
  int n = -1;
  const std::string rest = output.substr(at + 14);
  (void)absl::SimpleAtoi(rest.substr(0, rest.find(' ')), &n);
  return n;
}

// Live processes (not zombies) whose command line mentions `needle`: the
// driver and its workers, which are forks of it with the same arguments.
std::vector<pid_t> ProcessesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    int pid = 0;
    if (!absl::SimpleAtoi(e.path().filename().string(), &pid) || pid == getpid()) continue;
    std::string cmdline = Read(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (!absl::StrContains(cmdline, needle) || !absl::StrContains(cmdline, "experiments/run")) continue;
    const std::string stat = Read(e.path() / "stat");  // "pid (comm) S ..."
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z') continue;
    out.push_back(pid);
  }
  return out;
}

// Eight members, each a short training, so that two drivers started together
// overlap on most of them.
void WriteSweep(const std::string& dir) {
  Write(dir + "/base.yaml",
        "name: c\nseed: 0\n"
        "dataset: {name: synthetic, train_size: 512, test_size: 32, num_classes: 4, image_size: 8}\n"
        "model: {name: mlp}\n"
        "train: {scheme: fp32, epochs: 2, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}\n");
  Write(dir + "/sweep.yaml", "base: base.yaml\nsweep: {seed: [1, 2, 3, 4], dataset.noise: [0.5, 1.0]}\n");
}

// Two drivers at once into one output dir: without --force every member runs
// once (the other driver waits for it or finds its record); with --force no
// member runs twice at once, every record ends OK, each driver's summary is
// what is on disk, and no temporary file is left behind.
TEST(SweepConcurrencyTest, TwoDriversIntoOneDirNeverRunAMemberTwiceAtOnce) {
  const std::string dir = TmpDir("two");
  const std::string out = dir + "/runs";
  WriteSweep(dir);
  const std::string args = "--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out;
  for (int round = 0; round < 5; ++round) {
    const std::string flags = round == 0 ? args : args + " --force";
    FILE* a = StartDriver(flags);
    FILE* b = StartDriver(flags);
    const Result ra = Finish(a);
    const Result rb = Finish(b);
    ASSERT_EQ(ra.exit_code, 0) << "round " << round << ":\n" << ra.output;
    ASSERT_EQ(rb.exit_code, 0) << "round " << round << ":\n" << rb.output;
    EXPECT_EQ(OkRecords(out), 8) << "round " << round;
    EXPECT_EQ(RunDirs(out).size(), 8u);
    if (round == 0) {
      // Nothing was done before: between them the two drivers ran each member exactly once.
      EXPECT_EQ(RanOk(ra.output) + RanOk(rb.output), 8) << ra.output << "\n" << rb.output;
    }
    for (const Result* r : {&ra, &rb}) {
      ExpectSummaryMatchesDisk(r->output, out, 8);
      EXPECT_THAT(r->output, ::testing::Not(HasSubstr("without writing a record")));
      EXPECT_THAT(r->output, ::testing::Not(HasSubstr("warning")));
    }
    EXPECT_THAT(Temporaries(out), ::testing::IsEmpty());
  }
}

// SIGKILL of the driver mid-sweep takes its workers with it; the re-run runs
// exactly the members that had not finished, each to completion, and leaves the
// finished ones untouched.
TEST(SweepConcurrencyTest, KilledDriverLeavesNoWorkerAndTheRerunCompletesEachMemberOnce) {
  const std::string dir = TmpDir("kill");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml",
        "name: k\nseed: 0\n"
        "dataset: {name: synthetic, train_size: 8192, test_size: 32, num_classes: 4, image_size: 16}\n"
        "model: {name: mlp}\n"
        "train: {scheme: fp32, epochs: 40, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}\n");
  Write(dir + "/sweep.yaml", "base: base.yaml\nsweep: {seed: [1, 2, 3, 4]}\n");
  const std::string args = "--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out;

  const pid_t driver = fork();
  ASSERT_GE(driver, 0);
  if (driver == 0) {
    const int log = open((dir + "/first.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(log, 1);
    dup2(log, 2);
    const std::string config = "--config=" + dir + "/sweep.yaml", output = "--output_dir=" + out;
    execl("experiments/run", "experiments/run", config.c_str(), "--jobs=2", output.c_str(), nullptr);
    _exit(127);
  }
  // Mid-sweep: some member finished, others still running.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (OkRecords(out) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const int done_before = OkRecords(out);
  ASSERT_GE(done_before, 1) << Read(dir + "/first.log");
  ASSERT_LT(done_before, 4) << "the sweep finished before it could be interrupted";
  EXPECT_GE(ProcessesMentioning(out).size(), 2u) << "no worker was running";
  ASSERT_EQ(kill(driver, SIGKILL), 0);
  ASSERT_EQ(waitpid(driver, nullptr, 0), driver);

  // No orphan: every worker of the killed driver is gone within a moment (far
  // less than the second or more a member still had to run).
  std::vector<pid_t> left = ProcessesMentioning(out);
  for (int i = 0; i < 15 && !left.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    left = ProcessesMentioning(out);
  }
  EXPECT_THAT(left, ::testing::IsEmpty()) << "workers outlived their driver";
  // What finished is read after the kill: a member may complete between the check above
  // and the signal (records are written atomically, so each is whole or absent).
  std::map<std::string, std::string> finished;  // run dir -> its record
  for (const fs::path& run : RunDirs(out)) {
    auto r = ReadRecordJson((run / "result.json").string());
    if (r.ok() && r->status() == quantlab::ResultRecord::OK) finished[run.string()] = Read(run / "result.json");
  }

  const Result again = RunDriver(args);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  const int finished_before_kill = static_cast<int>(finished.size());
  EXPECT_THAT(again.output, HasSubstr("4 experiments: " + std::to_string(4 - finished_before_kill) + " ran ok, 0 failed, " +
                                      std::to_string(finished_before_kill) + " skipped"));
  EXPECT_THAT(again.output, ::testing::Not(HasSubstr("elsewhere")));
  EXPECT_EQ(OkRecords(out), 4);
  EXPECT_EQ(RunDirs(out).size(), 4u);
  for (const auto& [run, record] : finished) EXPECT_EQ(Read(fs::path(run) / "result.json"), record) << run;
  for (const fs::path& run : RunDirs(out)) {
    auto r = ReadRecordJson((run / "result.json").string());
    ASSERT_TRUE(r.ok()) << run;
    ASSERT_EQ(r->epochs_size(), 40) << run << ": did not run to completion";
  }
  ExpectSummaryMatchesDisk(again.output, out, 4);
  EXPECT_THAT(ProcessesMentioning(out), ::testing::IsEmpty());
}

// SIGKILL of one worker mid-sweep: that member fails with the reason in the summary
// and on disk (a FAILED record, no model), the others finish, the driver exits
// non-zero, and a re-run runs only the killed member.
TEST(SweepConcurrencyTest, KilledWorkerFailsItsMemberOnlyAndTheRerunCompletesIt) {
  const std::string dir = TmpDir("kill_worker");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml",
        "name: w\nseed: 0\n"
        "dataset: {name: synthetic, train_size: 8192, test_size: 32, num_classes: 4, image_size: 16}\n"
        "model: {name: mlp}\n"
        "train: {scheme: fp32, epochs: 40, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}\n");
  Write(dir + "/sweep.yaml", "base: base.yaml\nsweep: {seed: [1, 2, 3]}\n");
  const std::string args = "--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out;
  FILE* first = StartDriver(args);
  // A worker: a fork of the driver, so its parent runs experiments/run too (popen's shell
  // mentions the output dir as well, but is nobody's worker).
  auto argv0_and_parent = [](pid_t pid) {
    std::string cmdline = Read("/proc/" + std::to_string(pid) + "/cmdline");
    const std::string stat = Read("/proc/" + std::to_string(pid) + "/stat");  // "pid (comm) S ppid ..."
    int ppid = -1;
    const size_t paren = stat.rfind(')');
    if (paren != std::string::npos) {
      const std::vector<std::string> f = absl::StrSplit(stat.substr(paren + 2), ' ');
      if (f.size() > 1) (void)absl::SimpleAtoi(f[1], &ppid);
    }
    return std::pair<std::string, int>(cmdline.substr(0, cmdline.find('\0')), ppid);
  };
  auto is_run = [&](pid_t pid) { return absl::EndsWith(argv0_and_parent(pid).first, "experiments/run"); };
  pid_t victim = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (victim < 0 && std::chrono::steady_clock::now() < deadline) {
    for (pid_t p : ProcessesMentioning(out)) {
      if (is_run(p) && is_run(argv0_and_parent(p).second)) victim = p;
    }
    if (victim < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_GT(victim, 0) << "no worker started";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  const Result r = Finish(first);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("worker killed by signal 9"));
  EXPECT_THAT(r.output, HasSubstr("3 experiments: 2 ran ok, 1 failed, 0 skipped"));
  ExpectSummaryMatchesDisk(r.output, out, 3);
  EXPECT_EQ(OkRecords(out), 2);
  EXPECT_THAT(Temporaries(out), ::testing::IsEmpty());
  const Result again = RunDriver(args);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("3 experiments: 1 ran ok, 0 failed, 2 skipped"));
  EXPECT_EQ(OkRecords(out), 3);
}

// A file-size limit (ulimit -f) hit while writing the checkpoint: a clear error naming
// the file, a FAILED record, no temporary left, nothing under model.pb.
TEST(SweepConcurrencyTest, FileSizeLimitFailsTheRunCleanly) {
  const std::string dir = TmpDir("fsize");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml",
        "name: f\nseed: 0\n"
        "dataset: {name: synthetic, train_size: 256, test_size: 32, num_classes: 4, image_size: 16}\n"
        "model: {name: mlp}\n"
        "train: {scheme: fp32, epochs: 1, batch_size: 32, optimizer: {name: sgd, lr: 0.05}}\n");
  // 16 blocks of 1 KiB: the record fits, the 400 KB checkpoint does not.
  const std::string cmd =
      "ulimit -f 16; exec experiments/run --config=" + dir + "/base.yaml --output_dir=" + out + " 2>&1";
  const Result r = Finish(popen(cmd.c_str(), "r"));
  EXPECT_EQ(r.exit_code, 1) << r.output;  // not killed by SIGXFSZ
  EXPECT_THAT(r.output, HasSubstr("model.pb: write failed after"));
  EXPECT_THAT(r.output, HasSubstr("File too large"));
  const std::vector<fs::path> runs = RunDirs(out);
  ASSERT_EQ(runs.size(), 1u);
  auto record = ReadRecordJson((runs[0] / "result.json").string());
  ASSERT_TRUE(record.ok()) << r.output;
  EXPECT_EQ(record->status(), quantlab::ResultRecord::FAILED);
  EXPECT_THAT(record->error(), HasSubstr("File too large"));
  EXPECT_FALSE(fs::exists(runs[0] / "model.pb"));
  EXPECT_THAT(Temporaries(out), ::testing::IsEmpty());
}

// A record counts as finished only if it parses and carries the member's config
// id; otherwise the member runs again and the driver says why.
TEST(SweepConcurrencyTest, RecordThatDoesNotParseOrIsOfAnotherConfigIsRerun) {
  const std::string dir = TmpDir("stale");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml", "name: s\nseed: 0\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n");
  Write(dir + "/sweep.yaml", "base: base.yaml\nsweep: {seed: [1, 2, 3]}\n");
  const std::string args = "--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out;
  const Result first = RunDriver(args);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  const std::vector<fs::path> runs = RunDirs(out);
  ASSERT_EQ(runs.size(), 3u);
  // Run 0 gets run 1's (OK) record, run 1 a truncated one; run 2 stays finished.
  fs::copy_file(runs[1] / "result.json", runs[0] / "result.json", fs::copy_options::overwrite_existing);
  const std::string json = Read(runs[1] / "result.json");
  Write((runs[1] / "result.json").string(), json.substr(0, json.size() / 2));
  const Result again = RunDriver(args);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("3 experiments: 2 ran ok, 0 failed, 1 skipped"));
  EXPECT_THAT(again.output, HasSubstr((runs[0] / "result.json").string() + ": the record's config_id"));
  EXPECT_THAT(again.output, HasSubstr((runs[1] / "result.json").string() + ": not a valid result record"));
  EXPECT_EQ(OkRecords(out), 3);
}

// The same experiment twice in one sweep (same resolved config id) runs once.
TEST(SweepConcurrencyTest, DuplicateMembersRunOnce) {
  const std::string dir = TmpDir("dup");
  const std::string out = dir + "/runs";
  Write(dir + "/base.yaml", "name: d\nseed: 0\ndataset: {name: synthetic, train_size: 64, test_size: 16}\n");
  Write(dir + "/sweep.yaml", "base: base.yaml\nsweep: {seed: [1, 2, 1, 1]}\n");
  const Result r = RunDriver("--config=" + dir + "/sweep.yaml --jobs=2 --output_dir=" + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("d__seed=1 (member 3) is the same experiment as member 1"));
  EXPECT_THAT(r.output, HasSubstr("d__seed=1 (member 4) is the same experiment as member 1"));
  EXPECT_THAT(r.output, HasSubstr("2 experiments: 2 ran ok, 0 failed, 0 skipped"));
  EXPECT_EQ(RunDirs(out).size(), 2u);
  EXPECT_EQ(OkRecords(out), 2);
  ExpectSummaryMatchesDisk(r.output, out, 2);
}

}  // namespace
}  // namespace quant
