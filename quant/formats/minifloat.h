// Binary floating-point formats of any small width: IEEE binary16 (`fp16`),
// bfloat16 (`bf16`), TF32 (`tf32`, 1-8-10 held in the low 19 bits), OCP OFP8
// `fp8_e4m3` / `fp8_e5m2`, and the generic `minifloat` (exponent bits, mantissa
// bits, bias, subnormals on/off, inf/NaN on/off). `fp32` is the identity.
//
// Conversion is exact: the float32 input's significand is shifted to the
// target's quantum and rounded once (RoundingShiftRight), as if the exponent
// range had no upper limit; overflow is judged after rounding (the OFP8 rule,
// also IEEE 754's). Overflow then saturates or follows the format's rule
// (inf, else NaN, else saturate). Under toward_zero a finite input never
// overflows to inf (IEEE 754 7.4: it gives the largest finite value).
//
// NaN canonicals (encode): IEEE-style formats give the quiet NaN with the
// input's sign (fp16 0x7e00/0xfe00, fp8_e5m2 0x7e/0xfe, as PyTorch and
// universal do), except bf16, which gives 0x7fc0 for every NaN (PyTorch's
// scalar/strided kernels; its contiguous AVX2 kernel gives 0xffff instead).
// OCP E4M3-style formats (NaN only, no inf) give S.1111.111 with the sign.
// A format without NaN encodes NaN as +0 (its Round still returns NaN).
#ifndef QUANT_FORMATS_MINIFLOAT_H_
#define QUANT_FORMATS_MINIFLOAT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/formats/number_format.h"
#include "quant/formats/rounding.h"

namespace quant {

struct MinifloatSpec {
  std::string name;
  int exponent_bits = 5;
  int mantissa_bits = 10;
  int bias = 15;
  bool subnormals = true;
  bool inf = true;   // all-ones exponent with zero mantissa is +-inf (IEEE)
  bool nan = true;   // with inf: all-ones exponent holds NaNs (IEEE); without inf: only S.1..1 is NaN (OCP E4M3)
  bool nan_keeps_sign = true;  // false: every NaN encodes to the positive canonical NaN (bf16)
};

// A spec with subnormals, from its fields in declaration order.
MinifloatSpec MakeMinifloatSpec(const char* name, int exponent_bits, int mantissa_bits, int bias,
                                bool inf, bool nan, bool nan_keeps_sign = true);

class Minifloat : public NumberFormat {
 public:
  // Checks `spec`; on a problem returns false with the offending field (named
  // as its YAML key) and a message.
  static bool Check(const MinifloatSpec& spec, std::string* key, std::string* message);
  static absl::StatusOr<std::unique_ptr<Minifloat>> Make(const MinifloatSpec& spec,
                                                         FormatOptions options);
  // The `minifloat` factory (exponent_bits, mantissa_bits, bias, subnormals, inf, nan).
  static absl::StatusOr<std::unique_ptr<NumberFormat>> CreateGeneric(ParamReader& p);

  uint32_t Encode(float x) override { return EncodeOne(x); }
  float Decode(uint32_t bits) const override { return DecodeOne(bits); }
  float Round(float x) override { return RoundOne(x); }
  void EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) override;
  void DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const override;
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;

  const MinifloatSpec& spec() const { return spec_; }
  uint32_t max_finite_code() const { return max_code_; }
  uint32_t canonical_nan() const { return nan_code_; }
  uint32_t sign_bit() const { return sign_bit_; }
  bool IsNan(uint32_t bits) const;
  // Encodes x * 2^scale_exp exactly (no intermediate rounding): the element
  // conversion of block formats, where x / 2^shared_exp may underflow float32.
  inline uint32_t EncodeScaled(float x, int scale_exp, RoundingMode mode, OverflowMode overflow,
                               uint64_t random) const {
    switch (mode) {
      case RoundingMode::kNearestEven:
        return EncodeScaledT<RoundingMode::kNearestEven>(x, scale_exp, overflow, random);
      case RoundingMode::kTowardZero:
        return EncodeScaledT<RoundingMode::kTowardZero>(x, scale_exp, overflow, random);
      case RoundingMode::kStochastic:
        return EncodeScaledT<RoundingMode::kStochastic>(x, scale_exp, overflow, random);
    }
    return 0;
  }
  // The same with the rounding mode fixed at compile time (for loops).
  template <RoundingMode mode>
  uint32_t EncodeScaledT(float x, int scale_exp, OverflowMode overflow, uint64_t random) const;

