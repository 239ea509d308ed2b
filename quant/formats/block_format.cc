#include "quant/formats/block_format.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/formats/rounding.h"

namespace quant {

using formats_internal::RoundingShiftRight;
using formats_internal::UnpackMagnitude;

namespace {
// 2^s as a float32 (s in [-149, 127]).
float Pow2(int s) {
  if (s >= -126) return BitsFloat(static_cast<uint32_t>(s + 127) << 23);
  return BitsFloat(1u << (s + 149));
}
}  // namespace

BlockFormat::BlockFormat(const BlockSpec& spec, std::unique_ptr<Minifloat> element,
                         FormatOptions options)
    : NumberFormat(FormatProperties{}, options), spec_(spec), element_(std::move(element)) {
  scale_bias_ = (1 << (spec.scale_bits - 1)) - 1;
  scale_min_ = -scale_bias_;
  scale_max_ = (1 << spec.scale_bits) - 2 - scale_bias_;
  FormatProperties& p = props_;
  p.name = spec.name;
  p.block_size = spec.block_size;
  if (element_) {
    const FormatProperties& e = element_->properties();
    emax_elem_ = std::ilogb(e.largest);
    int_max_ = 0;
    p.bits = e.bits;
    p.largest = std::ldexp(e.largest, scale_max_);
    p.smallest_normal = std::ldexp(e.smallest_normal, scale_min_);
    p.smallest_subnormal = std::ldexp(e.smallest_subnormal, scale_min_);
    p.epsilon = e.epsilon;
  } else {
    emax_elem_ = 0;
    int_max_ = (1 << (spec.int_bits - 1)) - 1;
    const int fbits = spec.int_bits - 2;
    p.bits = spec.int_bits;
    p.largest = std::ldexp(static_cast<double>(int_max_), scale_max_ - fbits);
    p.smallest_normal = p.smallest_subnormal = std::ldexp(1.0, scale_min_ - fbits);
    p.epsilon = std::ldexp(1.0, -fbits);
    p.order = PatternOrder::kTwosComplement;
  }
  p.bits_per_value = p.bits + static_cast<double>(spec.scale_bits) / spec.block_size;
  p.has_inf = false;
  p.has_nan = true;  // the NaN scale
}

absl::StatusOr<std::unique_ptr<BlockFormat>> BlockFormat::Make(const BlockSpec& spec,
                                                               FormatOptions options) {
  if (spec.block_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": block_size must be >= 1"));
  }
  if (spec.scale_bits < 2 || spec.scale_bits > 8) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": scale_bits must be in [2, 8]"));
  }
  std::unique_ptr<Minifloat> element;
  if (spec.float_elements) {
    auto e = Minifloat::Make(spec.element, options);
    if (!e.ok()) return e.status();
    element = std::move(*e);
  } else if (spec.int_bits < 2 || spec.int_bits > 24) {
    return absl::InvalidArgumentError(absl::StrCat(spec.name, ": mantissa_bits must be in [2, 24]"));
  }
  return std::unique_ptr<BlockFormat>(new BlockFormat(spec, std::move(element), options));
}

bool BlockFormat::SharedExponent(absl::Span<const float> in, int* s) const {
  uint32_t amax = 0;  // |x| bits order like |x| for non-NaN floats
  for (float x : in) amax = std::max(amax, FloatBits(x) & 0x7fffffffu);
  if (amax >= 0x7f800000u) return false;
  if (amax == 0) {
    *s = scale_min_;
    return true;
  }
  const int e = UnpackMagnitude(amax).log2 - emax_elem_;
  *s = std::min(std::max(e, scale_min_), scale_max_);
  return true;
}

uint32_t BlockFormat::EncodeElement(float x, int s, uint64_t random) const {
  if (element_) {
    return element_->EncodeScaled(x, -s, options_.rounding, OverflowMode::kSaturate, random);
  }
  const uint32_t bits = FloatBits(x);
  const uint32_t a = bits & 0x7fffffffu;
  const uint32_t mask = (1u << spec_.int_bits) - 1;
  if (a == 0 || a > 0x7f800000u) return 0;
  uint64_t q;
  if (a == 0x7f800000u) {
    q = int_max_;
  } else {
    const formats_internal::Unpacked u = UnpackMagnitude(a);
    const int shift = s - (spec_.int_bits - 2) - u.exp;  // q = sig * 2^-shift
    q = shift < -40 ? ~uint64_t{0} : RoundingShiftRight(u.sig, shift, options_.rounding, random);
    q = std::min<uint64_t>(q, int_max_);
  }
  const uint32_t v = static_cast<uint32_t>(q);
  return ((bits >> 31) ? (~v + 1) : v) & mask;
}

