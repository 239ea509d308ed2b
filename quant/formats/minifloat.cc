#include "quant/formats/minifloat.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/formats/rounding.h"

namespace quant {

MinifloatSpec MakeMinifloatSpec(const char* name, int exponent_bits, int mantissa_bits, int bias,
                                bool inf, bool nan, bool nan_keeps_sign) {
  MinifloatSpec s;
  s.name = name;
  s.exponent_bits = exponent_bits;
  s.mantissa_bits = mantissa_bits;
  s.bias = bias;
  s.inf = inf;
  s.nan = nan;
  s.nan_keeps_sign = nan_keeps_sign;
  return s;
}

using formats_internal::RoundingShiftRight;
using formats_internal::UnpackMagnitude;

bool Minifloat::Check(const MinifloatSpec& s, std::string* key, std::string* message) {
  auto fail = [&](const char* k, std::string m) {
    *key = k;
    *message = std::move(m);
    return false;
  };
  if (s.exponent_bits < 0 || s.exponent_bits > 8) {
    return fail("exponent_bits", "must be in [0, 8] (values must fit float32)");
  }
  if (s.mantissa_bits < 0 || s.mantissa_bits > 23) {
    return fail("mantissa_bits", "must be in [0, 23] (values must fit float32)");
  }
  if (s.exponent_bits + s.mantissa_bits < 1) {
    return fail("mantissa_bits", "a format needs at least one exponent or mantissa bit");
  }
  if (s.exponent_bits == 0 && !s.subnormals) {
    return fail("subnormals",
                "with 0 exponent bits every value is subnormal: subnormals must be true");
  }
  if (s.inf && !s.nan) return fail("inf", "inf without nan is not supported (IEEE layout has both)");
  if (s.inf && s.exponent_bits < 2) return fail("inf", "inf/NaN (IEEE layout) need >= 2 exponent bits");
  if (s.inf && s.mantissa_bits < 1) return fail("inf", "IEEE NaNs need >= 1 mantissa bit");
  if (s.nan && s.exponent_bits < 1) return fail("nan", "a NaN pattern needs >= 1 exponent bit");
  const int max_field = (1 << s.exponent_bits) - (s.inf ? 2 : 1);
  const int emax = std::max(max_field, 1) - s.bias;
  const int emin = 1 - s.bias;
  if (emax > 127) {
    return fail("bias", absl::StrCat("largest exponent ", emax, " exceeds float32's 127"));
  }
  if (emin - (s.subnormals ? s.mantissa_bits : 0) < -149) {
    return fail("bias", "smallest value is below float32's smallest subnormal 2^-149");
  }
  return true;
}

Minifloat::Minifloat(const MinifloatSpec& s, FormatOptions options)
    : NumberFormat(FormatProperties{}, options), spec_(s) {
  const int e = s.exponent_bits, m = s.mantissa_bits;
  emin_ = 1 - s.bias;
  total_bits_ = 1 + e + m;
  code_mask_ = total_bits_ >= 32 ? 0xffffffffu : ((1u << total_bits_) - 1);
  sign_bit_ = 1u << (e + m);
  const uint32_t all_ones = sign_bit_ - 1;
  if (s.inf) {
    inf_code_ = ((1u << e) - 1) << m;
    nan_code_ = inf_code_ | (1u << (m - 1));
    max_code_ = inf_code_ - 1;
  } else if (s.nan) {
    inf_code_ = nan_code_ = all_ones;
    max_code_ = all_ones - 1;
  } else {
    inf_code_ = nan_code_ = max_code_ = all_ones;
  }
  float32_layout_ = e == 8 && s.bias == 127 && s.inf && s.subnormals;
  if (total_bits_ <= 16) {
    table_.resize(size_t{1} << total_bits_);
    for (uint32_t b = 0; b < table_.size(); ++b) table_[b] = DecodeSlow(b);
  }
  FormatProperties& p = props_;
  p.name = s.name;
  p.bits = total_bits_;
  p.bits_per_value = total_bits_;
  p.largest = DecodeSlow(max_code_);
  const bool has_normals = e > 0;
  p.smallest_subnormal = std::ldexp(1.0, s.subnormals ? emin_ - m : emin_);
  p.smallest_normal = has_normals ? std::ldexp(1.0, emin_) : p.smallest_subnormal;
  p.epsilon = std::ldexp(1.0, -m);
  if (!has_normals) p.epsilon = p.smallest_subnormal;  // a fixed-point grid
  p.has_inf = s.inf;
  p.has_nan = s.nan;
}

absl::StatusOr<std::unique_ptr<Minifloat>> Minifloat::Make(const MinifloatSpec& spec,
                                                           FormatOptions options) {
  std::string key, message;
  if (!Check(spec, &key, &message)) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": ", key, ": ", message));
  }
  return std::unique_ptr<Minifloat>(new Minifloat(spec, options));
}

