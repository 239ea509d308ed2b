// Imports existing run folders into a results database:
//
//   bazel run //experiments:import -- runs                 # every run of runs/ into runs/results.db
//   bazel run //experiments:import -- --db=all.db runs old_runs/cnn_fp32-3087f3a1c869c8a9
//
// Each argument is a run directory (it holds result.json) or an output dir whose run
// directories are imported (the <name> links to the latest runs are skipped: their
// targets are imported once). Re-importing a run replaces its rows.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "experiments/results_db.h"

ABSL_FLAG(std::string, db, "", "the database (default: <first argument>/results.db)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("import run folders into a results database: [--db=FILE] DIR...");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd) {
    if (chdir(wd) != 0) std::fprintf(stderr, "warning: cannot enter %s\n", wd);
  }
  namespace fs = std::filesystem;
  std::error_code ec_exists;  // a path the file system refuses (too long, ...) is "not there"
  std::vector<std::string> dirs(args.begin() + 1, args.end());
  if (dirs.empty()) {
    std::fprintf(stderr, "error: give the run folders or output dirs to import (e.g. runs)\n");
    return 1;
  }
  std::string db_path = absl::GetFlag(FLAGS_db);
  if (db_path.empty()) {
    const fs::path first(dirs[0]);
    db_path = (fs::exists(first / "result.json", ec_exists) ? first.parent_path() : first) / quant::kResultsDbFile;
  }
  std::vector<std::string> runs;
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (!fs::is_directory(d, ec)) {
      std::fprintf(stderr, "error: %s: not a directory\n", d.c_str());
      return 1;
    }
    if (fs::exists(fs::path(d) / "result.json", ec_exists)) {
      runs.push_back(d);
      continue;
    }
    for (const auto& e : fs::directory_iterator(d, ec)) {
      if (e.is_symlink() || !e.is_directory()) continue;
      if (fs::exists(e.path() / "result.json", ec_exists)) runs.push_back(e.path().string());
    }
  }
  std::sort(runs.begin(), runs.end());
  auto db = quant::ResultsDb::Open(db_path);
  if (!db.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(db.status().message()).c_str());
    return 1;
  }
  int imported = 0, failed = 0;
  for (const std::string& run : runs) {
    if (absl::Status s = db->ImportRunDir(run); !s.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
      ++failed;
      continue;
    }
    ++imported;
  }
  std::printf("%s: imported %d run(s)%s\n", db_path.c_str(), imported,
              failed > 0 ? (", " + std::to_string(failed) + " could not be read").c_str() : "");
  return failed > 0 ? 1 : 0;
}
