#include "experiments/sweep_summary.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quant {
namespace {

// The continued fraction of the regularised incomplete beta function I_x(a, b)
// (Lentz's method, as in Numerical Recipes' betacf); converges for x < (a+1)/(a+b+2).
double BetaContinuedFraction(double a, double b, double x) {
  constexpr double kTiny = 1e-300;
  double c = 1, d = 1 - (a + b) * x / (a + 1);
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000; ++m) {
    const double m2 = 2.0 * m;
    double aa = m * (b - m) * x / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    c = 1 + aa / c;
    if (std::fabs(d) < kTiny) d = kTiny;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    c = 1 + aa / c;
    if (std::fabs(d) < kTiny) d = kTiny;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < 1e-15) break;
  }
  return h;
}

double RegularisedIncompleteBeta(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front =
      std::exp(std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x));
  if (x < (a + 1) / (a + b + 2)) return front * BetaContinuedFraction(a, b, x) / a;
  return 1 - front * BetaContinuedFraction(b, a, 1 - x) / b;
}

// P(|T| > t) for Student's t with df degrees of freedom.
double TwoSidedTail(double t, double df) { return RegularisedIncompleteBeta(df / 2, 0.5, df / (df + t * t)); }

std::string Percent(double v) { return absl::StrFormat("%.2f", 100 * v); }

}  // namespace

