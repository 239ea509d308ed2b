#include "experiments/report.h"

#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "experiments/record.h"
#include "experiments/report_tables.h"
#include "experiments/sweep_summary.h"
#include "nlohmann/json.hpp"
#include "quant/core/atomic_file.h"
#include "quant/core/status_macros.h"

namespace quant {
namespace {

using Json = nlohmann::json;

std::string Scalar(const YAML::Node& node, const std::string& fallback = "") {
  return node.IsDefined() && node.IsScalar() ? node.Scalar() : fallback;
}

// node[k1][k2]... without yaml-cpp's exceptions for a key path that is not there.
YAML::Node Get(const YAML::Node& node, std::initializer_list<const char*> path) {
  YAML::Node cur = node;  // a handle: reset() below rebinds it, nothing is written
  for (const char* key : path) {
    if (!cur.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node& c = cur;
    YAML::Node next = c[key];
    if (!next.IsDefined()) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(next);
  }
  return cur;
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '&') {
      out += "&amp;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string ToHtml(const CuratedTable& t) {
  std::string out = "<table>\n<tr>";
  for (const std::string& h : t.header) absl::StrAppend(&out, "<th>", HtmlEscape(h), "</th>");
  out += "</tr>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (const std::string& c : row) absl::StrAppend(&out, "<td>", HtmlEscape(c), "</td>");
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

// The value of each axis (key path -> value text) a run was given, seed excluded.
std::map<std::string, std::string> Axes(const ReportRun& r) {
  std::map<std::string, std::string> axes;
  for (const std::string& o : r.record.overrides()) {
    const size_t eq = o.find('=');
    const std::string key = o.substr(0, eq);
    if (key == "seed") continue;
    std::string value = eq == std::string::npos ? "" : o.substr(eq + 1);
    if (value.size() > 48) value = value.substr(0, 45) + "...";
    axes[key] = value;
  }
  return axes;
}

// One table per sweep: a row per seed group, a column per axis that varies in it,
// then the headline figures (mean ± 95 % CI over seeds, n).
std::vector<CuratedTable> SweepTables(const std::vector<ReportRun>& runs) {
  std::map<std::string, std::vector<const ReportRun*>> families;
  for (const ReportRun& r : runs) families[r.family].push_back(&r);
  std::vector<CuratedTable> tables;
  for (const auto& [family, members] : families) {
    std::map<std::string, std::set<std::string>> values;
    for (const ReportRun* r : members) {
      for (const auto& [k, v] : Axes(*r)) values[k].insert(v);
    }
    std::vector<std::string> varying;
    for (const auto& [k, v] : values) {
      if (v.size() > 1) varying.push_back(k);
    }
    // Seed groups in order of first appearance; headline columns as their records give them.
    std::vector<std::string> order;
    std::map<std::string, std::vector<const ReportRun*>> groups;
    std::vector<std::string> columns;
    std::map<const ReportRun*, std::map<std::string, double>> headline;  // each run's, computed once
    for (const ReportRun* r : members) {
      if (groups[r->seed_group].empty()) order.push_back(r->seed_group);
      groups[r->seed_group].push_back(r);
      for (const auto& [k, v] : Headline(r->record)) {
        headline[r][k] = v;
        if (std::find(columns.begin(), columns.end(), k) == columns.end()) columns.push_back(k);
      }
    }
    // epoch_s last.
    std::stable_partition(columns.begin(), columns.end(), [](const std::string& c) { return c != "epoch_s"; });
    int max_seeds = 0;
    for (const auto& [g, list] : groups) max_seeds = std::max<int>(max_seeds, static_cast<int>(list.size()));
    CuratedTable t;
    t.id = family;
    t.title = absl::StrCat(family, " (", members.size(), " run", members.size() == 1 ? "" : "s",
                           max_seeds > 1 ? absl::StrCat(", up to ", max_seeds, " seeds: mean ± 95 % CI") : "", ")");
    t.header.push_back("run");
    for (const std::string& v : varying) t.header.push_back(v);
    for (const std::string& c : columns) t.header.push_back(c == "epoch_s" ? "epoch s" : c + " %");
    for (const std::string& g : order) {
      const auto& list = groups[g];
      std::vector<std::string> row = {g == family ? g : g.substr(std::min(g.size(), family.size() + 2))};
      const auto axes = Axes(*list.front());
      for (const std::string& v : varying) row.push_back(axes.count(v) > 0 ? axes.at(v) : "-");
      for (const std::string& c : columns) {
        std::vector<double> xs;
        for (const ReportRun* r : list) {
          if (auto it = headline[r].find(c); it != headline[r].end()) xs.push_back(it->second);
        }
        const bool percent = c != "epoch_s";
        if (xs.empty()) {
          row.push_back("-");
        } else if (xs.size() == 1) {
          row.push_back(absl::StrFormat("%.2f", (percent ? 100 : 1) * xs[0]));
        } else {
          row.push_back(FormatMeanCi(Aggregate(xs), percent));
        }
      }
      t.rows.push_back(std::move(row));
    }
    tables.push_back(std::move(t));
  }
  return tables;
}

int WeightBits(const YAML::Node& config) {
  const std::string bits = Scalar(Get(config, {"quant", "weights", "bits"}));
  return bits.empty() ? 0 : std::atoi(bits.c_str());
}

int ActivationBits(const YAML::Node& config) {
  const std::string bits = Scalar(Get(config, {"quant", "activations", "bits"}));
  return bits.empty() ? 0 : std::atoi(bits.c_str());
}

Json Point(double x, const std::vector<double>& ys, const std::string& label = "") {
  const MeanCi m = Aggregate(ys);
  Json p = {{"x", x}, {"y", 100 * m.mean}, {"err", 100 * m.half_width}, {"n", m.n}};
  if (!label.empty()) p["label"] = label;
  return p;
}

// Accuracy vs weight bits: a panel per model, a series per scheme (and activation
// bits), a point per configuration: mean ± 95 % CI over its seeds (only seeds are
// aggregated; configurations that differ otherwise stay separate points).
Json AccuracyVsBits(const std::vector<ReportRun>& runs) {
  // model -> series -> seed group -> (bits, accuracies)
  std::map<std::string, std::map<std::string, std::map<std::string, std::pair<int, std::vector<double>>>>> models;
  // Per sweep, the axes that vary other than the bits and what the scheme label says
  // (ptq.passes, the model): they tell its series apart (LSQ's every-layer W4A4 row, ...).
  std::map<std::string, std::map<std::string, std::set<std::string>>> family_axes;
  for (const ReportRun& r : runs) {
    for (const auto& [k, v] : Axes(r)) family_axes[r.family][k].insert(v);
  }
  for (const ReportRun& r : runs) {
    const int w = WeightBits(r.config);
    const double acc = DeployedAccuracy(r.record);
    if (w <= 0 || std::isnan(acc) || Get(r.config, {"analysis"}).IsDefined()) continue;
    const int a = ActivationBits(r.config);
    const std::string model = Scalar(Get(r.config, {"model", "name"}), "model");
    // Activations at the weights' bits (W8A8, W4A4, ...) are one series, others one per activation width.
    std::string series = absl::StrCat(SchemeLabel(r.config).substr(model.size() + 1), a == w  ? " A=W"
                                                                                      : a > 0 ? absl::StrCat(" A", a)
                                                                                              : "");
    for (const auto& [k, v] : Axes(r)) {
      if (k == "quant.weights.bits" || k == "quant.activations.bits" || k == "ptq.passes" || k == "model.name" ||
          family_axes[r.family][k].size() < 2) {
        continue;
      }
      absl::StrAppend(&series, " ", k.substr(k.rfind('.') + 1), "=", v.size() > 24 ? v.substr(0, 21) + "..." : v);
    }
    auto& point = models[model][series][r.seed_group];
    point.first = w;
    point.second.push_back(acc);
  }
  Json panels = Json::array();
  for (const auto& [model, series] : models) {
    Json panel = {{"title", model}, {"series", Json::array()}};
    for (const auto& [label, groups] : series) {
      Json s = {{"label", label}, {"points", Json::array()}};
      for (const auto& [group, point] : groups) s["points"].push_back(Point(point.first, point.second, group));
      panel["series"].push_back(s);
    }
    panels.push_back(panel);
  }
  return {{"kind", "panels"},
          {"file", "accuracy_vs_bits.png"},
          {"title",
           "Test accuracy vs weight bits (integer model where deployed)\na point per configuration, "
           "mean ± 95 % CI over its seeds; lines join a series with one configuration per bit width"},
          {"xlabel", "weight bits"},
          {"ylabel", "test accuracy (%)"},
          {"panels", panels}};
}

// Accuracy vs packed model size, a series per model, with its Pareto front.
Json AccuracyVsSize(const std::vector<ReportRun>& runs) {
  std::map<std::string, Json> series;
  for (const ReportRun& r : runs) {
    const auto& m = r.record.metrics();
    auto it = m.find("ptq_packed_model_bytes");
    const double acc = DeployedAccuracy(r.record);
    if (it == m.end() || std::isnan(acc)) continue;
    const std::string model = Scalar(Get(r.config, {"model", "name"}), "model");
    if (!series.count(model)) series[model] = {{"label", model}, {"points", Json::array()}};
    series[model]["points"].push_back(Point(it->second / 1024.0, {acc}, r.seed_group));
  }
  Json out = Json::array();
  for (auto& [model, s] : series) out.push_back(s);
  return {{"kind", "pareto"},
          {"file", "accuracy_vs_size.png"},
          {"title", "Test accuracy vs packed model size (Pareto front per model)"},
          {"xlabel", "packed model size (KiB)"},
          {"ylabel", "test accuracy (%)"},
          {"series", out}};
}

// Test accuracy per epoch of each sweep that trained, one line per run (at most 12).
std::vector<Json> TrainingCurves(const std::vector<ReportRun>& runs) {
  std::map<std::string, std::vector<const ReportRun*>> families;
  for (const ReportRun& r : runs) {
    if (r.record.epochs_size() > 0) families[r.family].push_back(&r);
  }
  std::vector<Json> plots;
  for (const auto& [family, members] : families) {
    Json series = Json::array();
    for (size_t i = 0; i < members.size() && i < 12; ++i) {
      const ReportRun& r = *members[i];
      Json s = {{"label", r.record.name() == family ? family : r.record.name().substr(family.size() + 2)},
                {"points", Json::array()}};
      for (int e = 0; e < r.record.epochs_size(); ++e) {
        s["points"].push_back(Point(e + 1, {r.record.epochs(e).test_accuracy()}));
      }
      series.push_back(s);
    }
    plots.push_back({{"kind", "lines"},
                     {"file", "training_" + family + ".png"},
                     {"title", absl::StrCat("Training: ", family, members.size() > 12 ? " (first 12 runs)" : "")},
                     {"xlabel", "epoch"},
                     {"ylabel", "test accuracy (%) after the epoch"},
                     {"series", series},
                     {"xticks", "integer"}});
  }
  return plots;
}

// Images/s per backend at batch 1 and 256: per model, the run that timed the most backends
// (the latest of those).
Json BackendSpeed(const std::vector<ReportRun>& runs) {
  std::map<std::string, std::pair<std::pair<int, std::string>, const ReportRun*>> best;  // (count, start), run
  for (const ReportRun& r : runs) {
    int timed = 0;
    for (const auto& b : r.record.backends()) timed += b.images_per_s_batch256() > 0;
    if (timed == 0) continue;
    const std::string model = Scalar(Get(r.config, {"model", "name"}), "model");
    const std::pair<int, std::string> key(timed, r.record.start_time());
    if (!best.count(model) || best[model].first < key) best[model] = {key, &r};
  }
  Json groups = Json::array();
  for (const auto& [model, chosen] : best) {
    const ReportRun* r = chosen.second;
    Json g = {{"label", model}, {"run", r->record.name()}, {"bars", Json::array()}};
    for (const auto& b : r->record.backends()) {
      g["bars"].push_back(
          {{"label", b.backend()}, {"batch1", b.images_per_s_batch1()}, {"batch256", b.images_per_s_batch256()}});
    }
    groups.push_back(g);
  }
  return {{"kind", "speed"},
          {"file", "backend_speed.png"},
          {"title", "Integer model speed per backend"},
          {"ylabel", "images/s (log scale)"},
          {"groups", groups}};
}

// Per sweep and model whose runs kept the debugger's tensors: the float histograms of up to
// four tensors (those with the lowest SQNR in any run) with every run's calibrated range,
// labelled by what varies between the runs. Only ops that choose their output grid count:
// a max pool or a flatten passes its input's values on in a wider container.
std::vector<Json> Histograms(const std::vector<ReportRun>& runs) {
  static const std::set<std::string>* requantizing = new std::set<std::string>{
      "fully_connected", "conv2d", "average_pool2d", "global_average_pool", "add", "concat", "hardswish",
      "sigmoid",         "tanh"};
  std::map<std::pair<std::string, std::string>, std::vector<const ReportRun*>> groups;  // (family, model)
  for (const ReportRun& r : runs) {
    bool has = false;
    for (const auto& t : r.record.debug_tensors()) has = has || t.histogram_size() > 0;
    if (has) groups[{r.family, Scalar(Get(r.config, {"model", "name"}), "model")}].push_back(&r);
  }
  std::vector<Json> plots;
  for (const auto& [key, members] : groups) {
    const auto& [family, model] = key;
    // What tells the runs apart: the axes whose values differ among them.
    std::map<std::string, std::set<std::string>> values;
    for (const ReportRun* r : members) {
      for (const auto& [k, v] : Axes(*r)) values[k].insert(v);
    }
    auto label_of = [&](const ReportRun& r) {
      std::vector<std::string> parts;
      for (const auto& [k, v] : Axes(r)) {
        if (values[k].size() > 1) parts.push_back(absl::StrCat(k.substr(k.rfind('.') + 1), "=", v));
      }
      return parts.empty() ? r.record.name() : absl::StrJoin(parts, ", ");
    };
    std::map<std::string, double> lowest;  // tensor -> lowest SQNR over runs
    for (const ReportRun* r : members) {
      for (const auto& t : r->record.debug_tensors()) {
        if (t.histogram_size() == 0 || requantizing->count(t.kind()) == 0) continue;
        auto [it, fresh] = lowest.emplace(t.tensor(), t.sqnr_db());
        if (!fresh) it->second = std::min(it->second, t.sqnr_db());
      }
    }
    std::vector<std::pair<double, std::string>> ranked;
    for (const auto& [tensor, sqnr] : lowest) ranked.emplace_back(sqnr, tensor);
    std::sort(ranked.begin(), ranked.end());
    Json panels = Json::array();
    for (size_t k = 0; k < ranked.size() && k < 4; ++k) {
      Json panel = {{"tensor", absl::StrCat(model, " ", ranked[k].second)}, {"ranges", Json::array()}};
      for (const ReportRun* r : members) {
        for (const auto& t : r->record.debug_tensors()) {
          if (t.tensor() != ranked[k].second) continue;
          if (!panel.contains("counts")) {
            panel["min"] = t.histogram_min();
            panel["max"] = t.histogram_max();
            panel["counts"] = Json(std::vector<int64_t>(t.histogram().begin(), t.histogram().end()));
          }
          panel["ranges"].push_back({{"label", label_of(*r)},
                                     {"lo", t.scale() * (t.quant_min() - t.zero_point())},
                                     {"hi", t.scale() * (t.quant_max() - t.zero_point())},
                                     {"sqnr_db", std::isfinite(t.sqnr_db()) ? t.sqnr_db() : 999.0}});
        }
      }
      panels.push_back(panel);
    }
    if (panels.empty()) continue;
    plots.push_back({{"kind", "histograms"},
                     {"file", absl::StrCat("histograms_", family, "_", model, ".png")},
                     {"title", absl::StrCat(family, " (", model,
                                            "): float values on 64 test images, and each run's "
                                            "calibrated range (its SQNR)")},
                     {"panels", panels}});
  }
  return plots;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs `python plot_script spec.json out_dir`; its stderr is the error if it fails.
absl::Status RunPlotter(const ReportOptions& options, const std::string& spec_path, const std::string& plot_dir) {
  const std::string log = plot_dir + "/plots.log";
  const pid_t pid = fork();
  if (pid < 0) return absl::ResourceExhaustedError("fork failed");
  if (pid == 0) {
    FILE* f = std::freopen(log.c_str(), "w", stderr);
    (void)f;
    execl(options.python.c_str(), options.python.c_str(), options.plot_script.c_str(), spec_path.c_str(),
          plot_dir.c_str(), static_cast<char*>(nullptr));
    std::fprintf(stderr, "cannot run %s\n", options.python.c_str());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    std::error_code ec;
    std::filesystem::remove(log, ec);
    return absl::OkStatus();
  }
  std::string text = ReadFile(log);
  if (text.size() > 2000) text = "..." + text.substr(text.size() - 2000);
  return absl::InternalError(absl::StrCat("the plots failed (", options.python, " ", options.plot_script,
                                          "; matplotlib from Debian's python3-matplotlib, "
                                          "installed by scripts/setup.sh): ",
                                          text));
}

}  // namespace

std::string SchemeLabel(const YAML::Node& config) {
  const std::string model = Scalar(Get(config, {"model", "name"}), "model");
  const std::string scheme = Scalar(Get(config, {"train", "scheme"}), Get(config, {"train"}).IsDefined() ? "fp32" : "");
  if (!scheme.empty() && scheme != "fp32") {
    std::string quantizer = Scalar(Get(config, {"quant", "weights", "quantizer"}), "affine");
    return absl::StrCat(model, " ", scheme, quantizer == "affine" ? "" : "/" + quantizer);
  }
  if (Get(config, {"ptq"}).IsDefined()) {
    std::string label = Scalar(Get(config, {"ptq", "method"}), "static");
    for (const auto& pass : Get(config, {"ptq", "passes"})) {
      absl::StrAppend(&label, "+", pass.IsMap() ? Scalar(pass["name"], "?") : Scalar(pass, "?"));
    }
    return absl::StrCat(model, " ", label);
  }
  return absl::StrCat(model, " ", scheme.empty() ? "float" : scheme);
}

double DeployedAccuracy(const quantlab::ResultRecord& r) {
  for (const auto& b : r.backends()) {
    if (b.backend() == "reference") return b.test_accuracy();
  }
  if (r.backends_size() > 0) return r.backends(0).test_accuracy();
  const auto& m = r.metrics();
  for (const char* key : {"ptq_test_accuracy", "final_test_accuracy", "float_test_accuracy"}) {
    if (auto it = m.find(key); it != m.end()) return it->second;
  }
  return NAN;
}

absl::StatusOr<std::vector<ReportRun>> LoadReportRuns(const std::string& db_path, const std::string& name_filter) {
  std::error_code ec_exists;
  if (!std::filesystem::exists(db_path, ec_exists)) {
    return absl::NotFoundError(absl::StrCat(db_path,
                                            ": no results database (a run's output dir has results.db; "
                                            "//experiments:import makes one from run folders)"));
  }
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string message = sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat(db_path, ": cannot open: ", message));
  }
  sqlite3_busy_timeout(db, 60000);
  sqlite3_stmt* q = nullptr;
  const char* sql =
      "SELECT run, seed_group, config_yaml, record_json FROM runs WHERE status = 'OK' AND instr(name, ?) > 0 "
      "ORDER BY start_time, name";
  if (sqlite3_prepare_v2(db, sql, -1, &q, nullptr) != SQLITE_OK) {
    const std::string message = sqlite3_errmsg(db);
    sqlite3_close(db);
    return absl::DataLossError(absl::StrCat(db_path, ": not a quantlab results database: ", message));
  }
  sqlite3_bind_text(q, 1, name_filter.data(), static_cast<int>(name_filter.size()), SQLITE_TRANSIENT);
  std::vector<ReportRun> runs;
  absl::Status status;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    auto text = [&](int c) {
      const unsigned char* t = sqlite3_column_text(q, c);
      return t == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(t));
    };
    ReportRun r;
    r.run = text(0);
    r.seed_group = text(1);
    auto record = RecordFromJson(text(3), absl::StrCat(db_path, ": run ", r.run));
    if (!record.ok()) {
      status = record.status();
      break;
    }
    r.record = *std::move(record);
    r.family = r.record.name().substr(0, r.record.name().find("__"));
    try {
      r.config = YAML::Load(text(2));
    } catch (const YAML::Exception& e) {
      status = absl::DataLossError(absl::StrCat(db_path, ": run ", r.run, ": its config does not parse: ", e.msg));
      break;
    }
    runs.push_back(std::move(r));
  }
  if (status.ok() && rc != SQLITE_DONE && rc != SQLITE_ROW) {
    status = absl::DataLossError(absl::StrCat(db_path, ": ", sqlite3_errmsg(db)));
  }
  sqlite3_finalize(q);
  sqlite3_close(db);
  if (!status.ok()) return status;
  return runs;
}

