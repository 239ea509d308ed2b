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
#include <optional>
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
#include "experiments/results_db.h"
#include "experiments/run_lock.h"
#include "experiments/sweep_summary.h"
#include "quant/core/registry.h"
#include "quant/nn/model.h"

ABSL_FLAG(std::string, config, "", "experiment or sweep YAML file");
ABSL_FLAG(bool, validate, false, "load and check the config, print the resolved config and plan, run nothing");
ABSL_FLAG(bool, list, false, "list every registry with each plugin's parameters and defaults");
ABSL_FLAG(std::string, output_dir, "", "results directory (overrides output.dir)");
ABSL_FLAG(std::string, seed, "", "overrides the config's seed, a non-negative integer (same as --set seed=N)");
ABSL_FLAG(int, jobs, 1, "experiments of a sweep run at once, each in its own process");
ABSL_FLAG(int, threads, 1, "intra-op threads per experiment (at most the machine's hardware threads)");
ABSL_FLAG(bool, oversubscribe, false, "allow --threads and --jobs * --threads beyond the hardware threads");
ABSL_FLAG(bool, force, false, "re-run experiments whose record already says OK");
ABSL_FLAG(std::string, shard, "",
          "I/N: run only members I, I+N, I+2N, ... (0-based, in the config's order) and what they start from");
ABSL_FLAG(bool, slurm, false,
          "write an sbatch job-array script (one task per shard, --jobs per task) into <output_dir>/slurm/ and "
          "say how to submit it; runs nothing");