float BlockFormat::DecodeElement(uint32_t bits) const {
  if (element_) return element_->DecodeOne(bits);
  const int b = spec_.int_bits;
  int32_t q = static_cast<int32_t>(bits & ((1u << b) - 1));
  if (q & (1 << (b - 1))) q -= (1 << b);
  return static_cast<float>(q) * Pow2(-(b - 2));
}

uint32_t BlockFormat::Encode(float x) {
  return EncodeElement(x, 0, Random());
}

float BlockFormat::Decode(uint32_t bits) const { return DecodeElement(bits); }

float BlockFormat::Round(float x) {
  float out;
  RoundSpan(absl::MakeConstSpan(&x, 1), absl::MakeSpan(&out, 1));
  return out;
}

uint32_t BlockFormat::EncodeBlock(absl::Span<const float> in, absl::Span<uint32_t> elements) {
  int s;
  if (!SharedExponent(in, &s)) {
    std::fill(elements.begin(), elements.begin() + in.size(), 0u);
    return scale_nan_code();
  }
  for (size_t i = 0; i < in.size(); ++i) elements[i] = EncodeElement(in[i], s, Random());
  return static_cast<uint32_t>(s + scale_bias_);
}

void BlockFormat::DecodeBlock(uint32_t scale_code, absl::Span<const uint32_t> elements,
                              absl::Span<float> out) const {
  if (scale_code == scale_nan_code()) {
    std::fill(out.begin(), out.begin() + elements.size(), std::nanf(""));
    return;
  }
  const float x = Pow2(static_cast<int>(scale_code) - scale_bias_);
  for (size_t i = 0; i < elements.size(); ++i) out[i] = DecodeElement(elements[i]) * x;
}

void BlockFormat::RoundSpan(absl::Span<const float> in, absl::Span<float> out) {
  const size_t k = static_cast<size_t>(spec_.block_size);
  for (size_t start = 0; start < in.size(); start += k) {
    const size_t len = std::min(k, in.size() - start);
    const absl::Span<const float> block = in.subspan(start, len);
    int s;
    if (!SharedExponent(block, &s)) {
      std::fill(out.begin() + start, out.begin() + start + len, std::nanf(""));
      continue;
    }
    const float x = Pow2(s);
    if (element_ && options_.rounding == RoundingMode::kNearestEven && element_->HasFastNearest()) {
      // V * 2^-s is exact unless it falls below float32's normals, and then it
      // is far below half the element's smallest subnormal (>= 2^-16): it
      // rounds to +-0 either way. Element * 2^s is exact (see the header).
      element_->RoundNearestScaled(block.data(), out.data() + start, len, Pow2(-s), x,
                                   OverflowMode::kSaturate);
      continue;
    }
    if (!element_ && options_.rounding == RoundingMode::kNearestEven) {
      // Integer elements: q = nearbyint(V * 2^(fbits-s)) clamped to +-int_max,
      // value q * 2^(s-fbits). The products are exact (|V| * 2^(fbits-s) <
      // 2^(fbits+1), and anything that underflows float32 rounds to 0 anyway),
      // nearbyint rounds half to even: identical to EncodeElement.
      const int fbits = spec_.int_bits - 2;
      // 2^(fbits-s) may exceed float32's range (s = -127): two exact factors.
      const int up = fbits - s;
      const float pre1 = Pow2(std::min(up, 127)), pre2 = Pow2(up - std::min(up, 127));
      const float post = Pow2(s - fbits);  // >= 2^-149
      const float lim = static_cast<float>(int_max_);
      for (size_t i = 0; i < len; ++i) {
        const float v = block[i];
        const float q = std::nearbyint(std::min(std::max(v * pre1 * pre2, -lim), lim));
        out[start + i] = v != v ? v : (q + 0.0f) * post;  // + 0: integers have no -0
      }
      continue;
    }
    for (size_t i = 0; i < len; ++i) {
      out[start + i] = DecodeElement(EncodeElement(block[i], s, Random())) * x;
    }
  }
}