absl::Status WriteReport(const std::vector<ReportRun>& runs, const ReportOptions& options) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(fs::path(options.out_dir) / "plots", ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(options.out_dir, ": cannot create: ", ec.message()));
  const std::string plot_dir = (fs::path(options.out_dir) / "plots").string();

  // Plots first: a report is only written when its plots exist.
  std::vector<Json> plots = {AccuracyVsBits(runs), AccuracyVsSize(runs), BackendSpeed(runs)};
  for (Json& p : TrainingCurves(runs)) plots.push_back(std::move(p));
  for (Json& p : Histograms(runs)) plots.push_back(std::move(p));
  // A plot with nothing to show is left out, and said so.
  std::vector<std::string> empty;
  std::vector<Json> drawn;
  for (Json& p : plots) {
    const bool has = (p.contains("series") && !p["series"].empty()) || (p.contains("groups") && !p["groups"].empty()) ||
                     (p.contains("panels") && !p["panels"].empty());
    if (has) {
      drawn.push_back(std::move(p));
    } else {
      empty.push_back(p["title"].get<std::string>());
    }
  }
  const std::string spec_path = (fs::path(options.out_dir) / "plots.json").string();
  RETURN_IF_ERROR(WriteFileAtomically(spec_path, Json(drawn).dump(1) + "\n"));
  if (!drawn.empty()) RETURN_IF_ERROR(RunPlotter(options, spec_path, plot_dir));

  std::vector<CuratedTable> curated;
  if (!options.tables_file.empty()) {
    ASSIGN_OR_RETURN(curated, BuildCuratedTables(options.tables_file, runs));
  }
  const std::vector<CuratedTable> sweeps = SweepTables(runs);

  std::string md = absl::StrCat("# ", options.title, "\n\n", runs.size(), " OK runs. Accuracies in %; ",
                                "seed groups (runs that differ only in their seed) as mean ± 95 % confidence ",
                                "interval (Student's t), n runs.\n\n");
  std::string html = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", HtmlEscape(options.title),
      "</title>\n<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
      "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child,th:first-child{"
      "text-align:left}img{max-width:100%}</style></head><body>\n<h1>",
      HtmlEscape(options.title), "</h1>\n<p>", runs.size(),
      " OK runs. Accuracies in %; seed groups (runs that differ only in their seed) as mean ± 95 % confidence "
      "interval (Student's t), n runs.</p>\n");
  if (!curated.empty()) {
    md += "## Tables\n\n";
    html += "<h2>Tables</h2>\n";
    for (const CuratedTable& t : curated) {
      absl::StrAppend(&md, "### ", t.title, "\n\n", CuratedMarkdown(t), "\n");
      absl::StrAppend(&html, "<h3>", HtmlEscape(t.title), "</h3>\n", ToHtml(t));
    }
  }
  md += "## Plots\n\n";
  html += "<h2>Plots</h2>\n";
  for (const Json& p : drawn) {
    const std::string file = p["file"].get<std::string>();
    // Plot titles may break lines for the figure; the page's headings do not.
    std::string title = p["title"].get<std::string>();
    std::replace(title.begin(), title.end(), '\n', ' ');
    absl::StrAppend(&md, "![", title, "](plots/", file, ")\n\n");
    const std::string png = ReadFile(plot_dir + "/" + file);
    if (png.size() < 8 || png.compare(1, 3, "PNG") != 0) {
      return absl::InternalError(absl::StrCat(plot_dir, "/", file, ": the plotter wrote no PNG"));
    }
    absl::StrAppend(&html, "<h3>", HtmlEscape(title), "</h3>\n<img alt=\"", HtmlEscape(title),
                    "\" src=\"data:image/png;base64,", absl::Base64Escape(png), "\">\n");
  }
  for (std::string e : empty) {
    std::replace(e.begin(), e.end(), '\n', ' ');
    absl::StrAppend(&md, "(", e, ": no run has the figures for it.)\n\n");
    absl::StrAppend(&html, "<p>(", HtmlEscape(e), ": no run has the figures for it.)</p>\n");
  }
  md += "## Sweeps\n\n";
  html += "<h2>Sweeps</h2>\n";
  for (const CuratedTable& t : sweeps) {
    absl::StrAppend(&md, "### ", t.title, "\n\n", CuratedMarkdown(t), "\n");
    absl::StrAppend(&html, "<h3>", HtmlEscape(t.title), "</h3>\n", ToHtml(t));
  }
  html += "</body></html>\n";
  RETURN_IF_ERROR(WriteFileAtomically((fs::path(options.out_dir) / "report.md").string(), md));
  return WriteFileAtomically((fs::path(options.out_dir) / "report.html").string(), html);
}

}  // namespace quant
