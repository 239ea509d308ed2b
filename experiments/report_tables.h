// Curated results tables defined in YAML (the README's results tables): each cell is
// text with expressions in braces, evaluated on the latest OK run of a named experiment.
//
//   tables:
//     - id: schemes                           # <!-- report:schemes --> marks it in a Markdown file
//       title: Training schemes
//       header: [scheme, "{m} top-1", vs fp32]
//       repeat: {var: m, values: [mlp, cnn], first: 1, count: 2}   # columns 1..2 once per model
//       rows:
//         - [lsq W4A4, "{deployed@{m}_lsq_w4a4}", "{trained@{m}_lsq_w4a4 - trained@{m}_fp32|+}"]
//
// An expression is FIELD@EXPERIMENT, or the difference of two, then |FORMAT:
//   fields:  trained (final_test_accuracy), float (float_test_accuracy), ptq (ptq_test_accuracy),
//            simulated (qat_simulated_test_accuracy), deployed (the integer model's accuracy:
//            reference backend first), backend.NAME, agree.NAME (top-1 agreement with the QAT
//            simulation on backend NAME), metric.KEY;
//   formats: % (default: "88.82 %"), n ("88.82"), + ("+0.10": points), ci (mean ± 95 % CI over
//            seeds, "88.82 ± 0.31 (n=3)"), g (the raw value), x ("2.36x").
// "{{" ... "}}" is literal text in braces ("configs/{{mlp,cnn}}_fp32.yaml").
// EXPERIMENT is a run's name, or a seed group (a name without its __seed=N part): the mean
// of its seeds. A missing experiment is "not run", a missing field "-".
#ifndef EXPERIMENTS_REPORT_TABLES_H_
#define EXPERIMENTS_REPORT_TABLES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "experiments/report.h"

namespace quant {

// A table of the report: a curated one (from --tables) or a sweep's.
struct CuratedTable {
  std::string id;
  std::string title;
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

absl::StatusOr<std::vector<CuratedTable>> BuildCuratedTables(const std::string& tables_file,
                                                             const std::vector<ReportRun>& runs);

// Evaluates one cell's text (exposed for tests).
absl::StatusOr<std::string> EvaluateCell(const std::string& text, const std::vector<ReportRun>& runs);

// Replaces, in the Markdown file `path`, the text between "<!-- report:ID -->" and
// "<!-- /report:ID -->" with each table's Markdown. A marker without its table, or a
// table whose markers are missing, is an error; the file is replaced atomically.
absl::Status UpdateMarkdown(const std::string& path, const std::vector<CuratedTable>& tables);

// The table as Markdown ("|" inside a cell escaped).
std::string CuratedMarkdown(const CuratedTable& table);

}  // namespace quant

#endif  // EXPERIMENTS_REPORT_TABLES_H_
