#include "experiments/results_db.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "experiments/record.h"
#include "experiments/sweep_summary.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs(
  run TEXT PRIMARY KEY,          -- the run directory's name, <name>-<config_id>
  name TEXT NOT NULL,
  config_id TEXT NOT NULL,
  seed_group TEXT NOT NULL,      -- the name without its seed: members that differ only in the seed
  status TEXT NOT NULL,          -- OK or FAILED
  error TEXT NOT NULL,
  seed INTEGER NOT NULL,
  config_file TEXT NOT NULL,
  start_time TEXT NOT NULL,
  wall_seconds REAL NOT NULL,
  peak_rss_bytes INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  cpu_model TEXT NOT NULL,
  threads INTEGER NOT NULL,
  dataset TEXT NOT NULL,
  config_yaml TEXT NOT NULL,     -- the resolved config (config.yaml of the run)
  record_json TEXT NOT NULL,     -- the whole record (result.json)
  written_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS axes(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, position INTEGER NOT NULL,
  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(run, position));
CREATE TABLE IF NOT EXISTS epochs(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, epoch INTEGER NOT NULL, scheme TEXT NOT NULL,
  train_loss REAL, train_accuracy REAL, test_accuracy REAL, seconds REAL, samples_per_s REAL,
  PRIMARY KEY(run, epoch));
CREATE TABLE IF NOT EXISTS metrics(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, key TEXT NOT NULL, value REAL,
  PRIMARY KEY(run, key));
CREATE TABLE IF NOT EXISTS backends(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, position INTEGER NOT NULL, backend TEXT NOT NULL,
  test_accuracy REAL, images_per_s_batch1 REAL, images_per_s_batch256 REAL, model_size_bytes INTEGER,
  outputs_compared INTEGER, outputs_identical INTEGER, outputs_off_by_one INTEGER, outputs_larger INTEGER,
  max_abs_steps INTEGER, top1_agreement REAL, prediction_agreement_with_simulation REAL,
  PRIMARY KEY(run, backend));
CREATE TABLE IF NOT EXISTS sensitivity(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, layer TEXT NOT NULL, bits INTEGER NOT NULL,
  target TEXT NOT NULL, metric TEXT NOT NULL, value REAL);
CREATE TABLE IF NOT EXISTS allocation(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, layer TEXT NOT NULL, weight_bits INTEGER,
  activation_bits INTEGER, weights INTEGER, size_bytes INTEGER, bops REAL, cost REAL);
CREATE TABLE IF NOT EXISTS debug_tensors(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, tensor TEXT NOT NULL, op TEXT NOT NULL,
  kind TEXT NOT NULL, scale REAL, zero_point INTEGER, quant_min INTEGER, quant_max INTEGER, value_count INTEGER,
  sqnr_db REAL, clipped REAL, saturated REAL,
  histogram_min REAL, histogram_max REAL, histogram TEXT);  -- comma-separated bin counts
CREATE TABLE IF NOT EXISTS notes(
  run TEXT NOT NULL REFERENCES runs(run) ON DELETE CASCADE, section TEXT NOT NULL, position INTEGER NOT NULL,
  text TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sensitivity_run ON sensitivity(run);
CREATE INDEX IF NOT EXISTS allocation_run ON allocation(run);
CREATE INDEX IF NOT EXISTS debug_tensors_run ON debug_tensors(run);
CREATE INDEX IF NOT EXISTS notes_run ON notes(run);
CREATE INDEX IF NOT EXISTS runs_seed_group ON runs(seed_group);
)sql";

using Value = std::variant<std::monostate, int64_t, double, std::string>;

