// Calibration methods (registry `calibration:`): choose the clipping range
// [lo, hi] that the quantizer's qparams are computed from, using what an
// observer collected. `max` works with every observer; the others read the
// histogram (and moments) of an observer that keeps one (`observer:
// histogram`), e.g. `{observer: histogram, calibration: kl}`. The quantizer
// checks this pairing when it is built, naming the `calibration` key.
//
// The shared helpers below work on HistogramStats: quantiles, the histogram
// of |x| (for symmetric methods) and the expected fake-quant MSE of a range.
#ifndef QUANT_CALIBRATION_CALIBRATION_H_
#define QUANT_CALIBRATION_CALIBRATION_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/observers/observer.h"

namespace quant {

class CalibrationMethod {
 public:
  static constexpr char kRegistryKind[] = "calibration";
  virtual ~CalibrationMethod() = default;
  // True when the method reads observer.histogram().
  virtual bool needs_histogram() const = 0;
  // One range per parameter group of the observer's spec.
  virtual absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const = 0;
};

// The histogram of `observer` or FailedPrecondition naming `method`.
absl::StatusOr<const HistogramStats*> RequireHistogram(const Observer& observer,
                                                       const char* method);

// Value below which `fraction` (0..1) of the histogram's mass lies (linear
// inside a bin).
double HistogramQuantile(const HistogramStats& h, double fraction);

// The histogram of |x| with `bins` bins over [0, amax] (amax is returned),
// spreading each source bin uniformly over the span it covers.
std::vector<double> AbsHistogram(const HistogramStats& h, int bins, double* amax);

// Expected squared error of fake-quantizing the histogram's data with the
// qparams the spec gives to [lo, hi] (each bin sampled at 4 points).
double ExpectedFakeQuantMse(const HistogramStats& h, const QuantSpec& spec, float lo, float hi);

// True when the histogram holds no negative values.
inline bool NonNegative(const HistogramStats& h) { return h.min_val >= 0; }

}  // namespace quant

#endif  // QUANT_CALIBRATION_CALIBRATION_H_
