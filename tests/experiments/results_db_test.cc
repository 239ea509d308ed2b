#include "experiments/results_db.h"

#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

std::string FreshDb(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = std::string(dir ? dir : "/tmp") + "/" + name;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  return path;
}

int64_t Count(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* q = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr), SQLITE_OK) << sql;
  int64_t n = -1;
  if (sqlite3_step(q) == SQLITE_ROW) n = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return n;
}

quantlab::ResultRecord Record(const std::string& name, const std::string& start, int epochs) {
  quantlab::ResultRecord r;
  r.set_name(name);
  r.set_config_id("0123456789abcdef");
  r.set_status(quantlab::ResultRecord::OK);
  r.set_start_time(start);
  r.add_overrides("quant.weights.bits=4");
  r.add_overrides("seed=2");
  for (int e = 0; e < epochs; ++e) r.add_epochs()->set_epoch(e + 1);
  (*r.mutable_metrics())["final_test_accuracy"] = 0.875;
  auto* b = r.add_backends();
  b->set_backend("reference");
  b->set_test_accuracy(0.86);
  r.add_ptq_notes("fc1: minmax");
  return r;
}

TEST(ResultsDbTest, InsertWritesEveryTableAndAReRunReplacesItsRows) {
  const std::string path = FreshDb("insert.db");
  auto db = ResultsDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE(
      db->Insert(Record("q__seed=2", "2026-12-02T00:00:00Z", 3), "out/q__seed=2-0123456789abcdef", "a: 1\n").ok());
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM runs WHERE seed_group = 'q' AND config_yaml = 'a: 1\n'"), 1);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM epochs"), 3);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM axes WHERE key = 'quant.weights.bits' AND value = '4'"), 1);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM backends WHERE backend = 'reference' AND test_accuracy = 0.86"), 1);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM notes WHERE section = 'ptq'"), 1);
  EXPECT_EQ(Count(path, "SELECT value FROM meta WHERE key = 'schema_version'"), kResultsSchemaVersion);
  EXPECT_TRUE(*db->Has("out/q__seed=2-0123456789abcdef", "2026-12-02T00:00:00Z"));
  EXPECT_FALSE(*db->Has("out/q__seed=2-0123456789abcdef", "2026-12-03T00:00:00Z"));

  // The same run again (a --force re-run): its rows are replaced, not added to.
  ASSERT_TRUE(db->Insert(Record("q__seed=2", "2026-12-03T00:00:00Z", 2), "out/q__seed=2-0123456789abcdef", "").ok());
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM epochs"), 2);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM metrics"), 1);
  EXPECT_TRUE(*db->Has("out/q__seed=2-0123456789abcdef", "2026-12-03T00:00:00Z"));
}

TEST(ResultsDbTest, ParallelWritersLoseNothing) {
  const std::string path = FreshDb("parallel.db");
  ASSERT_TRUE(ResultsDb::Open(path).ok());
  constexpr int kWriters = 6, kEach = 40;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWriters; ++w) {
    const pid_t pid = fork();
    if (pid == 0) {
      auto db = ResultsDb::Open(path);
      if (!db.ok()) _exit(2);
      for (int i = 0; i < kEach; ++i) {
        const std::string name = "w" + std::to_string(w) + "_" + std::to_string(i);
        if (!db->Insert(Record(name, "t", 2), "out/" + name, "").ok()) _exit(3);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM runs"), kWriters * kEach);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM epochs"), 2 * kWriters * kEach);
}

TEST(ResultsDbTest, AWriterKilledMidTransactionLeavesNoHalfWrittenRecord) {
  const std::string path = FreshDb("killed.db");
  {
    auto db = ResultsDb::Open(path);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Insert(Record("kept", "t", 1), "out/kept", "").ok());
  }
  const pid_t pid = fork();
  if (pid == 0) {
    // A transaction like Insert's, killed after its first rows and before COMMIT.
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
    sqlite3_exec(db,
                 "INSERT INTO runs VALUES ('half', 'half', 'id', 'half', 'OK', '', 0, '', 't', 0, 0, '', '', 1, '', "
                 "'', '{}', 't')",
                 nullptr, nullptr, nullptr);
    sqlite3_exec(db, "INSERT INTO metrics VALUES ('half', 'x', 1)", nullptr, nullptr, nullptr);
    raise(SIGKILL);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto db = ResultsDb::Open(path);
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM runs"), 1);
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM metrics WHERE run = 'half'"), 0);
  // And the database is writable again at once.
  EXPECT_TRUE(db->Insert(Record("after", "t", 1), "out/after", "").ok());
  EXPECT_EQ(Count(path, "SELECT COUNT(*) FROM runs"), 2);
}

TEST(ResultsDbTest, ANewerSchemaOrAFileThatIsNoDatabaseIsAnError) {
  const std::string path = FreshDb("newer.db");
  ASSERT_TRUE(ResultsDb::Open(path).ok());
  sqlite3* raw = nullptr;
  sqlite3_open(path.c_str(), &raw);
  sqlite3_exec(raw, "UPDATE meta SET value = '99' WHERE key = 'schema_version'", nullptr, nullptr, nullptr);
  sqlite3_close(raw);
  auto db = ResultsDb::Open(path);
  ASSERT_FALSE(db.ok());
  EXPECT_THAT(std::string(db.status().message()), HasSubstr("schema version 99; this build reads version 1"));

  const std::string junk = FreshDb("junk.db");
  FILE* f = fopen(junk.c_str(), "w");
  fputs("this is not an SQLite file, but long enough to have a header of one......................", f);
  fclose(f);
  auto bad = ResultsDb::Open(junk);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("junk.db"));
}

}  // namespace
}  // namespace quant
