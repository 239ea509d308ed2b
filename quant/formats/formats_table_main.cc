// Prints the comparison table of every registered number format (Markdown).
// Usage: formats_table [samples] [seed]   (defaults: 1048576 samples, seed 0)
#include <cstdio>
#include <cstdlib>

#include "quant/formats/format_table.h"

int main(int argc, char** argv) {
  const int samples = argc > 1 ? std::atoi(argv[1]) : (1 << 20);
  const unsigned long long seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
  if (samples < 2) {
    std::fprintf(stderr, "formats_table: samples must be >= 2\n");
    return 2;
  }
  auto rows = quant::ComputeFormatTable(samples, seed);
  if (!rows.ok()) {
    std::fprintf(stderr, "formats_table: %s\n", std::string(rows.status().message()).c_str());
    return 1;
  }
  std::printf("Number formats: %d samples per data set, seed %llu; built with defaults and "
              "`overflow: saturate` where selectable.\n\n%s",
              samples, seed, quant::FormatTableMarkdown(*rows).c_str());
  return 0;
}