bool Minifloat::IsNan(uint32_t bits) const {
  if (!spec_.nan) return false;
  const uint32_t mag = bits & (sign_bit_ - 1);
  if (spec_.inf) return mag > inf_code_;
  return mag == nan_code_;
}

float Minifloat::DecodeSlow(uint32_t bits) const {
  const int e = spec_.exponent_bits, m = spec_.mantissa_bits;
  const bool neg = (bits & sign_bit_) != 0;
  const uint32_t mag = bits & (sign_bit_ - 1);
  double v;
  if (IsNan(bits)) {
    // IEEE layouts keep the payload (as a float32 NaN with the same top
    // mantissa bits, what a widening conversion does); OCP E4M3's NaN has none.
    const uint32_t payload = spec_.inf ? (mag & ((1u << m) - 1)) << (23 - m) : 0x400000u;
    return BitsFloat((neg ? 0x80000000u : 0u) | 0x7f800000u | payload | (spec_.inf ? 0 : 0x400000u));
  } else if (spec_.inf && mag == inf_code_) {
    v = INFINITY;
  } else {
    const int field = e > 0 ? static_cast<int>(mag >> m) : 0;
    const uint32_t frac = mag & ((1u << m) - 1);
    v = field == 0 ? std::ldexp(static_cast<double>(frac), emin_ - m)
                   : std::ldexp(static_cast<double>(frac | (1u << m)), field - spec_.bias - m);
  }
  return static_cast<float>(neg ? -v : v);
}

namespace {

// Fast paths, bit-identical to EncodeScaled (the golden and exhaustive tests
// compare the span and scalar forms).
//
// Float32-layout formats (bf16, tf32: 8 exponent bits, bias 127) are float32
// with the low 23-m bits rounded off: branch-free integer code the compiler
// vectorises. The carry of round-to-nearest-even runs into the exponent and
// turns the largest values into inf, exactly the format's overflow rule.
template <bool kNearest, bool kSaturate>
void EncodeFloat32Layout(const float* in, uint32_t* out, size_t n, int m, uint32_t max_code,
                         uint32_t nan_code, bool nan_keeps_sign) {
  const uint32_t shift = 23 - m;
  const uint32_t half_minus_one = (1u << (shift - 1)) - 1;
  const uint32_t sign_shift = 31 - (8 + m);
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &in[i], 4);
    const uint32_t a = bits & 0x7fffffffu;
    uint32_t mag = kNearest ? (a + half_minus_one + ((a >> shift) & 1)) >> shift : a >> shift;
    if (kSaturate) mag = mag < max_code ? mag : max_code;
    const bool nan = a > 0x7f800000u;
    const uint32_t sign = (nan && !nan_keeps_sign) ? 0 : (bits & 0x80000000u) >> sign_shift;
    out[i] = (nan ? nan_code : mag) | sign;
  }
}

// fp16 with round to nearest even: F16C's VCVTPS2PH rounds exactly so
// (subnormals, overflow to inf included); NaNs are then set to the canonical
// 0x7e00 with their sign (the hardware keeps payload bits), and `saturate`
// clamps the input to +-65504 first (a larger value can only round to 65504 or inf).
void EncodeFp16(const float* in, uint32_t* out, size_t n, bool saturate) {
  const __m256 lim = _mm256_set1_ps(65504.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x = _mm256_loadu_ps(in + i);
    const __m256 unordered = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    if (saturate) x = _mm256_max_ps(_mm256_min_ps(x, lim), _mm256_sub_ps(_mm256_setzero_ps(), lim));
    const __m128i h = _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i w = _mm256_cvtepu16_epi32(h);
    if (_mm256_movemask_ps(unordered)) {
      const __m256i sign = _mm256_srli_epi32(
          _mm256_and_si256(_mm256_castps_si256(_mm256_loadu_ps(in + i)), _mm256_set1_epi32(0x80000000)),
          16);
      const __m256i nan = _mm256_or_si256(sign, _mm256_set1_epi32(0x7e00));
      w = _mm256_blendv_epi8(w, nan, _mm256_castps_si256(unordered));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), w);
  }
  for (; i < n; ++i) {
    const float x = in[i];
    if (x != x) {
      out[i] = 0x7e00u | ((FloatBits(x) >> 16) & 0x8000u);
      continue;
    }
    const float c = saturate ? std::min(std::max(x, -65504.0f), 65504.0f) : x;
    out[i] = _cvtss_sh(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
}

}  // namespace

