#include "quant/formats/format_table.h"

#include <cmath>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/formats/number_format.h"

namespace quant {
namespace {

// Data sets from our own transforms of a 64-bit Mersenne Twister (the
// standard library's distributions are not specified bit for bit).
std::vector<std::vector<float>> DataSets(int n, uint64_t seed) {
  std::mt19937_64 gen(seed);
  auto uniform = [&gen] {  // (0, 1)
    return (static_cast<double>(gen() >> 11) + 0.5) * 0x1p-53;
  };
  std::vector<float> normal(n), laplace(n), loguniform(n);
  for (int i = 0; i < n; i += 2) {  // Box-Muller
    const double r = std::sqrt(-2.0 * std::log(uniform())), t = 2 * M_PI * uniform();
    normal[i] = static_cast<float>(r * std::cos(t));
    if (i + 1 < n) normal[i + 1] = static_cast<float>(r * std::sin(t));
  }
  for (int i = 0; i < n; ++i) {
    const double u = uniform() - 0.5;
    laplace[i] = static_cast<float>(-std::copysign(std::log(1 - 2 * std::fabs(u)), u));
  }
  const double lo = std::log(1e-8), hi = std::log(1e4);
  for (int i = 0; i < n; ++i) {
    const double m = std::exp(lo + (hi - lo) * uniform());
    loguniform[i] = static_cast<float>((gen() & 1) ? -m : m);
  }
  return {normal, laplace, loguniform};
}

absl::StatusOr<std::unique_ptr<NumberFormat>> Build(const std::string& name) {
  {
    ParamReader p(YAML::Load("{overflow: saturate}"), "format_table", name);
    auto f = Registry<NumberFormat>::Get().Create(name, p);
    if (f.ok() && p.Finish().ok()) return f;
  }
  ParamReader p(YAML::Node(), "format_table", name);
  auto f = Registry<NumberFormat>::Get().Create(name, p);
  if (!f.ok()) return f.status();
  if (absl::Status s = p.Finish(); !s.ok()) return s;
  return f;
}

std::string Num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return absl::StrFormat("%.4g", v);
}

std::string Db(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "exact" : "-inf";
  return absl::StrFormat("%.1f", v);
}

}  // namespace

double SqnrDb(const std::vector<float>& x, const std::vector<float>& rounded) {
  double signal = 0, noise = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(rounded[i])) return NAN;
    const double d = static_cast<double>(x[i]) - rounded[i];
    signal += static_cast<double>(x[i]) * x[i];
    noise += d * d;
  }
  if (noise == 0) return INFINITY;
  return 10 * std::log10(signal / noise);
}

absl::StatusOr<std::vector<FormatTableRow>> ComputeFormatTable(int samples, uint64_t seed) {
  const std::vector<std::vector<float>> data = DataSets(samples, seed);
  std::vector<FormatTableRow> rows;
  std::vector<float> out(samples);
  for (const std::string& key : Registry<NumberFormat>::Get().Names()) {
    auto built = Build(key);
    if (!built.ok()) return built.status();
    NumberFormat& f = **built;
    const FormatProperties& p = f.properties();
    FormatTableRow row;
    row.key = key;
    row.name = p.name;
    row.bits_per_value = p.bits_per_value;
    row.largest = p.largest;
    row.smallest_normal = p.smallest_normal;
    row.smallest_subnormal = p.smallest_subnormal;
    row.range_binades = std::log2(p.largest / p.smallest_subnormal);
    row.epsilon = p.epsilon;
    double* sqnr[3] = {&row.sqnr_normal_db, &row.sqnr_laplace_db, &row.sqnr_loguniform_db};
    for (int d = 0; d < 3; ++d) {
      f.Reset();
      f.RoundSpan(data[d], absl::MakeSpan(out));
      *sqnr[d] = SqnrDb(data[d], out);
    }
    rows.push_back(row);
  }
  return rows;
}

std::string FormatTableMarkdown(const std::vector<FormatTableRow>& rows) {
  std::string s =
      "| format | name | bits/value | largest | smallest normal | smallest subnormal | range "
      "(binades) | epsilon | SQNR N(0,1) dB | SQNR Laplace(0,1) dB | SQNR log-uniform "
      "[1e-8,1e4] dB |\n"
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const FormatTableRow& r : rows) {
    absl::StrAppend(&s, "| ", r.key, " | ", r.name, " | ", Num(r.bits_per_value), " | ",
                    Num(r.largest), " | ", Num(r.smallest_normal), " | ", Num(r.smallest_subnormal),
                    " | ", absl::StrFormat("%.1f", r.range_binades), " | ", Num(r.epsilon), " | ",
                    Db(r.sqnr_normal_db), " | ", Db(r.sqnr_laplace_db), " | ",
                    Db(r.sqnr_loguniform_db), " |\n");
  }
  return s;
}

}  // namespace quant