// One prepared statement, bound and stepped once per row.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status Run(const std::vector<Value>& values) {
    if (rc_ != SQLITE_OK) return absl::InternalError(sqlite3_errmsg(db_));
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    for (size_t i = 0; i < values.size(); ++i) {
      const int k = static_cast<int>(i) + 1;
      const Value& v = values[i];
      if (std::holds_alternative<int64_t>(v)) {
        sqlite3_bind_int64(stmt_, k, std::get<int64_t>(v));
      } else if (std::holds_alternative<double>(v)) {
        sqlite3_bind_double(stmt_, k, std::get<double>(v));
      } else if (std::holds_alternative<std::string>(v)) {
        const std::string& s = std::get<std::string>(v);
        sqlite3_bind_text(stmt_, k, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
      } else {
        sqlite3_bind_null(stmt_, k);
      }
    }
    const int rc = sqlite3_step(stmt_);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return absl::InternalError(sqlite3_errmsg(db_));
    return absl::OkStatus();
  }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string RunKey(const std::string& run_dir) {
  std::filesystem::path p(run_dir);
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

absl::StatusOr<ResultsDb> ResultsDb::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    const std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat(path, ": cannot open the results database: ", message));
  }
  ResultsDb out(db, path);
  // Writers wait for each other (a sweep's workers, two sweeps) instead of failing.
  sqlite3_busy_timeout(db, 120000);
  RETURN_IF_ERROR(out.Exec("PRAGMA journal_mode=WAL"));
  RETURN_IF_ERROR(out.Exec("PRAGMA synchronous=NORMAL"));
  RETURN_IF_ERROR(out.Exec("PRAGMA foreign_keys=ON"));
  RETURN_IF_ERROR(out.Exec("BEGIN IMMEDIATE"));
  absl::Status s = out.Exec(kSchema);
  int version = 0;
  if (s.ok()) {
    Statement get(db, "SELECT value FROM meta WHERE key = 'schema_version'");
    s = get.Run({});
    if (s.ok() && sqlite3_column_type(get.get(), 0) != SQLITE_NULL) {
      version = std::atoi(reinterpret_cast<const char*>(sqlite3_column_text(get.get(), 0)));
    }
  }
  if (s.ok() && version > kResultsSchemaVersion) {
    s = absl::FailedPreconditionError(absl::StrCat(path, ": the results database has schema version ", version,
                                                   "; this build reads version ", kResultsSchemaVersion,
                                                   " (made by a newer quantlab: use that, or another --output_dir)"));
  }
  if (s.ok() && version == 0) {
    s = out.Exec(absl::StrCat("INSERT INTO meta(key, value) VALUES ('schema_version', '", kResultsSchemaVersion, "')"));
  }
  if (!s.ok()) {
    (void)out.Exec("ROLLBACK");
    return s;
  }
  RETURN_IF_ERROR(out.Exec("COMMIT"));
  return out;
}

ResultsDb::ResultsDb(ResultsDb&& other) noexcept : db_(other.db_), path_(std::move(other.path_)) {
  other.db_ = nullptr;
}

ResultsDb& ResultsDb::operator=(ResultsDb&& other) noexcept {
  if (this != &other) {
    sqlite3_close(db_);
    db_ = other.db_;
    path_ = std::move(other.path_);
    other.db_ = nullptr;
  }
  return *this;
}

ResultsDb::~ResultsDb() { sqlite3_close(db_); }

absl::Status ResultsDb::Error(const std::string& what) const {
  return absl::InternalError(absl::StrCat(path_, ": ", what, ": ", sqlite3_errmsg(db_)));
}

