#include "quant/nn/rng.h"

namespace quant::nn {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

Rng Rng::Stream(uint64_t seed, uint64_t stream) {
  return Rng(SplitMix64(SplitMix64(seed) ^ (stream * 0xD1B54A32D192ED03ull + 1)));
}

}  // namespace quant::nn
