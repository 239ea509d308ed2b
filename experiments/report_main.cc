// The report over a results database:
//
//   bazel run //experiments:report -- --db=runs/results.db --out=report
//   bazel run //experiments:report -- --db=runs/results.db --out=report \
//       --tables=docs/results_tables.yaml --update=README.md
//
// Writes report.md and report.html (self-contained: plots inline) with the plots in
// report/plots/; --tables adds curated tables (experiments/report_tables.h), and
// --update rewrites those tables in place in Markdown files between their markers.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_split.h"
#include "experiments/report.h"
#include "experiments/report_tables.h"

ABSL_FLAG(std::string, db, "", "the results database (an output dir's results.db)");
ABSL_FLAG(std::string, out, "", "the report's directory (report.md, report.html, plots/)");
ABSL_FLAG(std::string, title, "quantlab results", "the report's title");
ABSL_FLAG(std::string, filter, "", "only runs whose name contains this text");
ABSL_FLAG(std::string, tables, "", "YAML file of curated tables (e.g. docs/results_tables.yaml)");
ABSL_FLAG(std::string, update, "", "comma-separated Markdown files whose <!-- report:ID --> tables to rewrite");
ABSL_FLAG(std::string, plot_script, "", "the matplotlib script (default: experiments/plots.py from runfiles)");

namespace {

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "error: %s\n", std::string(s.message()).c_str());
  return 1;
}

// experiments/plots.py next to the binary in its runfiles (bazel run), or in the source tree.
std::string FindPlotScript(const char* argv0) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* dir = std::getenv("RUNFILES_DIR"))
    candidates.push_back(fs::path(dir) / "quantlab/experiments/plots.py");
  candidates.push_back(fs::path(std::string(argv0) + ".runfiles") / "quantlab/experiments/plots.py");
  candidates.push_back(fs::path(argv0).parent_path() / "plots.py");
  candidates.push_back("experiments/plots.py");
  for (const fs::path& c : candidates) {
    std::error_code ec;
    if (fs::exists(c, ec)) return fs::absolute(c).string();
  }
  return "experiments/plots.py";
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("report over a results database: --db=FILE --out=DIR [--tables=FILE --update=FILES]");
  absl::ParseCommandLine(argc, argv);
  const std::string plot_script =
      absl::GetFlag(FLAGS_plot_script).empty() ? FindPlotScript(argv[0]) : absl::GetFlag(FLAGS_plot_script);
  if (const char* wd = std::getenv("BUILD_WORKING_DIRECTORY"); wd != nullptr && *wd) {
    if (chdir(wd) != 0) std::fprintf(stderr, "warning: cannot enter %s\n", wd);
  }
  const auto start = std::chrono::steady_clock::now();
  quant::ReportOptions options;
  options.out_dir = absl::GetFlag(FLAGS_out);
  options.title = absl::GetFlag(FLAGS_title);
  options.tables_file = absl::GetFlag(FLAGS_tables);
  options.plot_script = plot_script;
  if (absl::GetFlag(FLAGS_db).empty() || options.out_dir.empty()) {
    return Fail(absl::InvalidArgumentError("give --db=<output dir>/results.db and --out=DIR"));
  }
  auto runs = quant::LoadReportRuns(absl::GetFlag(FLAGS_db), absl::GetFlag(FLAGS_filter));
  if (!runs.ok()) return Fail(runs.status());
  if (runs->empty()) {
    return Fail(absl::NotFoundError(absl::StrCat(absl::GetFlag(FLAGS_db), ": no OK run",
                                                 absl::GetFlag(FLAGS_filter).empty() ? "" : " matches --filter")));
  }
  if (absl::Status s = quant::WriteReport(*runs, options); !s.ok()) return Fail(s);
  if (!absl::GetFlag(FLAGS_update).empty()) {
    if (options.tables_file.empty()) return Fail(absl::InvalidArgumentError("--update needs --tables"));
    auto tables = quant::BuildCuratedTables(options.tables_file, *runs);
    if (!tables.ok()) return Fail(tables.status());
    const std::vector<std::string> files = absl::StrSplit(absl::GetFlag(FLAGS_update), ',', absl::SkipEmpty());
    for (const std::string& file : files) {
      if (absl::Status s = quant::UpdateMarkdown(file, *tables); !s.ok()) return Fail(s);
      std::printf("updated %zu table(s) in %s\n", tables->size(), file.c_str());
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s/report.md and report.html: %zu runs (%.1f s)\n", options.out_dir.c_str(), runs->size(), seconds);
  return 0;
}
