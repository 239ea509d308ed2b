// The quantlab driver:
//
//   bazel run //experiments:run -- --config=configs/quickstart.yaml
//   bazel run //experiments:run -- --config=configs/sweep.yaml --jobs=2
//   bazel run //experiments:run -- --config=x.yaml --set train.epochs=1 --validate
//   bazel run //experiments:run -- --list
//
// A config with several experiments (a sweep) runs each in its own worker
// process, --jobs at a time; runs whose record already says OK are skipped, a
// failing run is recorded and the others go on, and a summary table ends it.
//
// Several drivers may share an output dir: each experiment runs under the lock
// of its run directory (experiments/run_lock.h), so a member another driver is
// running is waited for and its record used, never run beside it. Workers die
// with their driver (kill -9 included), so a re-run finds no orphan at work.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "experiments/config_loader.h"
#include "experiments/experiment.h"
#include "experiments/record.h"
#include "experiments/run_lock.h"
#include "quant/core/registry.h"

ABSL_FLAG(std::string, config, "", "experiment or sweep YAML file");
ABSL_FLAG(bool, validate, false, "load and check the config, print the resolved config and plan, run nothing");
ABSL_FLAG(bool, list, false, "list every registry with each plugin's parameters and defaults");
ABSL_FLAG(std::string, output_dir, "", "results directory (overrides output.dir)");
ABSL_FLAG(std::string, seed, "", "overrides the config's seed, a non-negative integer (same as --set seed=N)");
ABSL_FLAG(int, jobs, 1, "experiments of a sweep run at once, each in its own process");
ABSL_FLAG(int, threads, 1, "intra-op threads per experiment (at most the machine's hardware threads)");
ABSL_FLAG(bool, oversubscribe, false, "allow --threads and --jobs * --threads beyond the hardware threads");
ABSL_FLAG(bool, force, false, "re-run experiments whose record already says OK");

namespace quant {
namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

void PrintList() {
  for (const auto& [kind, plugins] : RegistryIndex::Get().DescribeAll()) {
    std::printf("%s:\n", kind.c_str());
    for (const PluginDescription& p : plugins) {
      std::printf("  %-24s %s\n", p.name.c_str(), p.help.c_str());
      for (const ParamInfo& param : p.params) {
        std::string def = param.required ? "required" : "default " + param.default_value;
        std::printf("      %-22s %s; %s. %s\n", param.key.c_str(), param.type.c_str(), def.c_str(),
                    param.help.c_str());
      }
    }
  }
}

// --set may repeat and its values may hold commas, so it is taken out of argv
// before Abseil parses the rest.
std::vector<std::string> ExtractSets(int* argc, char** argv) {
  std::vector<std::string> sets;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--set" && i + 1 < *argc) {
      sets.push_back(argv[++i]);
    } else if (arg.rfind("--set=", 0) == 0) {
      sets.push_back(arg.substr(6));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return sets;
}

struct Outcome {
  std::string name;
  std::string config_id;
  std::string status;  // ok, failed, skipped, elsewhere (run by another process), running (elsewhere, still)
  double seconds = 0;
  std::string summary;  // key metric or error
};

// Exit code of a worker that did not run its member because another process ran
// it (it waited for that run, or found it finished): the record on disk is that run's.
constexpr int kWorkerUsedAnotherRun = 10;
// Exit code of a worker whose driver was gone before the worker could tie its life to it.
constexpr int kWorkerOrphaned = 11;

std::string Summarise(const quantlab::ResultRecord& r) {
  if (r.status() != quantlab::ResultRecord::OK) return r.error();
  std::string s;
  // Sorted: a protobuf map iterates in no fixed order.
  const std::map<std::string, double> metrics(r.metrics().begin(), r.metrics().end());
  for (const auto& [k, v] : metrics) absl::StrAppend(&s, s.empty() ? "" : ", ", k, " ", v);
  for (const auto& b : r.backends()) {
    absl::StrAppend(&s, s.empty() ? "" : ", ", b.backend(), " ",
                    absl::StrFormat("%.2f%%", 100 * b.test_accuracy()));
  }
  if (s.empty() && r.not_available_size() > 0) s = "partial: some sections not available yet";
  return s;
}

Outcome FromRecord(const quantlab::ResultRecord& r, const char* status) {
  return Outcome{r.name(), r.config_id(), status, r.wall_seconds(), Summarise(r)};
}

// Points <output_dir>/<name> at the run directory <name>-<config_id> of the
// latest successful run of that experiment, so that configs can start from
// another config's checkpoint by a path that survives edits of that config
// (e.g. train.init_from: runs/mlp_fp32/model.pb). Replaced atomically.
void LinkLatest(const ExperimentPlan& plan) {
  namespace fs = std::filesystem;
  const fs::path run_dir(plan.run_dir);
  if (plan.spec.name.find('/') != std::string::npos) return;
  const fs::path link = run_dir.parent_path() / plan.spec.name;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(link, ec)) && !fs::is_symlink(fs::symlink_status(link, ec))) {
    std::fprintf(stderr, "warning: %s exists and is not a symlink; not pointing it at %s\n",
                 link.c_str(), plan.run_dir.c_str());
    return;
  }
  // A name of this process and call: two drivers linking the same name at once
  // must not create, rename or remove each other's temporary link.
  static std::atomic<uint64_t> counter{0};
  const fs::path tmp = absl::StrCat(link.string(), ".tmp-link.", getpid(), ".", counter++);
  fs::create_directory_symlink(run_dir.filename(), tmp, ec);
  if (!ec) fs::rename(tmp, link, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    std::fprintf(stderr, "warning: cannot link %s: %s\n", link.c_str(), ec.message().c_str());
  }
}

