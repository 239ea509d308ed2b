#include "quant/formats/flexpoint.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/formats/rounding.h"

namespace quant {

using formats_internal::RoundingShiftRight;
using formats_internal::UnpackMagnitude;

Flexpoint::Flexpoint(const Config& c, FormatOptions options)
    : NumberFormat(FormatProperties{}, options), config_(c) {
  qmax_ = (int64_t{1} << (c.mantissa_bits - 1)) - 1;
  emin_ = -(1 << (c.exponent_bits - 1));
  emax_ = (1 << (c.exponent_bits - 1)) - 1;
  mask_ = c.mantissa_bits == 32 ? 0xffffffffu : ((1u << c.mantissa_bits) - 1);
  exponent_ = std::min(std::max(c.initial_exponent, emin_), emax_);
  FormatProperties& p = props_;
  p.name = absl::StrCat("flex", c.mantissa_bits, "+", c.exponent_bits);
  p.bits = c.mantissa_bits;
  p.bits_per_value = c.mantissa_bits;  // + E bits per tensor
  p.largest = Range(emax_);
  p.smallest_normal = p.smallest_subnormal = std::ldexp(1.0, emin_);
  p.epsilon = std::ldexp(1.0, -(c.mantissa_bits - 2));  // spacing at 1.0 with the best exponent
  p.block_size = 0;
  p.stateful = true;
  p.order = PatternOrder::kTwosComplement;
}

absl::StatusOr<std::unique_ptr<Flexpoint>> Flexpoint::Make(const Config& c, FormatOptions options) {
  if (c.mantissa_bits < 2 || c.mantissa_bits > 24) {
    return absl::InvalidArgumentError("flexpoint: mantissa_bits must be in [2, 24]");
  }
  if (c.exponent_bits < 1 || c.exponent_bits > 8) {
    return absl::InvalidArgumentError("flexpoint: exponent_bits must be in [1, 8]");
  }
  if (c.history < 1) return absl::InvalidArgumentError("flexpoint: history must be >= 1");
  return std::unique_ptr<Flexpoint>(new Flexpoint(c, options));
}

int Flexpoint::ExponentFor(double max_abs) const {
  if (!(max_abs > 0)) return emin_;
  // Smallest e with qmax * 2^e >= max_abs.
  int e = static_cast<int>(std::ceil(std::log2(max_abs / static_cast<double>(qmax_))));
  while (e > emin_ && Range(e - 1) >= max_abs) --e;  // guard log2's rounding
  while (Range(e) < max_abs && e < emax_ + 1) ++e;
  return std::min(std::max(e, emin_), emax_);
}

int Flexpoint::PredictedExponent() const {
  if (maxima_.empty()) return exponent_;
  double mean = 0, mx = 0;
  for (double m : maxima_) {
    mean += m;
    mx = std::max(mx, m);
  }
  mean /= maxima_.size();
  double var = 0;
  for (double m : maxima_) var += (m - mean) * (m - mean);
  const double sd = std::sqrt(var / maxima_.size());
  return ExponentFor(mx + config_.margin * sd);
}

int64_t Flexpoint::Quantize(float x, int e) {
  const uint32_t bits = FloatBits(x);
  const uint32_t a = bits & 0x7fffffffu;
  if (a == 0 || a > 0x7f800000u) return 0;
  uint64_t q;
  if (a == 0x7f800000u) {
    q = qmax_;
  } else {
    const formats_internal::Unpacked u = UnpackMagnitude(a);
    const int shift = e - u.exp;  // q = sig * 2^(exp - e)
    const uint64_t random = options_.rounding == RoundingMode::kStochastic ? NextRandom() : 0;
    q = shift < -40 ? ~uint64_t{0} : RoundingShiftRight(u.sig, shift, options_.rounding, random);
    q = std::min<uint64_t>(q, static_cast<uint64_t>(qmax_));
  }
  const int64_t v = static_cast<int64_t>(q);
  return (bits >> 31) ? -v : v;
}

uint32_t Flexpoint::Encode(float x) {
  return static_cast<uint32_t>(Quantize(x, exponent_)) & mask_;
}

float Flexpoint::Decode(uint32_t bits) const {
  int64_t q = bits & mask_;
  if (q >> (config_.mantissa_bits - 1)) q -= int64_t{1} << config_.mantissa_bits;
  return static_cast<float>(std::ldexp(static_cast<double>(q), exponent_));
}

float Flexpoint::Round(float x) {
  if (x != x) return x;
  return static_cast<float>(std::ldexp(static_cast<double>(Quantize(x, exponent_)), exponent_));
}

void Flexpoint::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  double max_abs = 0;
  for (float x : in) {
    const double a = std::fabs(static_cast<double>(x));
    if (a > max_abs && std::isfinite(a)) max_abs = a;
  }
  if (steps_ == 0) {
    exponent_ = ExponentFor(max_abs);  // initialisation from the first tensor
  } else {
    exponent_ = PredictedExponent();
    if (max_abs > Range(exponent_)) {
      ++overflows_;
      exponent_ = std::min(ExponentFor(max_abs) + 1, emax_);  // one extra bit of headroom
      maxima_.clear();
    }
  }
  maxima_.push_back(max_abs);
  while (static_cast<int>(maxima_.size()) > config_.history) maxima_.pop_front();
  ++steps_;
  const double scale = std::ldexp(1.0, exponent_);
  for (size_t i = 0; i < in.size(); ++i) {
    const float x = in[i];
    out[i] = x != x ? x : static_cast<float>(static_cast<double>(Quantize(x, exponent_)) * scale);
  }
}

