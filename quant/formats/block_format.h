// Block formats: k consecutive values share one power-of-two scale X = 2^s,
// each value stores an element P_i, and the value is X * P_i.
//
//   `block_fp`    block floating point: m-bit two's-complement integer elements
//                 P = q * 2^-(m-2) (q in [-(2^(m-1)-1), 2^(m-1)-1]), a shared
//                 exponent of `scale_bits` bits, blocks of `block_size`.
//   `mxfp8_e4m3`, `mxfp8_e5m2`, `mxfp6_e3m2`, `mxfp6_e2m3`, `mxfp4_e2m1`,
//   `mxint8`      OCP Microscaling v1.0: blocks of 32, E8M0 scale, FP8/FP6/FP4
//                 or INT8 (q * 2^-6) elements. `block_fp` with m = 8 and
//                 scale_bits = 8 is MXINT8 with another block size.
//
// Scale (MX v1.0 section 6.3): s = floor(log2(max_i |V_i|)) - emax_elem, taken
// exactly from the float32 exponent bits (not log2f, which rounds up just below
// powers of two), clamped to the scale's range ([-127, 127] for E8M0). Each
// element is V_i / X rounded once (exactly, even where V_i / X would underflow
// float32) with the format's rounding mode; magnitudes beyond the element's
// largest normal are clamped to it, keeping the sign (elements never become
// inf/NaN, so `overflow` is not a parameter here).
// Choices where the specification is silent:
//   * an all-zero block gets the smallest scale (the limit of the rule as
//     amax -> 0: scale code 0) and +-0 elements (the sign of zero is kept);
//   * a block holding NaN or +-inf gets the NaN scale (code all ones, 0xFF for
//     E8M0) and zero elements: every value of it decodes to NaN;
//   * a span whose length is not a multiple of the block size ends with a
//     shorter tail block that is scaled by its own maximum (as if padded with
//     zeros). Blocks run along the span: to block along a tensor's contiguous
//     dimension, call RoundSpan once per row.
// The scalar Encode/Decode work on elements with a unit scale; Round(x) treats
// x as a block of one.
#ifndef QUANT_FORMATS_BLOCK_FORMAT_H_
#define QUANT_FORMATS_BLOCK_FORMAT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/formats/minifloat.h"
#include "quant/formats/number_format.h"

namespace quant {

struct BlockSpec {
  std::string name;
  int block_size = 32;
  int scale_bits = 8;      // shared exponent width: bias 2^(b-1)-1, all ones = NaN (E8M0 for 8)
  bool float_elements = true;
  MinifloatSpec element;   // when float_elements
  int int_bits = 8;        // otherwise: two's-complement integer q, element = q * 2^-(int_bits-2)
};

class BlockFormat : public NumberFormat {
 public:
  static absl::StatusOr<std::unique_ptr<BlockFormat>> Make(const BlockSpec& spec,
                                                           FormatOptions options);
  static absl::StatusOr<std::unique_ptr<NumberFormat>> CreateBlockFp(ParamReader& p);

  // Element patterns with a unit scale (the pattern width is element_bits()).
  uint32_t Encode(float x) override;
  float Decode(uint32_t bits) const override;
  float Round(float x) override;
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;

  // One block (in.size() <= block_size): returns the scale code (E8M0 byte for
  // MX) and writes the element patterns.
  uint32_t EncodeBlock(absl::Span<const float> in, absl::Span<uint32_t> elements);
  // X * P_i for one block.
  void DecodeBlock(uint32_t scale_code, absl::Span<const uint32_t> elements,
                   absl::Span<float> out) const;

  const BlockSpec& spec() const { return spec_; }
  int emax_elem() const { return emax_elem_; }
  uint32_t scale_nan_code() const { return (1u << spec_.scale_bits) - 1; }
  int scale_bias() const { return scale_bias_; }

 private:
  BlockFormat(const BlockSpec& spec, std::unique_ptr<Minifloat> element, FormatOptions options);
  // Shared exponent s for a block (clamped); false if the block holds NaN/inf.
  bool SharedExponent(absl::Span<const float> in, int* s) const;
  uint32_t EncodeElement(float x, int s, uint64_t random) const;
  float DecodeElement(uint32_t bits) const;
  uint64_t Random() {
    return options_.rounding == RoundingMode::kStochastic ? NextRandom() : 0;
  }

  BlockSpec spec_;
  std::unique_ptr<Minifloat> element_;  // float elements
  int emax_elem_;
  int scale_bias_, scale_min_, scale_max_;  // shared exponent range
  int32_t int_max_;                          // int elements: largest |q|
};

}  // namespace quant

#endif  // QUANT_FORMATS_BLOCK_FORMAT_H_