ABSL_FLAG(int, shards, 0, "with --slurm: the number of array tasks (default: the members, at most 8)");

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
    if (kind == nn::Model::kRegistryKind) {
      std::printf("  %-24s %s\n", "(every model)", "keys any `model:` section takes");
      std::printf("      %-22s %s; %s. %s\n", "winograd", "boolean (true/false)", "default false", nn::kWinogradHelp);
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

// Writes the record of `plan`'s run into <output_dir>/results.db. A database that cannot
// be written is a warning, not a failed run: the record on disk is the source of truth,
// and the next driver over this output dir imports what the database misses.
void StoreInDatabase(const ExperimentPlan& plan, const quantlab::ResultRecord& record) {
  auto db = ResultsDb::Open(plan.output_dir + "/" + kResultsDbFile);
  absl::Status s = db.ok() ? db->Insert(record, plan.run_dir, EmitYaml(plan.spec.root)) : db.status();
  if (!s.ok()) std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
}

// The records on disk (each plan's, already read) that the databases of their output dirs
// miss (a worker killed between writing its record and the database, a run of an older
// build): imported.
void SyncDatabases(const std::vector<std::pair<const ExperimentPlan*, const quantlab::ResultRecord*>>& runs) {
  std::map<std::string, std::optional<ResultsDb>> open;
  for (const auto& [plan, record] : runs) {
    auto& db = open[plan->output_dir];
    if (!db.has_value()) {
      auto opened = ResultsDb::Open(plan->output_dir + "/" + kResultsDbFile);
      if (!opened.ok()) {
        std::fprintf(stderr, "warning: %s\n", std::string(opened.status().message()).c_str());
        continue;
      }
      db.emplace(*std::move(opened));
    }
    auto has = db->Has(plan->run_dir, record->start_time());
    absl::Status s = has.ok() ? absl::OkStatus() : has.status();
    if (s.ok() && !*has) s = db->Insert(*record, plan->run_dir, EmitYaml(plan->spec.root));
    if (!s.ok()) std::fprintf(stderr, "warning: %s\n", std::string(s.message()).c_str());
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
  StoreInDatabase(plan, out.record);
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

// --shard=I/N -> (I, N); "" -> (0, 1).
absl::StatusOr<std::pair<size_t, size_t>> ParseShard(const std::string& text) {
  if (text.empty()) return std::make_pair(size_t{0}, size_t{1});
  const size_t slash = text.find('/');
  uint64_t i = 0, n = 0;
  if (slash == std::string::npos || !absl::SimpleAtoi(text.substr(0, slash), &i) ||
      !absl::SimpleAtoi(text.substr(slash + 1), &n) || n == 0 || i >= n || n > 100000) {
    return absl::InvalidArgumentError(absl::StrCat("--shard=", text, ": expected I/N with 0 <= I < N (e.g. 0/3)"));
  }
  return std::make_pair(static_cast<size_t>(i), static_cast<size_t>(n));
}

// A shell word: 'text' with every ' written as '\''.
std::string ShellQuote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// --slurm: an sbatch job array, task k running --shard=k/N of this sweep with the same
// flags. Resumable: a task re-run (or the array re-submitted) skips what has an OK record;
// every task writes into the one output dir and its results database.
bool WriteSlurmScript(int argc, char** argv, const std::string& config, const std::vector<std::string>& sets,
                      const std::vector<ExperimentSpec>& specs) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string output_dir = absl::GetFlag(FLAGS_output_dir);
  if (output_dir.empty()) {
    const YAML::Node dir = specs.front().root["output"].IsMap() ? specs.front().root["output"]["dir"] : YAML::Node();
    output_dir = dir.IsScalar() && !dir.Scalar().empty() ? dir.Scalar() : "runs";
  }
  const std::string out = fs::absolute(output_dir, ec).lexically_normal().string();
  int shards = absl::GetFlag(FLAGS_shards);
  if (shards <= 0) shards = static_cast<int>(std::min<size_t>(specs.size(), 8));
  shards = std::min<int>(shards, static_cast<int>(specs.size()));
  const std::string binary = fs::read_symlink("/proc/self/exe", ec).string();
  std::string name = fs::path(config).stem().string();
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-') c = '_';
  }
  const int jobs = absl::GetFlag(FLAGS_jobs), threads = absl::GetFlag(FLAGS_threads);
  std::string command = absl::StrCat(ShellQuote(binary), " --config=", ShellQuote(fs::absolute(config, ec).string()),
                                     " --output_dir=", ShellQuote(out), " --jobs=", jobs, " --threads=", threads);
  for (const std::string& s : sets) absl::StrAppend(&command, " --set ", ShellQuote(s));
  if (absl::GetFlag(FLAGS_force)) absl::StrAppend(&command, " --force");
  if (absl::GetFlag(FLAGS_oversubscribe)) absl::StrAppend(&command, " --oversubscribe");
  absl::StrAppend(&command, " --shard=\"${SLURM_ARRAY_TASK_ID}/", shards, "\"");
  (void)argc;
  (void)argv;
  const std::string dir = out + "/slurm";
  fs::create_directories(dir, ec);
  const std::string script_path = absl::StrCat(dir, "/", name, ".sbatch");
  const std::string script = absl::StrCat(
      "#!/bin/bash\n"
      "# quantlab sweep ",
      config, ": ", specs.size(), " experiments in ", shards, " array tasks (task k runs --shard=k/", shards,
      ").\n# Resumable: re-submit it after a failure or a cancel; finished members are skipped.\n",
      "#SBATCH --job-name=quantlab-", name, "\n#SBATCH --array=0-", shards - 1,
      "\n#SBATCH --cpus-per-task=", jobs * threads, "\n#SBATCH --output=", dir, "/", name, "-%A_%a.log\n", "cd ",
      ShellQuote(fs::current_path(ec).string()), "\nexec ", command, "\n");
  if (absl::Status s = WriteFileAtomically(script_path, script); !s.ok()) {
    Fail(s);
    return false;
  }
  fs::permissions(script_path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add, ec);
  std::printf(
      "%s: %zu experiments in %d Slurm array tasks (--jobs=%d each)\nwrote %s\nsubmit with: sbatch %s\n"
      "results: %s (and %s/%s)\n",
      config.c_str(), specs.size(), shards, jobs, script_path.c_str(), script_path.c_str(), out.c_str(), out.c_str(),
      kResultsDbFile);
  return true;
}

// The experiments of a run: the config's members and what they start from
// (init_from: {config: ...}), each distinct run directory once, every node after the
// nodes it depends on.
struct Node {
  ExperimentPlan plan;
  std::vector<size_t> deps;  // nodes whose checkpoints this one starts from
  bool member = false;       // one of the config's own experiments
  size_t member_number = 0;  // 1-based position in the config, for messages
};
struct Graph {
  std::vector<Node> nodes;
  std::map<std::string, size_t> by_run_dir;
};

// Validates `spec` and, first, what it starts from (into the same output dir).
absl::StatusOr<size_t> AddNode(ExperimentSpec spec, const RunOptions& options, bool member, Graph& graph,
                               size_t member_number = 0, int depth = 0) {
  const std::vector<Dependency> dependencies = spec.dependencies;
  auto plan = Validate(std::move(spec), options);
  if (!plan.ok()) return plan.status();
  std::vector<size_t> deps;
  const RunOptions dep_options{plan->output_dir, options.threads};
  for (const Dependency& d : dependencies) {
    auto added = AddNode(*d.spec, dep_options, /*member=*/false, graph, 0, depth + 1);
    if (!added.ok()) {
      return absl::Status(added.status().code(),
                          absl::StrCat(d.location, ": ", d.key_path, ": ", std::string(added.status().message())));
    }
    deps.push_back(*added);
  }
  if (auto it = graph.by_run_dir.find(plan->run_dir); it != graph.by_run_dir.end()) {
    Node& existing = graph.nodes[it->second];
    if (member && !existing.member) {
      existing.member = true;
      existing.member_number = member_number;
    }
    return it->second;
  }
  graph.nodes.push_back(Node{*std::move(plan), std::move(deps), member, member_number});
  graph.by_run_dir[graph.nodes.back().plan.run_dir] = graph.nodes.size() - 1;
  return graph.nodes.size() - 1;
}

// The sweep's progress: each event on its own line, and (on a terminal, with --jobs > 1,
// when the workers log to their run directories) one live line under them: done /
// running / failed of N, elapsed, and an ETA from the finished members' times; otherwise
// that line follows each finished member.
class Progress {
 public:
  Progress(size_t total, int jobs)
      // With --jobs=1 the worker's own progress goes to the terminal: no line is redrawn under it.
      : total_(total),
        jobs_(jobs),
        start_(std::chrono::steady_clock::now()),
        tty_(jobs > 1 && isatty(fileno(stdout)) != 0) {}
  void Started() { ++running_; }
  void Finished(bool ok, double seconds) {
    running_ = running_ > 0 ? running_ - 1 : 0;
    ++done_;
    if (!ok) ++failed_;
    if (seconds > 0) {
      ++timed_;
      seconds_ += seconds;
    }
  }
  size_t done() const { return done_; }
  // `with_progress`: off a terminal, the progress line follows this one (members that end).
  void Say(const std::string& line, bool with_progress = false) {
    Clear();
    std::printf("%s\n", line.c_str());
    if (!tty_ && with_progress) std::printf("  %s\n", Line().c_str());
    Draw();
  }
  void Tick() {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::seconds(1)) return;
    Clear();
    Draw();
  }
  void End() { Clear(); }

 private:
  std::string Line() const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string eta = "?";
    if (timed_ > 0) {
      const double per_member = seconds_ / timed_;
      const double left = static_cast<double>(total_ - done_) * per_member / std::max(1, jobs_);
      eta = Duration(left);
    }
    return absl::StrCat("sweep: ", done_ - failed_, " done, ", running_, " running, ", failed_, " failed of ", total_,
                        " | elapsed ", Duration(elapsed), " | ETA ", done_ == total_ ? "0s" : eta);
  }
  static std::string Duration(double s) {
    const int64_t t = static_cast<int64_t>(s + 0.5);
    if (t >= 3600) return absl::StrFormat("%dh%02dm", t / 3600, (t / 60) % 60);
    if (t >= 60) return absl::StrFormat("%dm%02ds", t / 60, t % 60);
    return absl::StrFormat("%ds", t);
  }
  void Clear() {
    if (tty_ && drawn_) std::printf("\r\033[K");
    drawn_ = false;
  }
  void Draw() {
    if (tty_) {
      std::printf("%s", Line().c_str());
      drawn_ = true;
    }
    last_draw_ = std::chrono::steady_clock::now();
    std::fflush(stdout);
  }

  size_t total_, done_ = 0, failed_ = 0, running_ = 0, timed_ = 0;
  double seconds_ = 0;
  int jobs_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool tty_, drawn_ = false;
};