struct LockedRun {
  quantlab::ResultRecord record;
  bool elsewhere = false;  // the record is another process's run, not this one's
};

// Runs the plan while holding its run directory's lock, so no other driver runs
// or writes this experiment meanwhile. If another live process holds the lock,
// says so and waits for it, then uses that run's record rather than running
// again (with --force too: the run waited for is as fresh as a forced one, and
// so is a run that began after `started`, when this driver started). Without
// --force a finished record found once the lock is ours is used as well:
// another driver finished the member after this one looked. A record missing
// once the lock is free means its run died (a killed driver): run it.
// `quiet`: the run's log goes to log.txt in the run directory (only once the
// lock is ours: the holder's log is not to be truncated).
LockedRun RunUnderLock(ExperimentPlan& plan, bool force, bool quiet,
                       std::chrono::system_clock::time_point started) {
  LockedRun out;
  auto lock = RunLock::TryAcquire(plan.run_dir);
  if (!lock.ok()) {
    out.record.set_name(plan.spec.name);
    out.record.set_config_id(plan.spec.config_id);
    out.record.set_status(quantlab::ResultRecord::FAILED);
    out.record.set_error(std::string(lock.status().message()));
    return out;
  }
  const bool waited = !lock->held();
  if (waited) {
    const std::string holder = lock->Holder();
    std::printf("[%s] running elsewhere (%s); waiting for it to finish\n", plan.spec.name.c_str(),
                holder.empty() ? "another process" : ("pid " + holder).c_str());
    std::fflush(stdout);
    if (absl::Status s = lock->Wait(); !s.ok()) {
      out.record.set_name(plan.spec.name);
      out.record.set_config_id(plan.spec.config_id);
      out.record.set_status(quantlab::ResultRecord::FAILED);
      out.record.set_error(std::string(s.message()));
      return out;
    }
  }
  const bool fresh = lock->LastRunStart() >= started;
  if (waited || fresh || !force) {
    auto done = ReadRunRecord(plan.run_dir, plan.spec.config_id);
    if (done.ok() && (waited || fresh || done->status() == quantlab::ResultRecord::OK)) {
      out.record = *std::move(done);
      out.elsewhere = true;
      return out;
    }
  }
  // Temporaries of atomic writes left by a run killed mid-write: nobody else
  // writes here while the lock is ours.
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(plan.run_dir, ec)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) std::filesystem::remove(e.path(), ec);
  }
  lock->MarkRunning();
  if (quiet) {
    const std::string log = plan.run_dir + "/log.txt";
    if (std::freopen(log.c_str(), "w", stderr) == nullptr) _exit(3);
  }
  out.record = Run(plan);
  return out;
}

// Runs one experiment in a forked worker; its record is read back from disk.
pid_t StartWorker(ExperimentPlan& plan, bool force, bool quiet, std::chrono::system_clock::time_point started) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t driver = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;
  // The worker dies with its driver, however the driver ends (kill -9 too):
  // an orphan would go on writing into a run directory that a re-run of the
  // sweep takes over. The parent check closes the race of a driver that died
  // between fork() and prctl() (the worker would then never get the signal).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != driver) _exit(kWorkerOrphaned);
  const LockedRun r = RunUnderLock(plan, force, quiet, started);
  std::fflush(stdout);
  std::fflush(stderr);
  if (r.elsewhere) _exit(kWorkerUsedAnotherRun);
  _exit(r.record.status() == quantlab::ResultRecord::OK ? 0 : 1);
}

