// Integer grids as number formats, so that integer quantization sits in the
// same tables as the float formats: `int` (bits, signed, scale) and the fixed
// `int4`, `uint4`, `int8`, `uint8`, `int16` (with a `scale` parameter).
//
// value = q * scale; signed q in [-(2^(b-1)-1), 2^(b-1)-1] (symmetric: the
// pattern 100..0 = -2^(b-1) decodes but is never produced by Encode), unsigned
// q in [0, 2^b-1]. Encode computes x / scale in double and rounds it with the
// rounding mode; beyond the range it saturates (an integer grid has no inf or
// NaN, so `overflow` is not a parameter); NaN encodes to 0 (Round returns NaN).
// The default scale 2^-(b-3) gives signed grids a range of about +-4 (N(0,1)'s
// 4 sigma) and unsigned grids [0, 8).
// Properties: smallest normal = smallest subnormal = scale, epsilon = scale
// (the absolute spacing; integer grids have no relative precision).
#ifndef QUANT_FORMATS_INT_FORMAT_H_
#define QUANT_FORMATS_INT_FORMAT_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "quant/formats/number_format.h"

namespace quant {

class IntFormat : public NumberFormat {
 public:
  static absl::StatusOr<std::unique_ptr<IntFormat>> Make(int bits, bool is_signed, double scale,
                                                         FormatOptions options);
  static absl::StatusOr<std::unique_ptr<NumberFormat>> CreateGeneric(ParamReader& p);

  uint32_t Encode(float x) override { return EncodeOne(x); }
  float Decode(uint32_t bits) const override;
  double DecodeExact(uint32_t bits) const override {
    int64_t q = bits & mask_;
    if (signed_ && (q >> (bits_ - 1))) q -= int64_t{1} << bits_;
    return static_cast<double>(q) * scale_;
  }
  void DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const override;
  float Round(float x) override;
  void EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) override;
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;

  double scale() const { return scale_; }
  int64_t qmin() const { return qmin_; }
  int64_t qmax() const { return qmax_; }

 private:
  IntFormat(int bits, bool is_signed, double scale, FormatOptions options);
  int64_t Quantize(float x);  // the clamped integer
  uint32_t EncodeOne(float x);

  int bits_;
  bool signed_;
  double scale_, inv_scale_;
  int64_t qmin_, qmax_;
  uint32_t mask_;
};

}  // namespace quant

#endif  // QUANT_FORMATS_INT_FORMAT_H_
