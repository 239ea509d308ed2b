// Flexpoint (Koster et al., NeurIPS 2017): flex N+E holds a tensor as N-bit
// two's-complement integer mantissas q sharing one E-bit exponent e per tensor:
// value = q * 2^e, |q| <= 2^(N-1)-1, e in [-2^(E-1), 2^(E-1)-1]. The default is
// the paper's flex16+5. Registered as `flexpoint` (mantissa_bits, exponent_bits,
// history, margin) and `flexpoint16` (flex16+5).
//
// Autoflex (the paper's Algorithm 1, as read here): the exponent used for a
// tensor at step t is predicted, before seeing the tensor, from a history of
// the tensor's maxima |x|max over the last `history` steps: predicted max =
// max(history) + margin * stddev(history), and e is the smallest exponent
// whose range (2^(N-1)-1) * 2^e holds it. Then:
//   * overflow detection: the tensor's actual max exceeds the range of e;
//   * correction: e is raised to fit the actual max with one extra bit of
//     headroom (x2), the history is restarted from this max, and the tensor
//     is rounded again with the corrected exponent (the paper re-runs the
//     operation; here only the rounding is redone, so no value is saturated
//     unless the exponent range itself is exceeded).
//   * the first step (empty history) sets e from the tensor itself (the
//     paper's initialisation pass) and counts no overflow.
// So Flexpoint is stateful: each RoundSpan call is one step of one tensor (use
// one format object per tensor). Round(x), Encode and Decode use the current
// exponent and change nothing. Reset() forgets the history.
#ifndef QUANT_FORMATS_FLEXPOINT_H_
#define QUANT_FORMATS_FLEXPOINT_H_

#include <cstdint>
#include <deque>
#include <memory>

#include "absl/status/statusor.h"
#include "quant/formats/number_format.h"

namespace quant {

class Flexpoint : public NumberFormat {
 public:
  struct Config {
    int mantissa_bits = 16;
    int exponent_bits = 5;
    int history = 16;       // maxima kept for the prediction
    double margin = 3.0;    // standard deviations of headroom in the prediction
    int initial_exponent = 0;
  };
  static absl::StatusOr<std::unique_ptr<Flexpoint>> Make(const Config& config, FormatOptions options);
  static absl::StatusOr<std::unique_ptr<NumberFormat>> CreateGeneric(ParamReader& p);

  uint32_t Encode(float x) override;
  float Decode(uint32_t bits) const override;
  float Round(float x) override;
  // One Autoflex step on one tensor (see the header comment).
  void RoundSpan(absl::Span<const float> in, absl::Span<float> out) override;
  void Reset() override;

  int exponent() const { return exponent_; }
  int steps() const { return steps_; }
  int overflows() const { return overflows_; }  // corrected overflows so far
  // The exponent Autoflex predicts for the next step.
  int PredictedExponent() const;

 private:
  Flexpoint(const Config& config, FormatOptions options);
  int ExponentFor(double max_abs) const;  // smallest e whose range holds max_abs (clamped)
  int64_t Quantize(float x, int e);
  double Range(int e) const { return static_cast<double>(qmax_) * std::ldexp(1.0, e); }

  Config config_;
  int64_t qmax_;
  int emin_, emax_;
  uint32_t mask_;
  int exponent_;
  int steps_ = 0, overflows_ = 0;
  std::deque<double> maxima_;
};

}  // namespace quant

#endif  // QUANT_FORMATS_FLEXPOINT_H_
