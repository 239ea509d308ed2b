// The one random-number source of training: a 64-bit Mersenne Twister with
// quantlab's own conversions to floats, so that results do not depend on how a
// standard library implements its distributions. Every consumer (initialisation,
// dropout) gets its own stream derived from the run's seed and a stream id.
#ifndef QUANT_NN_RNG_H_
#define QUANT_NN_RNG_H_

#include <cstdint>
#include <random>

namespace quant::nn {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  // The stream `stream` of run seed `seed` (splitmix64 of both).
  static Rng Stream(uint64_t seed, uint64_t stream);

  uint64_t Next() { return engine_(); }
  // Uniform in [0, 1) with 24 random bits (exactly representable floats).
  float Uniform01() { return static_cast<float>(engine_() >> 40) * 0x1.0p-24f; }
  // Uniform in [lo, hi).
  float Uniform(float lo, float hi) { return lo + (hi - lo) * Uniform01(); }

 private:
  std::mt19937_64 engine_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_RNG_H_