Outcome FromDisk(const quantlab::ResultRecord& r, bool elsewhere) {
  Outcome o = FromRecord(r, r.status() != quantlab::ResultRecord::OK ? "failed" : elsewhere ? "elsewhere" : "ok");
  if (elsewhere) o.summary = "run by another process: " + o.summary;
  return o;
}

// The temporaries of WriteFileAtomically that worker `pid` left in `run_dir` when it died
// mid-write ("<file>.tmp.<pid>.<n>": only its own, never another process's).
void RemoveTemporariesOf(const std::string& run_dir, pid_t pid) {
  const std::string mark = absl::StrCat(".tmp.", pid, ".");
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(run_dir, ec)) {
    if (absl::StrContains(e.path().filename().string(), mark)) std::filesystem::remove(e.path(), ec);
  }
}

Outcome CollectWorker(const ExperimentPlan& plan, pid_t pid, int wait_status) {
  if (!WIFEXITED(wait_status) || WEXITSTATUS(wait_status) != 0) RemoveTemporariesOf(plan.run_dir, pid);
  const bool elsewhere = WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == kWorkerUsedAnotherRun;
  auto r = ReadRunRecord(plan.run_dir, plan.spec.config_id);
  if (r.ok()) return FromDisk(*r, elsewhere);
  // The worker died without a record (a crash): record that, so the run does
  // not look complete and the batch reports it; under the run's lock, as the
  // record is written only by whoever holds it: another driver may be running
  // the experiment by now, or have finished it.
  auto lock = RunLock::TryAcquire(plan.run_dir);
  if (lock.ok() && !lock->held()) {
    return Outcome{plan.spec.name, plan.spec.config_id, "running", 0, "running in another process"};
  }
  if (lock.ok()) {
    r = ReadRunRecord(plan.run_dir, plan.spec.config_id);
    if (r.ok()) return FromDisk(*r, true);
  }
  quantlab::ResultRecord dead;
  dead.set_name(plan.spec.name);
  dead.set_config_id(plan.spec.config_id);
  dead.set_seed(plan.seed);
  dead.set_status(quantlab::ResultRecord::FAILED);
  dead.set_error(WIFSIGNALED(wait_status)
                     ? absl::StrCat("worker killed by signal ", WTERMSIG(wait_status),
                                    " (see log.txt in the run directory)")
                     : absl::StrCat("worker exited with code ", WEXITSTATUS(wait_status),
                                    " without writing a record"));
  if (lock.ok()) (void)WriteRecord(plan.run_dir, dead);
  return FromRecord(dead, "failed");
}

// What the disk says of a member at the end of the sweep: another driver may
// have re-run (or be re-running) it since this one saw it, and the summary
// must be what is on disk, not what this driver saw on the way.
Outcome Reread(const ExperimentPlan& plan, const Outcome& seen) {
  auto r = ReadRunRecord(plan.run_dir, plan.spec.config_id);
  if (r.ok()) {
    if (seen.status == "skipped" && r->status() == quantlab::ResultRecord::OK) return FromRecord(*r, "skipped");
    // Only "ok" and "failed" are runs of this driver; any other record here is another process's.
    return FromDisk(*r, seen.status != "ok" && seen.status != "failed");
  }
  if (RunLock::HeldElsewhere(plan.run_dir)) {
    // Another driver runs it now (e.g. a --force re-run that began after ours): wait for
    // that run, so that the summary says what the disk holds when this driver ends.
    auto lock = RunLock::TryAcquire(plan.run_dir);
    if (lock.ok() && (lock->held() || lock->Wait().ok())) {
      r = ReadRunRecord(plan.run_dir, plan.spec.config_id);
      if (r.ok()) return FromDisk(*r, true);
    }
    if (RunLock::HeldElsewhere(plan.run_dir)) {
      return Outcome{plan.spec.name, plan.spec.config_id, "running", 0, "no record yet: running in another process"};
    }
  }
  return Outcome{plan.spec.name, plan.spec.config_id, "failed", seen.seconds, std::string(r.status().message())};
}

