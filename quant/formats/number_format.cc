#include "quant/formats/number_format.h"

#include <cstring>

namespace quant {

FormatOptions ReadFormatOptions(ParamReader& p, OverflowMode default_overflow,
                                bool overflow_selectable) {
  FormatOptions o;
  const std::string rounding =
      p.Choice("rounding", "nearest_even", {"nearest_even", "toward_zero", "stochastic"},
               "rounding mode: round to nearest (ties to even), toward zero, or stochastic");
  o.seed = static_cast<uint64_t>(
      p.Int("seed", 0, "seed of the stochastic-rounding generator (counter-based, reproducible)"));
  const std::string overflow =
      !overflow_selectable
          ? std::string(default_overflow == OverflowMode::kSaturate ? "saturate" : "format")
          :
      p.Choice("overflow", default_overflow == OverflowMode::kSaturate ? "saturate" : "format",
               {"saturate", "format"},
               "beyond the largest finite value: saturate to it, or follow the format's own rule "
               "(inf if it has one, else NaN if it has one, else saturate)");
  if (rounding == "toward_zero") o.rounding = RoundingMode::kTowardZero;
  if (rounding == "stochastic") o.rounding = RoundingMode::kStochastic;
  o.overflow = overflow == "saturate" ? OverflowMode::kSaturate : OverflowMode::kFormat;
  return o;
}

void NumberFormat::EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = Encode(in[i]);
}

void NumberFormat::DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const {
  for (size_t i = 0; i < in.size(); ++i) out[i] = Decode(in[i]);
}

void NumberFormat::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = Round(in[i]);
}

uint32_t FloatBits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

float BitsFloat(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

const char* RoundingModeName(RoundingMode mode) {
  switch (mode) {
    case RoundingMode::kNearestEven: return "nearest_even";
    case RoundingMode::kTowardZero: return "toward_zero";
    case RoundingMode::kStochastic: return "stochastic";
  }
  return "?";
}

}  // namespace quant
