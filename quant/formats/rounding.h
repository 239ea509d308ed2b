// The one rounding primitive every format is built on: drop the low `shift`
// bits of an unsigned integer under a rounding mode. Floats, posits (on their
// bit string), integers and block elements all reduce to it, so the three
// rounding modes mean the same thing everywhere.
#ifndef QUANT_FORMATS_ROUNDING_H_
#define QUANT_FORMATS_ROUNDING_H_

#include <cstdint>

#include "quant/formats/number_format.h"

namespace quant::formats_internal {

// Returns v / 2^shift rounded to an integer:
//   nearest_even: to nearest, ties to the even result;
//   toward_zero:  truncated;
//   stochastic:   rounded up with probability (dropped bits) / 2^shift, using
//                 the low `shift` bits of `random` (exact for shift <= 64).
// shift <= 0 multiplies (the caller guarantees no overflow). For shift >= 64
// the result is 0 (v < 2^63: below half of one unit; stochastic rounding then
// misses a probability below 2^-1 * v / 2^63, negligible for our v < 2^60).
inline uint64_t RoundingShiftRight(uint64_t v, int shift, RoundingMode mode, uint64_t random) {
  if (shift <= 0) return v << (-shift);
  if (shift >= 64) return 0;
  const uint64_t mask = (uint64_t{1} << shift) - 1;
  uint64_t n = v >> shift;
  const uint64_t rem = v & mask;
  switch (mode) {
    case RoundingMode::kNearestEven: {
      // Branch-free: the comparison is data dependent and mispredicts half the time.
      const uint64_t half = uint64_t{1} << (shift - 1);
      n += static_cast<uint64_t>(rem > half) | (static_cast<uint64_t>(rem == half) & n & 1);
      break;
    }
    case RoundingMode::kTowardZero:
      break;
    case RoundingMode::kStochastic:
      n += static_cast<uint64_t>(rem + (random & mask) > mask);
      break;
  }
  return n;
}

// A finite nonzero float32 magnitude as sig * 2^exp (sig < 2^24, exact), and
// floor(log2(|x|)).
struct Unpacked {
  uint64_t sig;
  int exp;
  int log2;
};

inline Unpacked UnpackMagnitude(uint32_t abs_bits) {
  const int field = static_cast<int>(abs_bits >> 23);
  const uint32_t frac = abs_bits & 0x7fffff;
  if (field == 0) {
    return Unpacked{frac, -149, (31 - __builtin_clz(frac)) - 149};
  }
  return Unpacked{frac | 0x800000u, field - 150, field - 127};
}

}  // namespace quant::formats_internal

#endif  // QUANT_FORMATS_ROUNDING_H_
