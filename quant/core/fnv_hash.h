// FNV-1a, 64 bit: a hash that is the same on every build and machine (config ids, cache
// keys), unlike std::hash.
#ifndef QUANT_CORE_FNV_HASH_H_
#define QUANT_CORE_FNV_HASH_H_

#include <cstdint>
#include <string_view>

namespace quant {

inline uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace quant

#endif  // QUANT_CORE_FNV_HASH_H_