absl::Status ResultsDb::Exec(const std::string& sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
    const std::string text = message != nullptr ? message : "unknown error";
    sqlite3_free(message);
    return absl::InternalError(absl::StrCat(path_, ": ", text));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> ResultsDb::Has(const std::string& run_dir, const std::string& start_time) {
  Statement q(db_, "SELECT COUNT(*) FROM runs WHERE run = ? AND start_time = ?");
  if (absl::Status s = q.Run({RunKey(run_dir), start_time}); !s.ok()) return Error("query");
  return sqlite3_column_int64(q.get(), 0) > 0;
}

absl::Status ResultsDb::Insert(const quantlab::ResultRecord& r, const std::string& run_dir,
                               const std::string& config_yaml) {
  const std::string run = RunKey(run_dir);
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto write = [&]() -> absl::Status {
    {
      Statement del(db_, "DELETE FROM runs WHERE run = ?");  // its other rows go by ON DELETE CASCADE
      RETURN_IF_ERROR(del.Run({run}));
    }
    Statement runs(db_,
                   "INSERT INTO runs(run, name, config_id, seed_group, status, error, seed, config_file, start_time, "
                   "wall_seconds, peak_rss_bytes, hostname, cpu_model, threads, dataset, config_yaml, record_json, "
                   "written_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    RETURN_IF_ERROR(runs.Run(
        {run, r.name(), r.config_id(), SeedGroup(r.name()), r.status() == quantlab::ResultRecord::OK ? "OK" : "FAILED",
         r.error(), static_cast<int64_t>(r.seed()), r.config_file(), r.start_time(), r.wall_seconds(),
         static_cast<int64_t>(r.peak_rss_bytes()), r.host().hostname(), r.host().cpu_model(),
         static_cast<int64_t>(r.host().threads_used()), r.dataset(), config_yaml, RecordToJson(r), NowRfc3339()}));
    Statement axes(db_, "INSERT INTO axes(run, position, key, value) VALUES (?, ?, ?, ?)");
    for (int i = 0; i < r.overrides_size(); ++i) {
      const std::string& o = r.overrides(i);
      const size_t eq = o.find('=');
      RETURN_IF_ERROR(axes.Run({run, int64_t{i}, o.substr(0, eq), eq == std::string::npos ? "" : o.substr(eq + 1)}));
    }
    Statement epochs(db_,
                     "INSERT OR REPLACE INTO epochs(run, epoch, scheme, train_loss, train_accuracy, test_accuracy, "
                     "seconds, samples_per_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for (int i = 0; i < r.epochs_size(); ++i) {
      const auto& e = r.epochs(i);
      // Epoch numbers restart per stage of a two-stage scheme: the row number keeps them apart.
      RETURN_IF_ERROR(epochs.Run({run, int64_t{i + 1}, e.scheme(), e.train_loss(), e.train_accuracy(),
                                  e.test_accuracy(), e.seconds(), e.samples_per_s()}));
    }
    Statement metrics(db_, "INSERT OR REPLACE INTO metrics(run, key, value) VALUES (?, ?, ?)");
    for (const auto& [k, v] : r.metrics()) RETURN_IF_ERROR(metrics.Run({run, k, v}));
    Statement backends(db_,
                       "INSERT OR REPLACE INTO backends(run, position, backend, test_accuracy, images_per_s_batch1, "
                       "images_per_s_batch256, model_size_bytes, outputs_compared, outputs_identical, "
                       "outputs_off_by_one, outputs_larger, max_abs_steps, top1_agreement, "
                       "prediction_agreement_with_simulation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (int i = 0; i < r.backends_size(); ++i) {
      const auto& b = r.backends(i);
      const auto& a = b.agreement_with_reference();
      RETURN_IF_ERROR(backends.Run(
          {run, int64_t{i}, b.backend(), b.test_accuracy(), b.images_per_s_batch1(), b.images_per_s_batch256(),
           static_cast<int64_t>(b.model_size_bytes()), static_cast<int64_t>(a.outputs_compared()),
           static_cast<int64_t>(a.outputs_identical()), static_cast<int64_t>(a.outputs_off_by_one()),
           static_cast<int64_t>(a.outputs_larger()), static_cast<int64_t>(a.max_abs_steps()), a.top1_agreement(),
           b.prediction_agreement_with_simulation()}));
    }
    Statement sensitivity(db_,
                          "INSERT INTO sensitivity(run, layer, bits, target, metric, value) VALUES (?, ?, ?, ?, ?, ?)");
    for (const auto& e : r.sensitivity()) {
      RETURN_IF_ERROR(sensitivity.Run({run, e.layer(), int64_t{e.bits()}, e.target(), e.metric(), e.value()}));
    }
    Statement allocation(db_,
                         "INSERT INTO allocation(run, layer, weight_bits, activation_bits, weights, size_bytes, bops, "
                         "cost) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& a : r.allocation()) {
      RETURN_IF_ERROR(allocation.Run({run, a.layer(), int64_t{a.weight_bits()}, int64_t{a.activation_bits()},
                                      static_cast<int64_t>(a.weights()), static_cast<int64_t>(a.size_bytes()), a.bops(),
                                      a.cost()}));
    }
    Statement debug(
        db_,
        "INSERT INTO debug_tensors(run, tensor, op, kind, scale, zero_point, quant_min, quant_max, "
        "value_count, sqnr_db, clipped, saturated, histogram_min, histogram_max, histogram) VALUES (?, ?, ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    for (const auto& t : r.debug_tensors()) {
      RETURN_IF_ERROR(debug.Run({run, t.tensor(), t.op(), t.kind(), static_cast<double>(t.scale()),
                                 int64_t{t.zero_point()}, int64_t{t.quant_min()}, int64_t{t.quant_max()},
                                 static_cast<int64_t>(t.values()), t.sqnr_db(), t.clipped(), t.saturated(),
                                 t.histogram_min(), t.histogram_max(), absl::StrJoin(t.histogram(), ",")}));
    }
    Statement notes(db_, "INSERT INTO notes(run, section, position, text) VALUES (?, ?, ?, ?)");
    auto add_notes = [&](const char* section, const auto& list) -> absl::Status {
      for (int i = 0; i < list.size(); ++i) RETURN_IF_ERROR(notes.Run({run, section, int64_t{i}, list.Get(i)}));
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(add_notes("plan", r.plan()));
    RETURN_IF_ERROR(add_notes("not_available", r.not_available()));
    RETURN_IF_ERROR(add_notes("ptq", r.ptq_notes()));
    RETURN_IF_ERROR(add_notes("analysis", r.analysis_notes()));
    if (!r.debug_summary().empty()) RETURN_IF_ERROR(notes.Run({run, "debug_summary", int64_t{0}, r.debug_summary()}));
    return absl::OkStatus();
  };
  absl::Status s = write();
  if (!s.ok()) {
    (void)Exec("ROLLBACK");
    return absl::Status(s.code(), absl::StrCat(path_, ": writing the record of ", run, ": ", s.message()));
  }
  return Exec("COMMIT");
}

absl::Status ResultsDb::ImportRunDir(const std::string& run_dir) {
  const std::string json = run_dir + "/result.json";
  std::error_code ec_exists;
  if (!std::filesystem::exists(json, ec_exists)) return absl::NotFoundError(absl::StrCat(run_dir, ": no result.json"));
  ASSIGN_OR_RETURN(quantlab::ResultRecord record, ReadRecordJson(json));
  return Insert(record, run_dir, ReadFile(run_dir + "/config.yaml"));
}

}  // namespace quant
