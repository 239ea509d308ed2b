#include "experiments/report_tables.h"

#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "experiments/config_loader.h"
#include "experiments/sweep_summary.h"
#include "quant/core/atomic_file.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

// The runs an experiment name stands for: the latest run of that name, else the latest
// run of each name of that seed group.
std::vector<const ReportRun*> RunsOf(const std::string& experiment, const std::vector<ReportRun>& runs) {
  const ReportRun* exact = nullptr;
  std::map<std::string, const ReportRun*> seeds;
  for (const ReportRun& r : runs) {  // in start order: of one name, the latest wins
    if (r.record.name() == experiment) exact = &r;
    if (r.seed_group == experiment) seeds[r.record.name()] = &r;
  }
  if (exact != nullptr) return {exact};
  std::vector<const ReportRun*> out;
  for (const auto& [name, r] : seeds) out.push_back(r);
  return out;
}

std::optional<double> Field(const std::string& field, const quantlab::ResultRecord& r) {
  const auto& m = r.metrics();
  auto metric = [&](const std::string& key) -> std::optional<double> {
    auto it = m.find(key);
    if (it == m.end()) return std::nullopt;
    return it->second;
  };
  if (field == "trained") return metric("final_test_accuracy");
  if (field == "float") return metric("float_test_accuracy");
  if (field == "ptq") return metric("ptq_test_accuracy");
  if (field == "simulated") return metric("qat_simulated_test_accuracy");
  if (field == "deployed") {
    const double d = DeployedAccuracy(r);
    if (std::isnan(d)) return std::nullopt;
    return d;
  }
  for (const char* prefix : {"backend.", "agree."}) {
    if (field.rfind(prefix, 0) != 0) continue;
    const std::string name = field.substr(std::string(prefix).size());
    for (const auto& b : r.backends()) {
      if (b.backend() != name) continue;
      return std::string(prefix) == "backend." ? b.test_accuracy() : b.prediction_agreement_with_simulation();
    }
    return std::nullopt;
  }
  if (field.rfind("metric.", 0) == 0) return metric(field.substr(7));
  return std::nullopt;
}

bool KnownField(const std::string& f) {
  return f == "trained" || f == "float" || f == "ptq" || f == "simulated" || f == "deployed" ||
         f.rfind("backend.", 0) == 0 || f.rfind("agree.", 0) == 0 || f.rfind("metric.", 0) == 0;
}

// What one FIELD@EXPERIMENT term gives: a value per seed (empty: not run / absent).
struct Term {
  std::vector<double> values;
  bool ran = false;
};

absl::StatusOr<Term> EvaluateTerm(const std::string& text, const std::vector<ReportRun>& runs) {
  const std::string term(absl::StripAsciiWhitespace(text));
  const size_t at = term.find('@');
  if (at == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("'", term, "': expected FIELD@EXPERIMENT"));
  }
  const std::string field = term.substr(0, at), experiment = term.substr(at + 1);
  if (!KnownField(field)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", term, "': unknown field '", field,
                     "'; known: trained, float, ptq, simulated, deployed, backend.NAME, agree.NAME, metric.KEY"));
  }
  Term t;
  for (const ReportRun* r : RunsOf(experiment, runs)) {
    t.ran = true;
    if (auto v = Field(field, r->record)) t.values.push_back(*v);
  }
  return t;
}

