// The report over a results database (//experiments:report): Markdown and a
// self-contained HTML page with
//  - one table per sweep (runs named <sweep>__<axis>=<value>...), a row per
//    setting of its axes, seeds aggregated (mean ± 95 % CI, n);
//  - tables defined in a YAML file (--tables: the README's results tables), each
//    cell the latest OK run of a named experiment;
//  - plots drawn by matplotlib (Debian python3-matplotlib, experiments/plots.py):
//    accuracy vs weight bits per scheme, accuracy vs packed model size with each
//    model's Pareto front, training curves per sweep, images/s per backend, and
//    the histograms of tensors' float values with each run's calibrated range.
#ifndef EXPERIMENTS_REPORT_H_
#define EXPERIMENTS_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/result.pb.h"
#include "yaml-cpp/yaml.h"

namespace quant {

struct ReportRun {
  std::string run;         // the run directory's name
  std::string seed_group;  // the name without its seed
  std::string family;      // the sweep: the name up to its first "__"
  quantlab::ResultRecord record;
  YAML::Node config;  // the resolved config
};

// The OK runs of the database whose names contain `name_filter` ("" for all), in the order they
// started (a sweep's members in its order; of one name, the latest last).
absl::StatusOr<std::vector<ReportRun>> LoadReportRuns(const std::string& db_path, const std::string& name_filter);

// "<model> <scheme>": e.g. "cnn qat/lsq", "resnet_mini static+gptq", "mlp fp32".
std::string SchemeLabel(const YAML::Node& config);
// The integer model's accuracy (the first backend listed, reference preferred), else
// dynamic/weight-only PTQ's own, else the trained model's; NaN when the run has none.
double DeployedAccuracy(const quantlab::ResultRecord& record);

struct ReportOptions {
  std::string out_dir;
  std::string title = "quantlab results";
  std::string tables_file;                  // YAML definitions of curated tables; "" for none
  std::string python = "/usr/bin/python3";  // Debian's, which has matplotlib
  std::string plot_script;                  // experiments/plots.py
};

// Writes report.md, report.html (images inline), plots/*.png and plots.json (what
// each plot shows) into out_dir. Files are written under temporary names and renamed
// when all are done: a failed report leaves no report.html that looks complete.
absl::Status WriteReport(const std::vector<ReportRun>& runs, const ReportOptions& options);

}  // namespace quant

#endif  // EXPERIMENTS_REPORT_H_