bool Minifloat::IsFp16Layout() const {
  return spec_.exponent_bits == 5 && spec_.mantissa_bits == 10 && spec_.bias == 15 &&
         spec_.inf && spec_.subnormals && spec_.nan_keeps_sign;
}

void Minifloat::EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) {
  const bool nearest = options_.rounding == RoundingMode::kNearestEven;
  const bool saturate = options_.overflow == OverflowMode::kSaturate;
  if (float32_layout_ && options_.rounding != RoundingMode::kStochastic &&
      spec_.mantissa_bits < 23) {
    const uint32_t nan_mag = nan_code_;
    auto* fn = nearest ? (saturate ? EncodeFloat32Layout<true, true> : EncodeFloat32Layout<true, false>)
                       : (saturate ? EncodeFloat32Layout<false, true> : EncodeFloat32Layout<false, false>);
    // Toward zero never overflows a finite value; saturate also catches +-inf.
    fn(in.data(), out.data(), in.size(), spec_.mantissa_bits, max_code_, nan_mag,
       spec_.nan_keeps_sign);
    return;
  }
  if (nearest && IsFp16Layout()) {
    EncodeFp16(in.data(), out.data(), in.size(), saturate);
    return;
  }
  const OverflowMode overflow = options_.overflow;
  switch (options_.rounding) {
    case RoundingMode::kNearestEven:
      for (size_t i = 0; i < in.size(); ++i) {
        out[i] = EncodeScaledT<RoundingMode::kNearestEven>(in[i], 0, overflow, 0);
      }
      break;
    case RoundingMode::kTowardZero:
      for (size_t i = 0; i < in.size(); ++i) {
        out[i] = EncodeScaledT<RoundingMode::kTowardZero>(in[i], 0, overflow, 0);
      }
      break;
    case RoundingMode::kStochastic:
      for (size_t i = 0; i < in.size(); ++i) out[i] = EncodeOne(in[i]);
      break;
  }
}

void Minifloat::DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const {
  if (float32_layout_) {
    const int shift = 23 - spec_.mantissa_bits;
    for (size_t i = 0; i < in.size(); ++i) out[i] = BitsFloat(in[i] << shift);
    return;
  }
  for (size_t i = 0; i < in.size(); ++i) out[i] = DecodeOne(in[i]);
}

void Minifloat::RoundNearestScaled(const float* in, float* out, size_t n, float pre_scale,
                                   float post_scale, OverflowMode overflow) const {
  // Per value (a = |x| bits):
  //   |x| >= 2^emin: round the float32 pattern to m mantissa bits (add half-1
  //     plus the kept lsb, clear the dropped bits; the carry runs into the
  //     exponent, i.e. rounding as if the exponent range had no upper limit);
  //   |x| <  2^emin: (|x| + M) - M with M = 2^(emin-m+23), whose ulp is the
  //     subnormal quantum 2^(emin-m): the float adder rounds to nearest even;
  //   then overflow is judged after rounding: above the largest finite value
  //   comes the format's rule (inf, NaN, largest) or saturation.
  const int m = spec_.mantissa_bits;
  const uint32_t shift = 23 - m;
  const uint32_t half_minus_one = (1u << (shift - 1)) - 1;
  const uint32_t drop_mask = (1u << shift) - 1;
  const uint32_t min_normal_bits = static_cast<uint32_t>(emin_ + 127) << 23;  // emin >= -126
  const float magic = std::ldexp(1.0f, emin_ - m + 23);
  const uint32_t largest_bits = FloatBits(static_cast<float>(props_.largest));
  uint32_t ovf_bits;
  if (overflow == OverflowMode::kSaturate || !spec_.nan) {
    ovf_bits = largest_bits;
  } else {
    ovf_bits = FloatBits(DecodeSlow(inf_code_)) & 0x7fffffffu;  // inf, or the NaN of E4M3 layouts
  }
  auto one = [&](float x) -> float {
    if (x != x) return x;
    const uint32_t bits = FloatBits(x * pre_scale);
    const uint32_t a = bits & 0x7fffffffu;
    uint32_t r;
    if (a >= min_normal_bits) {
      r = (a + half_minus_one + ((a >> shift) & 1)) & ~drop_mask;
    } else {
      r = FloatBits((BitsFloat(a) + magic) - magic);
    }
    if (r > largest_bits) r = ovf_bits;
    return BitsFloat(r | (bits & 0x80000000u)) * post_scale;
  };
  size_t i = 0;
  const __m256i v_abs = _mm256_set1_epi32(0x7fffffff);
  const __m256i v_sign = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i v_half = _mm256_set1_epi32(static_cast<int>(half_minus_one));
  const __m256i v_one = _mm256_set1_epi32(1);
  const __m256i v_keep = _mm256_set1_epi32(static_cast<int>(~drop_mask));
  const __m256i v_min_normal_m1 = _mm256_set1_epi32(static_cast<int>(min_normal_bits - 1));
  const __m256i v_largest = _mm256_set1_epi32(static_cast<int>(largest_bits));
  const __m256i v_ovf = _mm256_set1_epi32(static_cast<int>(ovf_bits));
  const __m128i v_shift = _mm_cvtsi32_si128(static_cast<int>(shift));
  const __m256 v_magic = _mm256_set1_ps(magic);
  const __m256 v_pre = _mm256_set1_ps(pre_scale), v_post = _mm256_set1_ps(post_scale);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(in + i);
    const __m256i bits = _mm256_castps_si256(_mm256_mul_ps(x, v_pre));
    const __m256i a = _mm256_and_si256(bits, v_abs);
    const __m256i lsb = _mm256_and_si256(_mm256_srl_epi32(a, v_shift), v_one);
    const __m256i rn = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(a, v_half), lsb), v_keep);
    const __m256 af = _mm256_castsi256_ps(a);
    const __m256i rs = _mm256_castps_si256(_mm256_sub_ps(_mm256_add_ps(af, v_magic), v_magic));
    // a and the bounds are below 2^31: signed compares are exact.
    const __m256i normal = _mm256_cmpgt_epi32(a, v_min_normal_m1);
    __m256i r = _mm256_blendv_epi8(rs, rn, normal);
    r = _mm256_blendv_epi8(r, v_ovf, _mm256_cmpgt_epi32(r, v_largest));
    const __m256 y = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(r, _mm256_and_si256(bits, v_sign))), v_post);
    const __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    _mm256_storeu_ps(out + i, _mm256_blendv_ps(y, x, nan));
  }
  for (; i < n; ++i) out[i] = one(in[i]);
}