  // Round to nearest even of (in[i] * pre_scale), times post_scale, for every
  // i: the vectorised fake-quant of formats with subnormals and fewer than 23
  // mantissa bits whose normals are float32 normals (HasFastNearest()), bit-identical to the scalar path. NaN
  // inputs are copied. `pre_scale`/`post_scale` are powers of two (block
  // formats' 2^-s and 2^s; 1 otherwise) and the products must be exact or
  // far below the smallest subnormal (see block_format.cc).
  bool HasFastNearest() const {
    // The smallest normal and M = 2^(emin-m+23) must be float32 normals.
    return spec_.subnormals && spec_.mantissa_bits < 23 && emin_ >= -126 &&
           emin_ - spec_.mantissa_bits + 23 >= -126;
  }
  void RoundNearestScaled(const float* in, float* out, size_t n, float pre_scale,
                          float post_scale, OverflowMode overflow) const;

  inline uint32_t EncodeOne(float x) {
    return EncodeScaled(x, 0, options_.rounding, options_.overflow,
                        options_.rounding == RoundingMode::kStochastic ? NextRandom() : 0);
  }
  inline float DecodeOne(uint32_t bits) const {
    if (!table_.empty()) return table_[bits & code_mask_];
    return DecodeSlow(bits);
  }
  inline float RoundOne(float x) {
    if (x != x) return x;
    return DecodeOne(EncodeOne(x));
  }

 private:
  Minifloat(const MinifloatSpec& spec, FormatOptions options);
  float DecodeSlow(uint32_t bits) const;
  bool IsFp16Layout() const;

  MinifloatSpec spec_;
  int emin_;           // exponent of the smallest normal (and of subnormals)
  int total_bits_;
  uint32_t code_mask_;
  uint32_t sign_bit_;
  uint32_t max_code_;  // largest finite magnitude pattern
  uint32_t inf_code_;
  uint32_t nan_code_;  // positive canonical NaN
  bool float32_layout_;  // 8 exponent bits, bias 127, IEEE, subnormals: decode = shift
  std::vector<float> table_;  // decode table for <= 16-bit formats
};

// fp32: the identity (every pattern round-trips, NaN payloads included).
class Fp32Format : public NumberFormat {
 public:
  explicit Fp32Format(FormatOptions options);
  static absl::StatusOr<std::unique_ptr<NumberFormat>> Create(ParamReader& p);
  uint32_t Encode(float x) override { return FloatBits(x); }
  float Decode(uint32_t bits) const override { return BitsFloat(bits); }
  float Round(float x) override { return x; }
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;
};

template <RoundingMode mode>
inline uint32_t Minifloat::EncodeScaledT(float x, int scale_exp, OverflowMode overflow,
                                         uint64_t random) const {
  const uint32_t bits = FloatBits(x);
  const uint32_t sign = (bits >> 31) ? sign_bit_ : 0;
  const uint32_t a = bits & 0x7fffffffu;
  if (a >= 0x7f800000u) {
    if (a > 0x7f800000u) {  // NaN
      if (!spec_.nan) return 0;
      return nan_code_ | (spec_.nan_keeps_sign ? sign : 0);
    }
    if (overflow == OverflowMode::kSaturate || !spec_.nan) return max_code_ | sign;
    return inf_code_ | sign;  // inf, or the NaN of a NaN-only format
  }
  if (a == 0) return sign;
  const formats_internal::Unpacked u = formats_internal::UnpackMagnitude(a);
  const int m = spec_.mantissa_bits;
  const int ex = u.exp + scale_exp;
  const int l = u.log2 + scale_exp;
  uint64_t code;
  if (l < emin_ && !spec_.subnormals) {
    // Only 0 and 2^emin are near: round with a quantum of 2^emin.
    code = formats_internal::RoundingShiftRight(u.sig, emin_ - ex, mode, random) ? (uint64_t{1} << m) : 0;
  } else {
    const int te = l < emin_ ? emin_ : l;
    if (te > 400) {
      code = ~uint64_t{0} >> 1;  // far beyond any range (scaled input): overflow
    } else {
      const uint64_t n = formats_internal::RoundingShiftRight(u.sig, (te - m) - ex, mode, random);
      // n in [2^m, 2^(m+1)] for normals (2^(m+1) carries into the exponent),
      // n <= 2^m at emin (2^m is the smallest normal): one formula for both.
      code = (static_cast<uint64_t>(te - emin_) << m) + n;
    }
  }
  if (code > max_code_) {
    if (overflow == OverflowMode::kSaturate || mode == RoundingMode::kTowardZero || !spec_.nan) {
      return max_code_ | sign;
    }
    return inf_code_ | sign;
  }
  return static_cast<uint32_t>(code) | sign;
}

}  // namespace quant

#endif  // QUANT_FORMATS_MINIFLOAT_H_
