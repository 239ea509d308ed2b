#include "quant/formats/int_format.h"

#include <algorithm>
#include <cmath>
#include <functional>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant {

IntFormat::IntFormat(int bits, bool is_signed, double scale, FormatOptions options)
    : NumberFormat(FormatProperties{}, options), bits_(bits), signed_(is_signed), scale_(scale) {
  inv_scale_ = 1.0 / scale;
  qmax_ = is_signed ? (int64_t{1} << (bits - 1)) - 1 : (int64_t{1} << bits) - 1;
  qmin_ = is_signed ? -qmax_ : 0;
  mask_ = bits == 32 ? 0xffffffffu : ((1u << bits) - 1);
  FormatProperties& p = props_;
  p.name = absl::StrCat(is_signed ? "int" : "uint", bits);
  p.bits = bits;
  p.bits_per_value = bits;
  p.largest = static_cast<double>(qmax_) * scale;
  p.smallest_normal = p.smallest_subnormal = scale;
  p.epsilon = scale;
  p.order = is_signed ? PatternOrder::kTwosComplement : PatternOrder::kUnsigned;
}

absl::StatusOr<std::unique_ptr<IntFormat>> IntFormat::Make(int bits, bool is_signed, double scale,
                                                           FormatOptions options) {
  if (bits < 2 || bits > 32) return absl::InvalidArgumentError("int: bits must be in [2, 32]");
  if (!(scale > 0) || !std::isfinite(scale)) {
    return absl::InvalidArgumentError("int: scale must be a positive finite number");
  }
  return std::unique_ptr<IntFormat>(new IntFormat(bits, is_signed, scale, options));
}

int64_t IntFormat::Quantize(float x) {
  // Exact for power-of-two scales; otherwise x / scale is rounded once to double.
  // Clamping first keeps the code branch-free (a clamped value is an integer
  // already, so rounding leaves it); +-inf clamps too. NaN is handled by callers.
  double v = scale_ == 1.0 ? x : static_cast<double>(x) / scale_;
  v = std::min(std::max(v, static_cast<double>(qmin_)), static_cast<double>(qmax_));
  double r = v;
  switch (options_.rounding) {
    case RoundingMode::kNearestEven: r = std::nearbyint(v); break;  // FE_TONEAREST: ties to even
    case RoundingMode::kTowardZero: r = std::trunc(v); break;
    case RoundingMode::kStochastic: {
      const double fl = std::floor(v);
      const double u = static_cast<double>(NextRandom() >> 11) * 0x1p-53;
      r = (v - fl) > u ? fl + 1 : fl;  // up with probability v - floor(v)
      break;
    }
  }
  return static_cast<int64_t>(r);
}

uint32_t IntFormat::EncodeOne(float x) {
  if (x != x) return 0;
  return static_cast<uint32_t>(Quantize(x)) & mask_;
}

float IntFormat::Decode(uint32_t bits) const { return static_cast<float>(DecodeExact(bits)); }

float IntFormat::Round(float x) {
  if (x != x) return x;
  return static_cast<float>(static_cast<double>(Quantize(x)) * scale_);
}

void IntFormat::EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = EncodeOne(in[i]);
}

void IntFormat::DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const {
  for (size_t i = 0; i < in.size(); ++i) out[i] = static_cast<float>(DecodeExact(in[i]));
}

void IntFormat::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = Round(in[i]);
}

namespace {

double DefaultScale(int bits) { return std::ldexp(1.0, -(bits - 3)); }

absl::StatusOr<std::unique_ptr<NumberFormat>> Build(ParamReader& p, int bits, bool is_signed) {
  const double scale = p.Double("scale", 0.0, "value of one step; 0 = 2^-(bits-3) (a range of about +-4)");
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kSaturate, false);
  RETURN_IF_ERROR(p.status());
  if (scale < 0 || !std::isfinite(scale)) {
    p.Fail("scale", absl::StrCat("must be a positive finite number (0 for the default), got ", scale));
    return p.status();
  }
  auto f = IntFormat::Make(bits, is_signed, scale == 0 ? DefaultScale(bits) : scale, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<NumberFormat>(std::move(*f));
}

std::function<absl::StatusOr<std::unique_ptr<NumberFormat>>(ParamReader&)> Fixed(int bits,
                                                                                 bool is_signed) {
  return [bits, is_signed](ParamReader& p) { return Build(p, bits, is_signed); };
}

}  // namespace

absl::StatusOr<std::unique_ptr<NumberFormat>> IntFormat::CreateGeneric(ParamReader& p) {
  const int bits = static_cast<int>(p.IntInRange("bits", 8, 2, 32, "integer width"));
  const bool is_signed = p.Bool("signed", true, "two's complement (symmetric range) or unsigned");
  return Build(p, bits, is_signed);
}

QUANTLAB_REGISTER(NumberFormat, "int", IntFormat::CreateGeneric,
                  "integer grid q * scale: bits, signed, scale");
QUANTLAB_REGISTER(NumberFormat, "int4", Fixed(4, true), "signed 4-bit grid q * scale");
QUANTLAB_REGISTER(NumberFormat, "uint4", Fixed(4, false), "unsigned 4-bit grid q * scale");
QUANTLAB_REGISTER(NumberFormat, "int8", Fixed(8, true), "signed 8-bit grid q * scale");
QUANTLAB_REGISTER(NumberFormat, "uint8", Fixed(8, false), "unsigned 8-bit grid q * scale");
QUANTLAB_REGISTER(NumberFormat, "int16", Fixed(16, true), "signed 16-bit grid q * scale");

}  // namespace quant