void Minifloat::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  const bool fast_layout = float32_layout_ && options_.rounding != RoundingMode::kStochastic &&
                           spec_.mantissa_bits < 23;
  if (fast_layout || (options_.rounding == RoundingMode::kNearestEven && IsFp16Layout())) {
    // Encode in chunks, then decode; NaN inputs stay as they are.
    constexpr size_t kChunk = 1024;
    uint32_t codes[kChunk];
    for (size_t start = 0; start < in.size(); start += kChunk) {
      const size_t n = std::min(kChunk, in.size() - start);
      EncodeSpan(in.subspan(start, n), absl::MakeSpan(codes, n));
      if (fast_layout) {
        const int shift = 23 - spec_.mantissa_bits;
        const uint32_t sign_shift = 31 - (8 + spec_.mantissa_bits);
        const uint32_t mag_mask = sign_bit_ - 1;
        for (size_t i = 0; i < n; ++i) {
          const float x = in[start + i];
          const uint32_t c = codes[i];
          const float y = BitsFloat(((c & mag_mask) << shift) | ((c & sign_bit_) << sign_shift));
          out[start + i] = x != x ? x : y;
        }
      } else {
        size_t i = 0;
        for (; i + 8 <= n; i += 8) {
          const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + i));
          const __m128i h = _mm_packus_epi32(_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1));
          const __m256 y = _mm256_cvtph_ps(h);
          const __m256 x = _mm256_loadu_ps(in.data() + start + i);
          const __m256 keep = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
          _mm256_storeu_ps(out.data() + start + i, _mm256_blendv_ps(y, x, keep));
        }
        for (; i < n; ++i) {
          const float x = in[start + i];
          out[start + i] = x != x ? x : _cvtsh_ss(static_cast<uint16_t>(codes[i]));
        }
      }
    }
    return;
  }
  if (options_.rounding == RoundingMode::kNearestEven && HasFastNearest()) {
    RoundNearestScaled(in.data(), out.data(), in.size(), 1.0f, 1.0f, options_.overflow);
    return;
  }
  if (options_.rounding == RoundingMode::kStochastic || table_.empty()) {
    for (size_t i = 0; i < in.size(); ++i) out[i] = RoundOne(in[i]);
    return;
  }
  constexpr size_t kChunk = 1024;
  uint32_t codes[kChunk];
  for (size_t start = 0; start < in.size(); start += kChunk) {
    const size_t n = std::min(kChunk, in.size() - start);
    EncodeSpan(in.subspan(start, n), absl::MakeSpan(codes, n));
    for (size_t i = 0; i < n; ++i) {
      const float x = in[start + i];
      out[start + i] = x != x ? x : table_[codes[i]];
    }
  }
}

