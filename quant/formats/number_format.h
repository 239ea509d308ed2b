// NumberFormat: one interface for every number format quantlab studies (IEEE
// fp16/bf16/tf32/fp32, OCP fp8 and minifloats, posits, integer grids, block
// formats with a shared exponent such as OCP MX, and Flexpoint).
//
// A format maps a float32 to a bit pattern (Encode), a pattern back to a value
// (Decode), and a float32 to the nearest representable value (Round: the
// fake-quant of the format, what a `format_cast` quantizer's forward pass
// computes). The span forms are the fast paths and the only meaningful ones for
// block formats, whose shared exponent is chosen from a whole block.
//
// Contract of the span Round for a fake-quant quantizer:
//   * out[i] = the representable value chosen for in[i]; `in` and `out` may be
//     the same span (in-place); a block format blocks along the span (callers
//     pass one row at a time to block along a tensor's contiguous dimension).
//   * gradient: straight-through (identity) where |in[i]| <= largest finite;
//     for in[i] beyond the largest finite value the output is saturated (or
//     inf/NaN under `overflow: format`), and a quantizer should pass a zero
//     gradient there (the clipped STE, as PyTorch does for its fake quant).
//     NaN inputs stay NaN in Round, whatever the format, so a fake-quant never
//     hides a NaN.
//
// Round/Encode are non-const: stochastic rounding draws from the format's
// seeded generator and Flexpoint updates its shared exponent, so one format
// object must not be used by two threads at once. Decode is const.
#ifndef QUANT_FORMATS_NUMBER_FORMAT_H_
#define QUANT_FORMATS_NUMBER_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "quant/core/params.h"

namespace quant {

enum class RoundingMode { kNearestEven, kTowardZero, kStochastic };
enum class OverflowMode {
  kSaturate,  // out of range -> +-largest finite (also +-inf inputs)
  kFormat,    // the format's own rule: inf if it has one, else NaN if it has one, else saturate
};

// The options every format reads: `rounding`, `seed`, `overflow`.
struct FormatOptions {
  RoundingMode rounding = RoundingMode::kNearestEven;
  uint64_t seed = 0;
  OverflowMode overflow = OverflowMode::kFormat;
};

// Reads `rounding: nearest_even|toward_zero|stochastic`, `seed` and, unless
// the format has a fixed overflow rule (block formats clamp, as MX specifies),
// `overflow: saturate|format` (errors name the key, via ParamReader).
FormatOptions ReadFormatOptions(ParamReader& p, OverflowMode default_overflow,
                                bool overflow_selectable = true);

// How patterns order the values (for ordering tests and tables): sign-magnitude
// (IEEE floats), two's complement (posits, signed integers), or unsigned.
enum class PatternOrder { kSignMagnitude, kTwosComplement, kUnsigned };

// What a table or a quantizer needs to know about a format. Values are exact
// (double holds every one of them).
struct FormatProperties {
  std::string name;                   // e.g. "fp8_e4m3", "posit<16,2>"
  int bits = 0;                       // storage bits of one element pattern
  double bits_per_value = 0;          // incl. shared scales (MX: 8 + 8/32)
  double largest = 0;                 // largest finite value
  double smallest_normal = 0;         // posits/ints: the smallest positive value
  double smallest_subnormal = 0;      // == smallest_normal when there are no subnormals
  double epsilon = 0;                 // distance from 1.0 to the next larger value
  bool has_inf = false;
  bool has_nan = false;
  int block_size = 1;                 // elements sharing a scale; 0 = the whole span
  bool stateful = false;              // Round depends on earlier calls (Flexpoint)
  PatternOrder order = PatternOrder::kSignMagnitude;
};

class NumberFormat {
 public:
  static constexpr char kRegistryKind[] = "format";
  virtual ~NumberFormat() = default;

  const FormatProperties& properties() const { return props_; }
  const FormatOptions& options() const { return options_; }

  // float32 -> pattern (low `bits` bits). Block formats encode the element
  // with a unit scale; use their block API for the shared scale.
  virtual uint32_t Encode(float x) = 0;
  // pattern -> value, rounded to float32 (exact for every format whose values
  // fit float32; see DecodeExact for posit<32,es> and the like).
  virtual float Decode(uint32_t bits) const = 0;
  // pattern -> exact value.
  virtual double DecodeExact(uint32_t bits) const { return Decode(bits); }
  // Nearest representable value of one float (Decode(Encode(x)) except that
  // NaN stays NaN). Block/Flexpoint formats use their current scale.
  virtual float Round(float x) = 0;

  // Span forms; out.size() must equal in.size().
  virtual void EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out);
  virtual void DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const;
  virtual void RoundSpan(absl::Span<const float> in, absl::Span<float> out);

  // Forgets any state (Flexpoint history, the stochastic generator restarts at seed).
  virtual void Reset() { rng_state_ = options_.seed; }

 protected:
  NumberFormat(FormatProperties props, FormatOptions options)
      : props_(std::move(props)), options_(options), rng_state_(options.seed) {}

  // 64 fresh random bits (SplitMix64 on the seeded counter).
  uint64_t NextRandom() {
    uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  FormatProperties props_;
  FormatOptions options_;
  uint64_t rng_state_;
};

// Small helpers shared by the formats.
uint32_t FloatBits(float x);
float BitsFloat(uint32_t bits);
// "nearest_even" etc., for names and errors.
const char* RoundingModeName(RoundingMode mode);

}  // namespace quant

#endif  // QUANT_FORMATS_NUMBER_FORMAT_H_
