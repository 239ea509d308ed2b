#include "quant/formats/posit.h"

#include <cmath>
#include <functional>
#include <string>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/formats/rounding.h"

namespace quant {

using formats_internal::RoundingShiftRight;
using formats_internal::UnpackMagnitude;

namespace {
// The rule for es (see Make): es <= n-3 leaves room for the regime's two bits
// at 1.0; es = 0 is also accepted for n = 2 and 3, which have no such room.
bool EsAllowed(int n, int es) { return es <= std::max(0, n - 3); }
}  // namespace

Posit::Posit(int n, int es, FormatOptions options)
    : NumberFormat(FormatProperties{}, options), n_(n), es_(es) {
  mask_ = n == 32 ? 0xffffffffu : ((1u << n) - 1);
  max_scale_ = (n - 2) << es;
  if (n <= 16) {
    table_.resize(size_t{1} << n);
    for (uint32_t b = 0; b < table_.size(); ++b) table_[b] = static_cast<float>(DecodeExact(b));
  }
  FormatProperties& p = props_;
  p.name = absl::StrCat("posit<", n, ",", es, ">");
  p.bits = n;
  p.bits_per_value = n;
  p.largest = std::ldexp(1.0, max_scale_);
  p.smallest_normal = p.smallest_subnormal = std::ldexp(1.0, -max_scale_);
  const uint32_t one = 1u << (n - 2);
  p.epsilon = (one + 1 == nar()) ? 0.0 : DecodeExact(one + 1) - 1.0;
  p.has_inf = false;
  p.has_nan = true;  // NaR
  p.order = PatternOrder::kTwosComplement;
}

absl::StatusOr<std::unique_ptr<Posit>> Posit::Make(int n, int es, FormatOptions options) {
  if (n < 2 || n > 32) return absl::InvalidArgumentError("posit: n must be in [2, 32]");
  if (es < 0 || es > 4 || !EsAllowed(n, es)) {
    return absl::InvalidArgumentError(absl::StrCat("posit: es must be in [0, min(4, n-3)], got ", es));
  }
  return std::unique_ptr<Posit>(new Posit(n, es, options));
}

uint32_t Posit::EncodeOne(float x) {
  const uint32_t bits = FloatBits(x);
  const bool neg = (bits >> 31) != 0;
  const uint32_t a = bits & 0x7fffffffu;
  if (a == 0) return 0;
  if (a > 0x7f800000u) return nar();
  uint32_t p;
  if (a == 0x7f800000u) {
    if (options_.overflow == OverflowMode::kFormat) return nar();
    p = maxpos();
  } else {
    const formats_internal::Unpacked u = UnpackMagnitude(a);
    const int scale = u.log2;
    if (scale >= max_scale_) {
      p = maxpos();  // x >= maxpos
    } else if (scale < -max_scale_) {
      p = 1;  // 0 < x < minpos
    } else {
      // The 23 fraction bits below the leading one.
      const uint64_t frac = (u.sig << (23 - (u.log2 - u.exp))) & 0x7fffffu;
      const int k = scale >> es_;  // floor division
      const int e = scale & ((1 << es_) - 1);
      // Regime: k+1 ones then a zero (k >= 0), or -k zeros then a one. Written
      // as selects: the sign of k is data dependent and a branch mispredicts.
      const bool up = k >= 0;
      const int kk = up ? k : 0;
      uint64_t str = up ? ((uint64_t{2} << kk) - 1) << 1 : uint64_t{1};
      int len = up ? k + 2 : 1 - k;
      str = (str << es_) | static_cast<uint64_t>(e);
      str = (str << 23) | frac;
      len += es_ + 23;
      const uint64_t random =
          options_.rounding == RoundingMode::kStochastic ? NextRandom() : 0;
      p = static_cast<uint32_t>(RoundingShiftRight(str, len - (n_ - 1), options_.rounding, random));
      // Bit-string rounding stays within [minpos, maxpos] here: the truncated
      // string is at least minpos, and only maxpos's own string is all ones.
    }
  }
  const uint32_t negated = (~p + 1) & mask_;
  return neg ? negated : p;
}

double Posit::DecodeExact(uint32_t bits) const {
  bits &= mask_;
  if (bits == 0) return 0.0;
  if (bits == nar()) return std::nan("");
  const bool neg = (bits >> (n_ - 1)) != 0;
  const uint32_t p = neg ? ((~bits + 1) & mask_) : bits;
  // The n-1 bits after the sign, left-aligned in 64 bits.
  uint64_t y = static_cast<uint64_t>(p) << (64 - (n_ - 1));
  const bool ones = (y >> 63) != 0;
  int run = ones ? __builtin_clzll(~y) : (y == 0 ? 64 : __builtin_clzll(y));
  if (run > n_ - 1) run = n_ - 1;
  const int k = ones ? run - 1 : -run;
  y = run + 1 >= 64 ? 0 : y << (run + 1);
  int e = 0;
  if (es_ > 0) {
    e = static_cast<int>(y >> (64 - es_));
    y <<= es_;
  }
  const double significand = 1.0 + std::ldexp(static_cast<double>(y >> 11), -53);
  const double v = std::ldexp(significand, k * (1 << es_) + e);
  return neg ? -v : v;
}

float Posit::Decode(uint32_t bits) const {
  if (!table_.empty()) return table_[bits & mask_];
  return static_cast<float>(DecodeExact(bits));
}

float Posit::Round(float x) {
  if (x != x) return x;
  return Decode(EncodeOne(x));
}

void Posit::EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) {
  for (size_t i = 0; i < in.size(); ++i) out[i] = EncodeOne(in[i]);
}

