// Shared by the fuzz targets: the loaders under test read files by path, so each
// input is written to one scratch file per process (rewritten every iteration).
#ifndef FUZZ_FUZZ_UTIL_H_
#define FUZZ_FUZZ_UTIL_H_

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace quant::fuzz {

inline const std::string& ScratchPath(const char* suffix) {
  static const std::string path = [suffix] {
    const char* tmp = std::getenv("TMPDIR");
    return std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/quantlab_fuzz_" + std::to_string(getpid()) +
           suffix;
  }();
  return path;
}

inline void WriteScratch(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();  // a setup failure, not a finding
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

}  // namespace quant::fuzz

#endif  // FUZZ_FUZZ_UTIL_H_