int Main(int argc, char** argv) {
  const auto started = std::chrono::system_clock::now();
  // A file-size limit (ulimit -f) would otherwise kill the process with SIGXFSZ mid-write, leaving
  // a temporary behind and no record; ignored, the write fails with EFBIG, WriteFileAtomically
  // removes its temporary and the run fails with an error naming the file.
  signal(SIGXFSZ, SIG_IGN);
  absl::SetProgramUsageMessage(
      "quantlab experiment driver: --config=FILE [--set key.path=value ...] [--validate] "
      "[--jobs=N] [--output_dir=DIR] [--seed=N] [--threads=N] [--shard=I/N | --slurm [--shards=N]] | --list");
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
  auto shard = ParseShard(absl::GetFlag(FLAGS_shard));
  if (!shard.ok()) return Fail(shard.status());
  if (absl::GetFlag(FLAGS_slurm)) {
    if (shard->second > 1) return Fail(absl::InvalidArgumentError("--slurm writes the shards' script: drop --shard"));
    return WriteSlurmScript(argc, argv, config, sets, *specs) ? 0 : 1;
  }

  // Every experiment, and every experiment one starts from, is checked before any
  // runs: a typo in the 9th of 12 is found now, not an hour from now.
  RunOptions options{absl::GetFlag(FLAGS_output_dir), threads};
  Graph graph;
  size_t duplicates = 0;
  for (size_t m = 0; m < specs->size(); ++m) {
    const std::string name = (*specs)[m].name;
    if (m % shard->second != shard->first) {
      // Another shard's member: checked all the same, so that every shard fails on a bad sweep.
      if (auto plan = Validate((*specs)[m], options); !plan.ok()) return Fail(plan.status());
      continue;
    }
    const size_t before = graph.nodes.size();
    auto added = AddNode(std::move((*specs)[m]), options, /*member=*/true, graph, m + 1);
    if (!added.ok()) return Fail(added.status());
    if (graph.nodes.size() == before && graph.nodes[*added].member_number != m + 1) {
      ++duplicates;
      std::printf("%s: %s (member %zu) is the same experiment as member %zu (config id %s): run once\n", config.c_str(),
                  name.c_str(), m + 1, graph.nodes[*added].member_number,
                  graph.nodes[*added].plan.spec.config_id.c_str());
    }
  }
  size_t members = 0;
  for (const Node& n : graph.nodes) members += n.member ? 1 : 0;

  if (absl::GetFlag(FLAGS_validate)) {
    for (const Node& n : graph.nodes) {
      std::printf("# resolved config of %s\n%s", n.plan.spec.name.c_str(), EmitYaml(n.plan.spec.root).c_str());
      std::printf("# plan\n%s", DescribePlan(n.plan).c_str());
      for (size_t d : n.deps) {
        const ExperimentPlan& dep = graph.nodes[d].plan;
        auto done = ReadRunRecord(dep.run_dir, dep.spec.config_id);
        std::printf("  starts from %s: %s\n", dep.spec.name.c_str(),
                    done.ok() && done->status() == quantlab::ResultRecord::OK
                        ? ("its record in " + dep.run_dir + " says OK: reused").c_str()
                        : "runs first (no OK record yet)");
      }
      std::printf("\n");
    }
    std::printf("%s: %zu experiment(s) valid", config.c_str(), members);
    if (graph.nodes.size() > members) {
      std::printf(", starting from %zu other(s):", graph.nodes.size() - members);
      for (const Node& n : graph.nodes) {
        if (!n.member) std::printf(" %s", n.plan.spec.name.c_str());
      }
    }
    std::printf("\n");
    return 0;
  }

  if (graph.nodes.empty()) {
    std::printf("%s: shard %zu/%zu has no members (the sweep has %zu)\n", config.c_str(), shard->first, shard->second,
                specs->size());
    return 0;
  }
  // A shard always runs as a batch: it skips what is done, so a re-submitted array resumes.
  if (graph.nodes.size() == 1 && shard->second == 1) {
    ExperimentPlan& plan = graph.nodes[0].plan;
    std::fprintf(stderr, "%s", DescribePlan(plan).c_str());
    // A single experiment always runs (force), in this process, under its lock.
    const LockedRun locked = RunUnderLock(plan, /*force=*/true, /*quiet=*/false, started);
    const quantlab::ResultRecord& r = locked.record;
    const std::string record_path = plan.run_dir + "/result.json";
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
    LinkLatest(plan);
    for (const std::string& n : r.not_available()) std::printf("not run: %s\n", n.c_str());
    return 0;
  }

  // A batch: skip finished runs, run the rest in worker processes, each once all the
  // experiments it starts from are done. --force re-runs the config's own members, not
  // what they start from; a config of one experiment always runs it.
  const bool force = absl::GetFlag(FLAGS_force);
  const bool force_members = force || (members == 1 && shard->second == 1);
  std::vector<Outcome> outcomes(graph.nodes.size());
  enum class State { kWaiting, kRunning, kOk, kFailed };
  std::vector<State> state(graph.nodes.size(), State::kWaiting);
  size_t todo = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const ExperimentPlan& plan = graph.nodes[i].plan;
    const bool forced = graph.nodes[i].member && force_members;
    auto done = ReadRunRecord(plan.run_dir, plan.spec.config_id);
    if (!forced && done.ok() && done->status() == quantlab::ResultRecord::OK) {
      outcomes[i] = FromRecord(*done, "skipped");
      state[i] = State::kOk;
      LinkLatest(plan);
      continue;
    }
    // A record that is there but does not count: say why the member runs again.
    if (!forced && !done.ok() && !absl::IsNotFound(done.status())) {
      std::printf("%s; running it again\n", std::string(done.status().message()).c_str());
    }
    ++todo;
  }
  std::printf("%s: %zu experiments%s, %zu already done, running %zu with --jobs=%d\n", config.c_str(),
              graph.nodes.size(),
              graph.nodes.size() > members
                  ? absl::StrCat(" (", graph.nodes.size() - members, " of them what the others start from)").c_str()
                  : "",
              graph.nodes.size() - todo, todo, jobs);
  Progress progress(todo, jobs);
  std::map<pid_t, size_t> running;
  const bool quiet = jobs > 1;  // parallel workers log to their run directory
  size_t started_count = 0;
  while (true) {
    // Members whose dependencies failed never run: say so, and what it waited for.
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (state[i] != State::kWaiting) continue;
      for (size_t d : graph.nodes[i].deps) {
        if (state[d] != State::kFailed) continue;
        state[i] = State::kFailed;
        outcomes[i] =
            Outcome{graph.nodes[i].plan.spec.name, graph.nodes[i].plan.spec.config_id, "failed", 0,
                    absl::StrCat("not run: it starts from ", graph.nodes[d].plan.spec.name, ", which failed")};
        progress.Finished(false, 0);
        progress.Say(absl::StrCat("[not run] ", graph.nodes[i].plan.spec.name, ": ", outcomes[i].summary),
                     /*with_progress=*/true);
        break;
      }
    }
    for (size_t i = 0; i < graph.nodes.size() && running.size() < static_cast<size_t>(jobs); ++i) {
      if (state[i] != State::kWaiting) continue;
      bool ready = true;
      for (size_t d : graph.nodes[i].deps) ready = ready && state[d] == State::kOk;
      if (!ready) continue;
      ++started_count;
      progress.Say(absl::StrCat("[start ", started_count, "/", todo, "] ", graph.nodes[i].plan.spec.name));
      const bool forced = graph.nodes[i].member && force_members;
      const pid_t pid = StartWorker(graph.nodes[i].plan, forced, quiet, started);
      if (pid < 0) return Fail(absl::ResourceExhaustedError("fork failed"));
      running[pid] = i;
      state[i] = State::kRunning;
      progress.Started();
    }
    if (running.empty()) break;  // nothing runs and nothing can start: all done
    int wait_status = 0;
    const pid_t pid = waitpid(-1, &wait_status, WNOHANG);
    if (pid == 0) {
      progress.Tick();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a finished worker is replaced at once
      continue;
    }
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const size_t i = it->second;
    running.erase(it);
    outcomes[i] = CollectWorker(graph.nodes[i].plan, pid, wait_status);
    const bool ok = outcomes[i].status == "ok" || outcomes[i].status == "elsewhere";
    state[i] = ok ? State::kOk : State::kFailed;
    if (ok) LinkLatest(graph.nodes[i].plan);
    progress.Finished(ok, outcomes[i].seconds);
    progress.Say(absl::StrCat("[done ", progress.done(), "/", todo, "] ", outcomes[i].name, ": ", outcomes[i].status,
                              absl::StrFormat(" (%.1f s) ", outcomes[i].seconds), outcomes[i].summary),
                 /*with_progress=*/true);
  }
  progress.End();
  std::vector<SummaryRow> rows;
  int ok = 0, failed = 0, skipped = 0, elsewhere = 0, still_running = 0;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (state[i] != State::kFailed || outcomes[i].summary.rfind("not run:", 0) != 0) {
      outcomes[i] = Reread(graph.nodes[i].plan, outcomes[i]);
    }
    const Outcome& o = outcomes[i];
    SummaryRow row{o.name, o.config_id, o.status, o.seconds, "", std::nullopt};
    auto record = ReadRunRecord(graph.nodes[i].plan.run_dir, graph.nodes[i].plan.spec.config_id);
    if (record.ok()) row.record = *std::move(record);
    if (o.status != "ok" && o.status != "skipped") row.note = o.summary;
    if (!graph.nodes[i].member)
      row.note = absl::StrCat("what the others start from", row.note.empty() ? "" : ": ", row.note);
    rows.push_back(std::move(row));
    ok += o.status == "ok";
    failed += o.status == "failed";
    skipped += o.status == "skipped";
    elsewhere += o.status == "elsewhere";
    still_running += o.status == "running";
  }
  {
    std::vector<std::pair<const ExperimentPlan*, const quantlab::ResultRecord*>> on_disk;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      if (rows[i].record.has_value()) on_disk.emplace_back(&graph.nodes[i].plan, &*rows[i].record);
    }
    SyncDatabases(on_disk);
  }
  std::printf("\n%s", FormatSummary(rows).c_str());
  std::string more;
  if (elsewhere > 0) absl::StrAppend(&more, ", ", elsewhere, " ok, run by another process");
  if (still_running > 0) absl::StrAppend(&more, ", ", still_running, " still running in another process");
  if (duplicates > 0) absl::StrAppend(&more, ", ", duplicates, " duplicate member(s) not run again");
  std::printf("%zu experiments: %d ran ok, %d failed, %d skipped (already done)%s\n", graph.nodes.size(), ok, failed,
              skipped, more.c_str());
  return failed > 0 ? 1 : 0;
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) { return quant::Main(argc, argv); }