namespace {


std::function<absl::StatusOr<std::unique_ptr<NumberFormat>>(ParamReader&)> Mx(BlockSpec spec) {
  return [spec](ParamReader& p) -> absl::StatusOr<std::unique_ptr<NumberFormat>> {
    BlockSpec s = spec;
    s.block_size = static_cast<int>(
        p.Int("block_size", 32, "values sharing one E8M0 scale (32 in the MX specification)"));
    const FormatOptions options = ReadFormatOptions(p, OverflowMode::kSaturate, false);
    RETURN_IF_ERROR(p.status());
    if (s.block_size < 1) {
      p.Fail("block_size", absl::StrCat("must be >= 1, got ", s.block_size));
      return p.status();
    }
    auto f = BlockFormat::Make(s, options);
    if (!f.ok()) return f.status();
    return std::unique_ptr<NumberFormat>(std::move(*f));
  };
}

BlockSpec MxFloat(const char* name, MinifloatSpec element) {
  BlockSpec s;
  s.name = name;
  s.element = std::move(element);
  return s;
}

BlockSpec MxInt8() {
  BlockSpec s;
  s.name = "mxint8";
  s.float_elements = false;
  s.int_bits = 8;
  return s;
}

}  // namespace

absl::StatusOr<std::unique_ptr<NumberFormat>> BlockFormat::CreateBlockFp(ParamReader& p) {
  BlockSpec s;
  s.name = "block_fp";
  s.float_elements = false;
  s.block_size = static_cast<int>(p.Int("block_size", 16, "values sharing one exponent (>= 1)"));
  s.int_bits = static_cast<int>(p.IntInRange(
      "mantissa_bits", 8, 2, 24, "bits of each two's-complement mantissa, sign included"));
  s.scale_bits = static_cast<int>(
      p.IntInRange("scale_bits", 8, 2, 8, "bits of the shared exponent (8: E8M0's range)"));
  const FormatOptions options = ReadFormatOptions(p, OverflowMode::kSaturate, false);
  RETURN_IF_ERROR(p.status());
  if (s.block_size < 1) {
    p.Fail("block_size", absl::StrCat("must be >= 1, got ", s.block_size));
    return p.status();
  }
  s.name = absl::StrCat("block_fp", s.int_bits, "_k", s.block_size);
  auto f = Make(s, options);
  if (!f.ok()) return f.status();
  return std::unique_ptr<NumberFormat>(std::move(*f));
}

QUANTLAB_REGISTER(NumberFormat, "block_fp", BlockFormat::CreateBlockFp,
                  "block floating point: block_size values share an exponent, m-bit mantissas");
QUANTLAB_REGISTER(NumberFormat, "mxfp8_e4m3",
                  Mx(MxFloat("mxfp8_e4m3", MakeMinifloatSpec("e4m3", 4, 3, 7, false, true))),
                  "OCP MX: 32 x FP8 E4M3 + E8M0 scale");
QUANTLAB_REGISTER(NumberFormat, "mxfp8_e5m2",
                  Mx(MxFloat("mxfp8_e5m2", MakeMinifloatSpec("e5m2", 5, 2, 15, true, true))),
                  "OCP MX: 32 x FP8 E5M2 + E8M0 scale");
QUANTLAB_REGISTER(NumberFormat, "mxfp6_e3m2",
                  Mx(MxFloat("mxfp6_e3m2", MakeMinifloatSpec("e3m2", 3, 2, 3, false, false))),
                  "OCP MX: 32 x FP6 E3M2 + E8M0 scale");
QUANTLAB_REGISTER(NumberFormat, "mxfp6_e2m3",
                  Mx(MxFloat("mxfp6_e2m3", MakeMinifloatSpec("e2m3", 2, 3, 1, false, false))),
                  "OCP MX: 32 x FP6 E2M3 + E8M0 scale");
QUANTLAB_REGISTER(NumberFormat, "mxfp4_e2m1",
                  Mx(MxFloat("mxfp4_e2m1", MakeMinifloatSpec("e2m1", 2, 1, 1, false, false))),
                  "OCP MX: 32 x FP4 E2M1 + E8M0 scale");
QUANTLAB_REGISTER(NumberFormat, "mxint8", Mx(MxInt8()), "OCP MX: 32 x INT8 (q * 2^-6) + E8M0 scale");

}  // namespace quant
