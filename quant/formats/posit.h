// Posits (`posit`, and the fixed `posit8`, `posit16`, `posit32` with es = 2 of
// the 2022 Posit Standard, plus the legacy `posit8_0` and `posit16_1`).
//
// posit<n,es>: n bits, two's complement for negatives; after the sign a regime
// (a run of identical bits ended by the opposite bit, k = run-1 for ones and
// -run for zeros), es exponent bits and the fraction; value =
// 2^(k*2^es + e) * 1.f. 0 is all zeros; NaR (not a real) is 1 followed by zeros.
//
// Conversion from float32 builds the exact unbounded bit string of |x| and
// rounds it to n-1 bits with RoundingShiftRight (round to nearest even on the
// bit string, as the standard specifies: the tie point is the (n+1)-bit posit
// U.1, not the arithmetic midpoint). |x| > maxpos gives maxpos and
// 0 < |x| < minpos gives minpos: a non-zero value never becomes 0 or NaR.
// NaN gives NaR; +-inf gives NaR under `overflow: format` (the standard) and
// +-maxpos under `overflow: saturate`.
//
// Decode is exact in DecodeExact (double); Decode rounds it to float32, which
// is exact for n <= 26 as long as |value| is within float32's range
// (posit<32,2> has 27 fraction bits near 1 and is then rounded to nearest even).
#ifndef QUANT_FORMATS_POSIT_H_
#define QUANT_FORMATS_POSIT_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/formats/number_format.h"

namespace quant {

class Posit : public NumberFormat {
 public:
  // n in [2, 32], es in [0, 4] and es <= max(0, n - 3); the error names the key.
  static absl::StatusOr<std::unique_ptr<Posit>> Make(int n, int es, FormatOptions options);
  static absl::StatusOr<std::unique_ptr<NumberFormat>> CreateGeneric(ParamReader& p);

  uint32_t Encode(float x) override { return EncodeOne(x); }
  float Decode(uint32_t bits) const override;
  double DecodeExact(uint32_t bits) const override;
  float Round(float x) override;
  void EncodeSpan(absl::Span<const float> in, absl::Span<uint32_t> out) override;
  void DecodeSpan(absl::Span<const uint32_t> in, absl::Span<float> out) const override;
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;

  int n() const { return n_; }
  int es() const { return es_; }
  uint32_t nar() const { return 1u << (n_ - 1); }
  uint32_t maxpos() const { return nar() - 1; }

 private:
  Posit(int n, int es, FormatOptions options);
  uint32_t EncodeOne(float x);

  int n_, es_;
  uint32_t mask_;
  int max_scale_;  // maxpos = 2^max_scale_
  std::vector<float> table_;  // decode table for n <= 16
};

}  // namespace quant

#endif  // QUANT_FORMATS_POSIT_H_