void Flexpoint::Reset() {
  NumberFormat::Reset();
  maxima_.clear();
  steps_ = overflows_ = 0;
  exponent_ = std::min(std::max(config_.initial_exponent, emin_), emax_);
}

absl::StatusOr<std::unique_ptr<NumberFormat>> Flexpoint::CreateGeneric(ParamReader& p) {
  Config c;
  c.mantissa_bits = static_cast<int>(p.IntInRange("mantissa_bits", 16, 2, 24, "N: integer mantissa bits"));
  c.exponent_bits = static_cast<int>(p.IntInRange("exponent_bits", 5, 1, 8, "E: shared exponent bits"));
  c.history = static_cast<int>(p.IntInRange("history", 16, 1, 1 << 20, "Autoflex: maxima kept"));
  c.margin = p.DoubleInRange("margin", 3.0, 0.0, 1e6, "Autoflex: standard deviations of headroom");
  c.initial_exponent = static_cast<int>(
      p.Int("initial_exponent", 0, "exponent before the first step (Round/Encode/Decode)"));
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kSaturate, false);
  RETURN_IF_ERROR(p.status());
  auto f = Make(c, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<NumberFormat>(std::move(*f));
}

namespace {
absl::StatusOr<std::unique_ptr<NumberFormat>> CreateFlex16(ParamReader& p) {
  Flexpoint::Config c;
  c.history = static_cast<int>(p.IntInRange("history", 16, 1, 1 << 20, "Autoflex: maxima kept"));
  c.margin = p.DoubleInRange("margin", 3.0, 0.0, 1e6, "Autoflex: standard deviations of headroom");
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kSaturate, false);
  RETURN_IF_ERROR(p.status());
  auto f = Flexpoint::Make(c, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<NumberFormat>(std::move(*f));
}
}  // namespace

QUANTLAB_REGISTER(NumberFormat, "flexpoint", Flexpoint::CreateGeneric,
                  "Flexpoint flex N+E: shared per-tensor exponent managed by Autoflex");
QUANTLAB_REGISTER(NumberFormat, "flexpoint16", CreateFlex16, "Flexpoint flex16+5 (Autoflex)");

}  // namespace quant
