// The results database: every run's record in one SQLite file per output dir
// (<output_dir>/results.db), so that a sweep's rows can be queried, grouped by
// their sweep axes and seeds, and reported (//experiments:report).
//
// Safe under parallel writers: WAL mode, a busy timeout, and each record written
// in one IMMEDIATE transaction that first deletes the run's earlier rows, so two
// sweeps writing at once lose nothing, a re-run replaces its rows, and a writer
// killed mid-write leaves no half-written record (SQLite rolls it back). The run
// directory's JSON record stays the source of truth: the driver re-imports any OK
// record the database misses (a worker killed between the two writes).
//
// Schema (version 1; `meta.schema_version`): runs (one row per run directory, with the
// whole record as JSON and the resolved config), axes (the sweep and --set
// assignments, key = value), epochs, metrics, backends, sensitivity, allocation,
// debug_tensors, notes (plan, PTQ and analysis notes, in order).
#ifndef EXPERIMENTS_RESULTS_DB_H_
#define EXPERIMENTS_RESULTS_DB_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "experiments/result.pb.h"

struct sqlite3;

namespace quant {

inline constexpr int kResultsSchemaVersion = 1;
inline constexpr char kResultsDbFile[] = "results.db";

class ResultsDb {
 public:
  // Opens (creating it and its schema if needed) the database at `path`. A database
  // of a newer schema than this build's is an error, never written to.
  static absl::StatusOr<ResultsDb> Open(const std::string& path);
  ResultsDb(ResultsDb&& other) noexcept;
  ResultsDb& operator=(ResultsDb&& other) noexcept;
  ~ResultsDb();

  // Writes `record` of the run directory `run_dir` (its last component names the
  // run) with the resolved config text, replacing that run's earlier rows.
  absl::Status Insert(const quantlab::ResultRecord& record, const std::string& run_dir, const std::string& config_yaml);
  // Whether the database holds this run with this start time (the same attempt).
  absl::StatusOr<bool> Has(const std::string& run_dir, const std::string& start_time);
  // Imports the run directory `run_dir` (result.json, config.yaml when present);
  // NotFound when it holds no record.
  absl::Status ImportRunDir(const std::string& run_dir);

  sqlite3* handle() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  ResultsDb(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  absl::Status Exec(const std::string& sql);
  absl::Status Error(const std::string& what) const;

  sqlite3* db_ = nullptr;
  std::string path_;
};

// The run's name in the database: the last component of its run directory.
std::string RunKey(const std::string& run_dir);

}  // namespace quant

#endif  // EXPERIMENTS_RESULTS_DB_H_