void PrintSummary(const std::vector<Outcome>& outcomes, size_t duplicates) {
  int ok = 0, failed = 0, skipped = 0, elsewhere = 0, running = 0;
  std::printf("\n%-48s %-16s %-8s %9s  %s\n", "experiment", "id", "status", "seconds", "result");
  for (const Outcome& o : outcomes) {
    std::printf("%-48s %-16s %-8s %9.1f  %s\n", o.name.c_str(), o.config_id.c_str(),
                o.status.c_str(), o.seconds, o.summary.c_str());
    if (o.status == "ok") ++ok;
    if (o.status == "failed") ++failed;
    if (o.status == "skipped") ++skipped;
    if (o.status == "elsewhere") ++elsewhere;
    if (o.status == "running") ++running;
  }
  std::string more;
  if (elsewhere > 0) absl::StrAppend(&more, ", ", elsewhere, " ok, run by another process");
  if (running > 0) absl::StrAppend(&more, ", ", running, " still running in another process");
  if (duplicates > 0) absl::StrAppend(&more, ", ", duplicates, " duplicate member(s) not run again");
  std::printf("%zu experiments: %d ran ok, %d failed, %d skipped (already done)%s\n",
              outcomes.size(), ok, failed, skipped, more.c_str());
}

int Main(int argc, char** argv) {
  const auto started = std::chrono::system_clock::now();
  // A file-size limit (ulimit -f) would otherwise kill the process with SIGXFSZ mid-write, leaving
  // a temporary behind and no record; ignored, the write fails with EFBIG, WriteFileAtomically
  // removes its temporary and the run fails with an error naming the file.
  signal(SIGXFSZ, SIG_IGN);
  absl::SetProgramUsageMessage(
      "quantlab experiment driver: --config=FILE [--set key.path=value ...] [--validate] "
      "[--jobs=N] [--output_dir=DIR] [--seed=N] [--threads=N] | --list");
  std::vector<std::string> sets = ExtractSets(&argc, argv);
  absl::ParseCommandLine(argc, argv);
  // Under `bazel run`, relative paths mean the user's working directory.
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd) {
    if (chdir(wd) != 0) std::fprintf(stderr, "warning: cannot enter %s\n", wd);
  }
  if (absl::GetFlag(FLAGS_list)) {
    PrintList();
    return 0;
  }
  const std::string config = absl::GetFlag(FLAGS_config);
  if (config.empty()) {
    return Fail(absl::InvalidArgumentError(
        "no experiment given: pass --config=FILE (for example --config=configs/quickstart.yaml), "
        "or --list to see the plugins"));
  }
  if (const std::string seed = absl::GetFlag(FLAGS_seed); !seed.empty()) {
    uint64_t value = 0;
    if (seed[0] == '-' || seed[0] == '+' || !absl::SimpleAtoi(seed, &value) || value > uint64_t{INT64_MAX}) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--seed=", seed, ": expected a non-negative integer (at most ", INT64_MAX, ")")));
    }
    sets.push_back(absl::StrCat("seed=", value));
  }
  const int jobs = absl::GetFlag(FLAGS_jobs);
  const int threads = absl::GetFlag(FLAGS_threads);
  if (jobs < 1 || threads < 1) {
    return Fail(absl::InvalidArgumentError("--jobs and --threads must be at least 1"));
  }
  // More threads than the machine has only slows every experiment down (and a
  // typo like --threads=100000 would start that many): refuse unless asked.
  const int64_t hardware = std::max(1u, std::thread::hardware_concurrency());
  if (!absl::GetFlag(FLAGS_oversubscribe) && (threads > hardware || int64_t{jobs} * threads > 4 * hardware)) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "--jobs=", jobs, " --threads=", threads, ": this machine has ", hardware,
        " hardware threads; use --threads <= ", hardware, " and --jobs * --threads <= ", 4 * hardware,
        ", or pass --oversubscribe")));
  }

  auto specs = LoadExperiments(config, sets);
  if (!specs.ok()) return Fail(specs.status());

  // Every experiment is checked before any runs: a typo in the 9th of 12 is
  // found now, not an hour from now.
  RunOptions options{absl::GetFlag(FLAGS_output_dir), threads};
  std::vector<ExperimentPlan> plans;
  for (ExperimentSpec& spec : *specs) {
    auto plan = Validate(std::move(spec), options);
    if (!plan.ok()) return Fail(plan.status());
    plans.push_back(std::move(plan).value());
  }

  if (absl::GetFlag(FLAGS_validate)) {
    for (const ExperimentPlan& plan : plans) {
      std::printf("# resolved config of %s\n%s", plan.spec.name.c_str(),
                  EmitYaml(plan.spec.root).c_str());
      std::printf("# plan\n%s\n", DescribePlan(plan).c_str());
    }
    std::printf("%s: %zu experiment(s) valid\n", config.c_str(), plans.size());
    return 0;
  }

  // The same experiment twice in a sweep (the same resolved config, so the
  // same run directory and results) runs once: two workers of one driver
  // would otherwise run it side by side, or one after the other for nothing.
  const bool batch = plans.size() > 1;
  size_t duplicates = 0;
  {
    std::map<std::string, size_t> first_member;  // config id -> member number
    std::vector<ExperimentPlan> distinct;
    for (size_t i = 0; i < plans.size(); ++i) {
      const auto [first, fresh] = first_member.emplace(plans[i].spec.config_id, i + 1);
      if (fresh) {
        distinct.push_back(std::move(plans[i]));
        continue;
      }
      ++duplicates;
      std::printf("%s: %s (member %zu) is the same experiment as member %zu (config id %s): run once\n",
                  config.c_str(), plans[i].spec.name.c_str(), i + 1, first->second, plans[i].spec.config_id.c_str());
    }
    plans = std::move(distinct);
  }

  if (!batch) {
    std::fprintf(stderr, "%s", DescribePlan(plans[0]).c_str());
    // A single experiment always runs (force), in this process, under its lock.
    const LockedRun locked = RunUnderLock(plans[0], /*force=*/true, /*quiet=*/false, started);
    const quantlab::ResultRecord& r = locked.record;
    const std::string record_path = plans[0].run_dir + "/result.json";
    std::error_code ec;
    if (std::filesystem::exists(record_path, ec)) {
      std::printf("%s: %s (%.1f s%s) -> %s\n", r.name().c_str(),
                  r.status() == quantlab::ResultRecord::OK ? "ok" : "FAILED", r.wall_seconds(),
                  locked.elsewhere ? ", run by another process" : "", record_path.c_str());
    } else {
      std::printf("%s: FAILED (%.1f s), no record written\n", r.name().c_str(), r.wall_seconds());
    }
    if (r.status() != quantlab::ResultRecord::OK) {
      std::fprintf(stderr, "error: %s\n", r.error().c_str());
      return 1;
    }
    LinkLatest(plans[0]);
    for (const std::string& n : r.not_available()) std::printf("not run: %s\n", n.c_str());
    return 0;
  }

  // A batch: skip finished runs, run the rest in worker processes.
  std::vector<Outcome> outcomes(plans.size());
  std::vector<size_t> todo;
  const bool force = absl::GetFlag(FLAGS_force);
  for (size_t i = 0; i < plans.size(); ++i) {
    auto done = ReadRunRecord(plans[i].run_dir, plans[i].spec.config_id);
    if (!force && done.ok() && done->status() == quantlab::ResultRecord::OK) {
      outcomes[i] = FromRecord(*done, "skipped");
      LinkLatest(plans[i]);
      continue;
    }
    // A record that is there but does not count: say why the member runs again.
    if (!force && !done.ok() && !absl::IsNotFound(done.status())) {
      std::printf("%s; running it again\n", std::string(done.status().message()).c_str());
    }
    todo.push_back(i);
  }
  std::printf("%s: %zu experiments, %zu already done, running %zu with --jobs=%d\n", config.c_str(),
              plans.size(), plans.size() - todo.size(), todo.size(), jobs);
  std::map<pid_t, size_t> running;
  size_t next = 0, finished = 0;
  const bool quiet = jobs > 1;  // parallel workers log to their run directory
  while (finished < todo.size()) {
    while (running.size() < static_cast<size_t>(jobs) && next < todo.size()) {
      const size_t i = todo[next++];
      std::printf("[start %zu/%zu] %s\n", next, todo.size(), plans[i].spec.name.c_str());
      std::fflush(stdout);
      const pid_t pid = StartWorker(plans[i], force, quiet, started);
      if (pid < 0) return Fail(absl::ResourceExhaustedError("fork failed"));
      running[pid] = i;
    }
    int wait_status = 0;
    const pid_t pid = wait(&wait_status);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const size_t i = it->second;
    running.erase(it);
    outcomes[i] = CollectWorker(plans[i], pid, wait_status);
    if (outcomes[i].status == "ok" || outcomes[i].status == "elsewhere") LinkLatest(plans[i]);
    ++finished;
    std::printf("[done %zu/%zu] %s: %s (%.1f s) %s\n", finished, todo.size(),
                outcomes[i].name.c_str(), outcomes[i].status.c_str(), outcomes[i].seconds,
                outcomes[i].summary.c_str());
    std::fflush(stdout);
  }
  for (size_t i = 0; i < plans.size(); ++i) outcomes[i] = Reread(plans[i], outcomes[i]);
  PrintSummary(outcomes, duplicates);
  for (const Outcome& o : outcomes) {
    if (o.status == "failed") return 1;
  }
  return 0;
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) { return quant::Main(argc, argv); }