void Posit::DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const {
  for (size_t i = 0; i < in.size(); ++i) out[i] = Posit::Decode(in[i]);
}

void Posit::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  if (table_.empty()) {
    for (size_t i = 0; i < in.size(); ++i) out[i] = Posit::Round(in[i]);
    return;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    const float x = in[i];
    const float y = table_[EncodeOne(x)];
    out[i] = x != x ? x : y;
  }
}

absl::StatusOr<std::unique_ptr<NumberFormat>> Posit::CreateGeneric(ParamReader& p) {
  const int n = static_cast<int>(p.IntInRange("n", 16, 2, 32, "total bits"));
  const int es = static_cast<int>(p.IntInRange("es", 2, 0, 4, "exponent bits (2 in the 2022 standard)"));
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kFormat);
  RETURN_IF_ERROR(p.status());
  if (!EsAllowed(n, es)) {
    p.Fail("es", absl::StrCat("es = ", es, " leaves no room in a ", n,
                              "-bit posit: es must be <= n - 3 = ", n - 3));
    return p.status();
  }
  auto f = Make(n, es, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<NumberFormat>(std::move(*f));
}

namespace {
std::function<absl::StatusOr<std::unique_ptr<NumberFormat>>(ParamReader&)> Fixed(int n, int es) {
  return [n, es](ParamReader& p) -> absl::StatusOr<std::unique_ptr<NumberFormat>> {
    const FormatOptions options = ReadFormatOptions(p, OverflowMode::kFormat);
    auto f = Posit::Make(n, es, options);
    if (!f.ok()) return f.status();
    return std::unique_ptr<NumberFormat>(std::move(*f));
  };
}
}  // namespace

QUANTLAB_REGISTER(NumberFormat, "posit", Posit::CreateGeneric,
                  "posit<n,es> (2022 Posit Standard rules): n 2..32, es 0..4");
QUANTLAB_REGISTER(NumberFormat, "posit8", Fixed(8, 2), "standard posit<8,2>");
QUANTLAB_REGISTER(NumberFormat, "posit16", Fixed(16, 2), "standard posit<16,2>");
QUANTLAB_REGISTER(NumberFormat, "posit32", Fixed(32, 2), "standard posit<32,2>");
QUANTLAB_REGISTER(NumberFormat, "posit8_0", Fixed(8, 0), "legacy posit<8,0>");
QUANTLAB_REGISTER(NumberFormat, "posit16_1", Fixed(16, 1), "legacy posit<16,1>");

}  // namespace quant
