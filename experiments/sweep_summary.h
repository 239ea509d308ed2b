// What a sweep's members found, in one table: each member's headline metrics (float
// and per-backend test accuracy, epoch time), and members that differ only in their
// seed aggregated (n, mean, standard deviation, 95 % confidence interval from
// Student's t distribution). The driver prints it at the end of a sweep; the report
// (//experiments:report) uses the same statistics.
#ifndef EXPERIMENTS_SWEEP_SUMMARY_H_
#define EXPERIMENTS_SWEEP_SUMMARY_H_

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "experiments/result.pb.h"

namespace quant {

// The 0.975 quantile of Student's t distribution with `df` degrees of freedom (df >= 1):
// the half-width of a two-sided 95 % interval is t * s / sqrt(n) with df = n - 1.
double StudentT975(int df);

struct MeanCi {
  int n = 0;
  double mean = 0;
  double stddev = 0;      // sample standard deviation (n - 1); 0 when n == 1
  double half_width = 0;  // 95 % CI: mean +- half_width; 0 when n == 1
};
MeanCi Aggregate(const std::vector<double>& values);

// "88.41 ± 0.37 (n=3)" with values in percent (x100) when `percent`.
std::string FormatMeanCi(const MeanCi& m, bool percent);

// A member's name without its seed: "x__seed=2__bits=4" -> "x__bits=4". Members with the
// same group name differ only in their seed.
std::string SeedGroup(const std::string& name);

// The headline figures of a record, in this order: "trained" (the trained model's own
// test accuracy: float, or QAT's simulation) or else "float" (the loaded float model's),
// "ptq" (dynamic / weight-only PTQ's own accuracy), each backend's test accuracy by
// backend name in the record's order, and "epoch_s" (median epoch seconds). Absent ones
// are left out.
std::vector<std::pair<std::string, double>> Headline(const quantlab::ResultRecord& record);

struct SummaryRow {
  std::string name;
  std::string config_id;
  std::string status;  // ok, failed, skipped, ...
  double seconds = 0;
  std::string note;                              // an error, or "run by another process"
  std::optional<quantlab::ResultRecord> record;  // the record on disk, when there is one
};

// The aligned member table, then (when some members differ only in their seed) the
// table of seed groups with mean ± CI per column.
std::string FormatSummary(const std::vector<SummaryRow>& rows);

}  // namespace quant

#endif  // EXPERIMENTS_SWEEP_SUMMARY_H_