Fp32Format::Fp32Format(FormatOptions options) : NumberFormat(FormatProperties{}, options) {
  FormatProperties& p = props_;
  p.name = "fp32";
  p.bits = 32;
  p.bits_per_value = 32;
  p.largest = 3.4028234663852886e38;
  p.smallest_normal = std::ldexp(1.0, -126);
  p.smallest_subnormal = std::ldexp(1.0, -149);
  p.epsilon = std::ldexp(1.0, -23);
  p.has_inf = p.has_nan = true;
}

void Fp32Format::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  if (in.data() != out.data()) std::copy(in.begin(), in.end(), out.begin());
}

absl::StatusOr<std::unique_ptr<NumberFormat>> Fp32Format::Create(ParamReader& p) {
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kFormat);
  return std::unique_ptr<NumberFormat>(new Fp32Format(options));
}

namespace {

// A registered fixed layout: reads only the rounding/overflow options.
std::function<absl::StatusOr<std::unique_ptr<NumberFormat>>(ParamReader&)> Fixed(
    MinifloatSpec spec) {
  return [spec](ParamReader& p) -> absl::StatusOr<std::unique_ptr<NumberFormat>> {
    const FormatOptions options = ReadFormatOptions(p, OverflowMode::kFormat);
    auto f = Minifloat::Make(spec, options);
    if (!f.ok()) return f.status();
    return std::unique_ptr<NumberFormat>(std::move(*f));
  };
}


}  // namespace

absl::StatusOr<std::unique_ptr<NumberFormat>> Minifloat::CreateGeneric(ParamReader& p) {
  MinifloatSpec s;
  s.exponent_bits = static_cast<int>(p.Int("exponent_bits", 4, "exponent field width (0..8)"));
  s.mantissa_bits = static_cast<int>(p.Int("mantissa_bits", 3, "mantissa (fraction) width (0..23)"));
  const bool has_bias = p.Has("bias");
  const int64_t bias = p.Int("bias", 0, "exponent bias (default 2^(exponent_bits-1) - 1)");
  s.subnormals = p.Bool("subnormals", true, "exponent field 0 holds subnormals (else flush to 0)");
  s.inf = p.Bool("inf", true, "all-ones exponent with zero mantissa is +-inf (IEEE layout)");
  s.nan = p.Bool("nan", true,
                 "NaN patterns: with inf the IEEE ones; without inf only S.1..1 (OCP E4M3 style)");
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kFormat);
  s.bias = has_bias ? static_cast<int>(bias)
                    : (s.exponent_bits > 0 ? (1 << (s.exponent_bits - 1)) - 1 : 0);
  s.name = absl::StrCat("minifloat_e", s.exponent_bits, "m", s.mantissa_bits);
  std::string key, message;
  if (!Check(s, &key, &message)) {
    p.Fail(key, message);
    return p.status();
  }
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<NumberFormat>(new Minifloat(s, options));
}

QUANTLAB_REGISTER(NumberFormat, "minifloat", Minifloat::CreateGeneric,
                  "generic binary float: exponent_bits, mantissa_bits, bias, subnormals, inf, nan");
QUANTLAB_REGISTER(NumberFormat, "fp16", Fixed(MakeMinifloatSpec("fp16", 5, 10, 15, true, true)),
                  "IEEE 754 binary16");
QUANTLAB_REGISTER(NumberFormat, "bf16", Fixed(MakeMinifloatSpec("bf16", 8, 7, 127, true, true, false)),
                  "bfloat16 (1-8-7); NaN encodes to 0x7fc0");
QUANTLAB_REGISTER(NumberFormat, "tf32", Fixed(MakeMinifloatSpec("tf32", 8, 10, 127, true, true)),
                  "NVIDIA TensorFloat-32 (1-8-10 in the low 19 bits)");
QUANTLAB_REGISTER(NumberFormat, "fp8_e4m3", Fixed(MakeMinifloatSpec("fp8_e4m3", 4, 3, 7, false, true)),
                  "OCP OFP8 E4M3: no inf, NaN = S.1111.111, max 448");
QUANTLAB_REGISTER(NumberFormat, "fp8_e5m2", Fixed(MakeMinifloatSpec("fp8_e5m2", 5, 2, 15, true, true)),
                  "OCP OFP8 E5M2: IEEE-like, max 57344");
QUANTLAB_REGISTER(NumberFormat, "fp32", Fp32Format::Create, "IEEE binary32: the identity");

}  // namespace quant
