// The comparison table of every registered number format: bits per value,
// largest, smallest normal and subnormal, dynamic range in binades
// (log2(largest / smallest subnormal)), epsilon, and the signal-to-
// quantization-noise ratio 10 log10(sum x^2 / sum (x - Round(x))^2) in dB on
// three data sets: N(0,1), Laplace(0,1) and log-uniform magnitudes over
// [1e-8, 1e4] with random signs.
//
// Each format is built with its defaults, plus `overflow: saturate` where the
// format has that choice (so that the SQNR measures the grid, not whether
// overflow gives inf/NaN). Block formats block along the sample array;
// Flexpoint rounds each data set as one tensor (its first Autoflex step).
#ifndef QUANT_FORMATS_FORMAT_TABLE_H_
#define QUANT_FORMATS_FORMAT_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quant {

struct FormatTableRow {
  std::string key;   // registry name
  std::string name;  // the format's own name, e.g. "posit<16,2>"
  double bits_per_value = 0;
  double largest = 0, smallest_normal = 0, smallest_subnormal = 0;
  double range_binades = 0;
  double epsilon = 0;
  double sqnr_normal_db = 0, sqnr_laplace_db = 0, sqnr_loguniform_db = 0;
};

// Rows for every format in the registry (alphabetical), `samples` values per
// data set drawn with `seed`.
absl::StatusOr<std::vector<FormatTableRow>> ComputeFormatTable(int samples, uint64_t seed);

// SQNR in dB of `rounded` against `x` (+inf when identical, NaN when a
// rounded value is not finite).
double SqnrDb(const std::vector<float>& x, const std::vector<float>& rounded);

// A Markdown table of `rows`.
std::string FormatTableMarkdown(const std::vector<FormatTableRow>& rows);

}  // namespace quant

#endif  // QUANT_FORMATS_FORMAT_TABLE_H_