double StudentT975(int df) {
  if (df < 1) return NAN;
  // The tail falls as t grows: bisect for a two-sided tail of 0.05.
  double lo = 0, hi = 1000;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (TwoSidedTail(mid, df) > 0.05 ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

MeanCi Aggregate(const std::vector<double>& values) {
  MeanCi m;
  m.n = static_cast<int>(values.size());
  if (m.n == 0) return m;
  double sum = 0;
  for (double v : values) sum += v;
  m.mean = sum / m.n;
  if (m.n < 2) return m;
  double squares = 0;
  for (double v : values) squares += (v - m.mean) * (v - m.mean);
  m.stddev = std::sqrt(squares / (m.n - 1));
  m.half_width = StudentT975(m.n - 1) * m.stddev / std::sqrt(static_cast<double>(m.n));
  return m;
}

std::string FormatMeanCi(const MeanCi& m, bool percent) {
  const double scale = percent ? 100 : 1;
  if (m.n < 2) return absl::StrFormat("%.2f (n=%d)", scale * m.mean, m.n);
  return absl::StrFormat("%.2f ± %.2f (n=%d)", scale * m.mean, scale * m.half_width, m.n);
}

std::string SeedGroup(const std::string& name) {
  static const std::regex* seed = new std::regex("__seed=[0-9]+");
  return std::regex_replace(name, *seed, "");
}

std::vector<std::pair<std::string, double>> Headline(const quantlab::ResultRecord& r) {
  std::vector<std::pair<std::string, double>> h;
  const auto& metrics = r.metrics();
  if (auto it = metrics.find("final_test_accuracy"); it != metrics.end()) {
    h.emplace_back("trained", it->second);
  } else if (auto float_it = metrics.find("float_test_accuracy"); float_it != metrics.end()) {
    h.emplace_back("float", float_it->second);
  }
  if (r.backends_size() == 0) {
    if (auto it = metrics.find("ptq_test_accuracy"); it != metrics.end()) h.emplace_back("ptq", it->second);
  }
  for (const auto& b : r.backends()) h.emplace_back(b.backend(), b.test_accuracy());
  std::vector<double> epochs;
  for (const auto& e : r.epochs()) epochs.push_back(e.seconds());
  if (!epochs.empty()) {
    std::sort(epochs.begin(), epochs.end());
    const size_t n = epochs.size();
    h.emplace_back("epoch_s", n % 2 == 1 ? epochs[n / 2] : (epochs[n / 2 - 1] + epochs[n / 2]) / 2);
  }
  return h;
}

namespace {

// Columns in a fixed order: float, ptq, the backends as first seen, epoch_s last.
using Headlines = std::vector<std::pair<std::string, double>>;

const double* Find(const Headlines& h, const std::string& key) {
  for (const auto& [k, v] : h) {
    if (k == key) return &v;
  }
  return nullptr;
}

std::vector<std::string> Columns(const std::vector<Headlines>& headlines) {
  std::vector<std::string> columns;
  auto add = [&](const std::string& c) {
    if (std::find(columns.begin(), columns.end(), c) == columns.end()) columns.push_back(c);
  };
  for (const char* first : {"trained", "float", "ptq"}) {
    for (const auto& h : headlines) {
      if (Find(h, first) != nullptr) add(first);
    }
  }
  for (const auto& h : headlines) {
    for (const auto& [k, v] : h) {
      if (k != "trained" && k != "float" && k != "ptq" && k != "epoch_s") add(k);
    }
  }
  for (const auto& h : headlines) {
    if (Find(h, "epoch_s") != nullptr) add("epoch_s");
  }
  return columns;
}

std::string Table(const std::vector<std::vector<std::string>>& cells, size_t left_columns) {
  std::vector<size_t> width;
  for (const auto& row : cells) {
    for (size_t c = 0; c < row.size(); ++c) {
      if (width.size() <= c) width.push_back(0);
      // Width in characters: "±" is two bytes of UTF-8 and one column.
      size_t chars = 0;
      for (unsigned char ch : row[c]) chars += (ch & 0xC0) != 0x80;
      width[c] = std::max(width[c], chars);
    }
  }
  std::string out;
  for (const auto& row : cells) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      size_t chars = 0;
      for (unsigned char ch : row[c]) chars += (ch & 0xC0) != 0x80;
      const std::string pad(width[c] - chars, ' ');
      // Names and ids left-aligned, the rest right-aligned.
      line += c < left_columns ? row[c] + pad : pad + row[c];
      if (c + 1 < row.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string FormatSummary(const std::vector<SummaryRow>& rows) {
  std::vector<Headlines> headlines;
  for (const SummaryRow& r : rows) {
    headlines.push_back(r.record.has_value() && r.record->status() == quantlab::ResultRecord::OK ? Headline(*r.record)
                                                                                                 : Headlines{});
  }
  const std::vector<std::string> columns = Columns(headlines);
  auto header = [&](const std::string& first, std::vector<std::string> more) {
    std::vector<std::string> h = {first};
    for (std::string& m : more) h.push_back(std::move(m));
    for (const std::string& c : columns) h.push_back(c == "epoch_s" ? "epoch s" : c + " %");
    return h;
  };
  std::vector<std::vector<std::string>> cells = {header("experiment", {"id", "status", "seconds"})};
  std::vector<std::string> notes;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<std::string> row = {rows[i].name, rows[i].config_id, rows[i].status,
                                    absl::StrFormat("%.1f", rows[i].seconds)};
    for (const std::string& c : columns) {
      const double* v = Find(headlines[i], c);
      row.push_back(v == nullptr ? "-" : c == "epoch_s" ? absl::StrFormat("%.2f", *v) : Percent(*v));
    }
    cells.push_back(std::move(row));
    if (!rows[i].note.empty()) notes.push_back(absl::StrCat(rows[i].name, ": ", rows[i].note));
  }
  std::string out = Table(cells, 3);
  if (!notes.empty()) out += "\n";
  for (const std::string& n : notes) absl::StrAppend(&out, n, "\n");

  // Seed groups, in the order of their first member.
  std::vector<std::string> order;
  std::map<std::string, std::vector<size_t>> groups;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (headlines[i].empty()) continue;
    const std::string g = SeedGroup(rows[i].name);
    if (groups[g].empty()) order.push_back(g);
    groups[g].push_back(i);
  }
  bool any = false;
  std::vector<std::vector<std::string>> seed_cells = {header("over seeds", {})};
  for (const std::string& g : order) {
    if (groups[g].size() < 2) continue;
    any = true;
    std::vector<std::string> row = {g};
    for (const std::string& c : columns) {
      std::vector<double> values;
      for (size_t i : groups[g]) {
        if (const double* v = Find(headlines[i], c)) values.push_back(*v);
      }
      row.push_back(values.empty() ? "-" : FormatMeanCi(Aggregate(values), c != "epoch_s"));
    }
    seed_cells.push_back(std::move(row));
  }
  if (any) absl::StrAppend(&out, "\nmean ± 95 % confidence interval (Student's t) over seeds:\n", Table(seed_cells, 1));
  return out;
}

}  // namespace quant