absl::StatusOr<std::string> EvaluateExpression(const std::string& expression, const std::vector<ReportRun>& runs) {
  std::string body = expression, format = "%";
  if (const size_t bar = expression.rfind('|'); bar != std::string::npos) {
    body = expression.substr(0, bar);
    format = std::string(absl::StripAsciiWhitespace(expression.substr(bar + 1)));
  }
  // a - b: split at " - " (experiment names hold '-' only inside their config id suffix, never spaced).
  std::vector<std::string> parts = absl::StrSplit(body, " - ");
  if (parts.size() > 2) return absl::InvalidArgumentError(absl::StrCat("'", body, "': at most one difference"));
  ASSIGN_OR_RETURN(Term a, EvaluateTerm(parts[0], runs));
  std::optional<Term> b;
  if (parts.size() == 2) {
    ASSIGN_OR_RETURN(b, EvaluateTerm(parts[1], runs));
  }
  if (!a.ran || (b.has_value() && !b->ran)) return std::string("not run");
  if (a.values.empty() || (b.has_value() && b->values.empty())) return std::string("-");
  const MeanCi ma = Aggregate(a.values);
  double value = ma.mean;
  if (b.has_value()) value -= Aggregate(b->values).mean;
  if (format == "%") return absl::StrFormat("%.2f %%", 100 * value);
  if (format == "n") return absl::StrFormat("%.2f", 100 * value);
  if (format == "+") return absl::StrFormat("%+.2f", 100 * value);
  if (format == "g") return absl::StrFormat("%g", value);
  if (format == "x") return absl::StrFormat("%.2fx", value);
  if (format == "ci") {
    if (b.has_value()) return absl::InvalidArgumentError("|ci takes one term, not a difference");
    return FormatMeanCi(ma, true);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", expression, "': unknown format '", format, "'; known: % n + ci g x"));
}

}  // namespace

absl::StatusOr<std::string> EvaluateCell(const std::string& text, const std::vector<ReportRun>& runs) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t open = text.find('{', i);
    if (open == std::string::npos) {
      out += absl::StrReplaceAll(text.substr(i), {{"}}", "}"}});
      break;
    }
    out += absl::StrReplaceAll(text.substr(i, open - i), {{"}}", "}"}});
    if (open + 1 < text.size() && text[open + 1] == '{') {  // "{{": a literal brace
      const size_t end = text.find("}}", open + 2);
      if (end == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("'", text, "': a {{ without }}"));
      absl::StrAppend(&out, "{", text.substr(open + 2, end - open - 2), "}");
      i = end + 2;
      continue;
    }
    const size_t close = text.find('}', open);
    if (close == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("'", text, "': a { without }"));
    ASSIGN_OR_RETURN(std::string value, EvaluateExpression(text.substr(open + 1, close - open - 1), runs));
    out += value;
    i = close + 1;
  }
  return out;
}

absl::StatusOr<std::vector<CuratedTable>> BuildCuratedTables(const std::string& tables_file,
                                                             const std::vector<ReportRun>& runs) {
  ASSIGN_OR_RETURN(YAML::Node doc, LoadYamlFile(tables_file));
  const YAML::Node list = doc["tables"];
  if (!list.IsDefined() || !list.IsSequence()) {
    return absl::InvalidArgumentError(absl::StrCat(tables_file, ":1:1: tables: expected a list of tables"));
  }
  std::vector<CuratedTable> tables;
  for (size_t k = 0; k < list.size(); ++k) {
    const YAML::Node t = list[k];
    const std::string where = NodeLocation(tables_file, t);
    // yaml-cpp throws on a missing key's node for anything but IsDefined().
    auto has = [&](const char* key, YAML::NodeType::value type) {
      return t.IsMap() && t[key].IsDefined() && t[key].Type() == type;
    };
    if (!has("id", YAML::NodeType::Scalar) || !has("header", YAML::NodeType::Sequence) ||
        !has("rows", YAML::NodeType::Sequence)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tables[", k, "]: expected a map with id, header, rows"));
    }
    for (const auto& kv : t) {
      const std::string key = kv.first.Scalar();
      if (key != "id" && key != "title" && key != "header" && key != "rows" && key != "repeat") {
        return absl::InvalidArgumentError(absl::StrCat(NodeLocation(tables_file, kv.first), ": tables[", k, "].", key,
                                                       ": unknown key; accepted: id, title, header, rows, repeat"));
      }
    }
    CuratedTable table;
    table.id = t["id"].Scalar();
    table.title = has("title", YAML::NodeType::Scalar) ? t["title"].Scalar() : table.id;
    // repeat: the columns [first, first + count) once per value of the variable.
    std::string var;
    std::vector<std::string> values = {""};
    size_t first = 0, count = 0;
    if (t["repeat"].IsDefined()) {
      const YAML::Node r = t["repeat"];
      try {
        var = r["var"].as<std::string>();
        values = r["values"].as<std::vector<std::string>>();
        first = r["first"].as<size_t>();
        count = r["count"].as<size_t>();
      } catch (const YAML::Exception& e) {
        return absl::InvalidArgumentError(absl::StrCat(NodeLocation(tables_file, r), ": tables[", k,
                                                       "].repeat: expected {var, values, first, count}"));
      }
    }
    auto expand = [&](const YAML::Node& cells, size_t row_index) -> absl::StatusOr<std::vector<std::string>> {
      std::vector<std::string> in;
      for (const auto& c : cells) in.push_back(c.IsScalar() ? c.Scalar() : "");
      if (in.size() != t["header"].size() || first + count > in.size()) {
        return absl::InvalidArgumentError(absl::StrCat(NodeLocation(tables_file, cells), ": tables[", k, "] (",
                                                       table.id, ") row ", row_index, ": has ", in.size(),
                                                       " cells; the header has ", t["header"].size()));
      }
      std::vector<std::string> out(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(first));
      for (const std::string& v : values) {
        for (size_t c = first; c < first + count; ++c) {
          out.push_back(var.empty() ? in[c] : absl::StrReplaceAll(in[c], {{"{" + var + "}", v}}));
        }
      }
      out.insert(out.end(), in.begin() + static_cast<std::ptrdiff_t>(first + count), in.end());
      return out;
    };
    ASSIGN_OR_RETURN(table.header, expand(t["header"], 0));
    for (size_t i = 0; i < t["rows"].size(); ++i) {
      ASSIGN_OR_RETURN(std::vector<std::string> cells, expand(t["rows"][i], i + 1));
      std::vector<std::string> row;
      for (const std::string& c : cells) {
        auto value = EvaluateCell(c, runs);
        if (!value.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(NodeLocation(tables_file, t["rows"][i]), ": tables[", k, "] (",
                                                         table.id, ") row ", i + 1, ": ", value.status().message()));
        }
        row.push_back(*std::move(value));
      }
      table.rows.push_back(std::move(row));
    }
    tables.push_back(std::move(table));
  }
  return tables;
}

std::string CuratedMarkdown(const CuratedTable& table) {
  // A "|" inside a cell (a regex in an axis value) would end the cell: escaped.
  auto cells = [](const std::vector<std::string>& row) {
    std::vector<std::string> escaped;
    for (const std::string& c : row) escaped.push_back(absl::StrReplaceAll(c, {{"|", "\\|"}}));
    return absl::StrJoin(escaped, " | ");
  };
  std::string out = absl::StrCat("| ", cells(table.header), " |\n|");
  for (size_t i = 0; i < table.header.size(); ++i) out += " --- |";
  out += "\n";
  for (const auto& row : table.rows) absl::StrAppend(&out, "| ", cells(row), " |\n");
  return out;
}

absl::Status UpdateMarkdown(const std::string& path, const std::vector<CuratedTable>& tables) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  for (const CuratedTable& t : tables) {
    const std::string open = "<!-- report:" + t.id + " -->", close = "<!-- /report:" + t.id + " -->";
    const size_t a = text.find(open);
    const size_t b = text.find(close);
    if (a == std::string::npos || b == std::string::npos || b < a) {
      return absl::NotFoundError(absl::StrCat(path, ": no \"", open, "\" ... \"", close, "\" for table ", t.id));
    }
    text = absl::StrCat(text.substr(0, a + open.size()), "\n", CuratedMarkdown(t), text.substr(b));
  }
  // A marker whose table is not defined: said, not left stale silently.
  for (size_t at = text.find("<!-- report:"); at != std::string::npos; at = text.find("<!-- report:", at + 1)) {
    const size_t end = text.find(" -->", at);
    const std::string id = text.substr(at + 12, end - at - 12);
    bool known = false;
    for (const CuratedTable& t : tables) known = known || t.id == id;
    if (!known) return absl::NotFoundError(absl::StrCat(path, ": marker report:", id, " names no table"));
  }
  return WriteFileAtomically(path, text);
}

}  // namespace quant
