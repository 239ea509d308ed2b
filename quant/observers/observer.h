// Observers (registry `observer:`): collect statistics of the tensors a
// quantizer sees (running min/max, moving averages, histograms) and turn them
// into quantization parameters with PyTorch 1.13's formulas.
//
// Life cycle: the quantizer Bind()s the observer to its QuantSpec (which fixes
// the grouping: per-tensor, per-channel or per-block, and the qparam formula),
// then calls Observe() for every batch and ComputeQParams() when it needs
// parameters. Observers refuse tensors containing inf or NaN (an
// InvalidArgument naming the observer): a range with an infinite end gives no
// usable scale, and PyTorch 1.13 silently produces NaN/inf qparams there.
#ifndef QUANT_OBSERVERS_OBSERVER_H_
#define QUANT_OBSERVERS_OBSERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/core/tensor.h"
#include "quant/qmath/qparams.h"

namespace quant {

// A float range [lo, hi] for one parameter group.
struct Range {
  float lo = 0;
  float hi = 0;
};

// What a histogram-keeping observer exposes to calibration methods.
struct HistogramStats {
  std::vector<float> counts;  // one per bin
  float edge_lo = 0;          // the span the bins cover
  float edge_hi = 0;
  float min_val = 0;          // the observed range (PyTorch's min_val/max_val)
  float max_val = 0;
  // Moments of everything observed (for n_std and aciq).
  int64_t n = 0;
  double sum = 0;
  double sum_sq = 0;
  double mean() const { return n > 0 ? sum / n : 0.0; }
  double stddev() const;
  double total() const;
};

class Observer {
 public:
  static constexpr char kRegistryKind[] = "observer";
  virtual ~Observer() = default;

  // Fixes the spec; refuses a granularity the observer cannot serve (the
  // message names the YAML key). Must be called before Observe().
  virtual absl::Status Bind(const QuantSpec& spec);
  // Updates the statistics with one batch.
  virtual absl::Status Observe(const Tensor& x) = 0;
  // True once there is something to compute qparams from.
  virtual bool has_data() const = 0;
  // Per-group observed ranges (what `calibration: max` and the qparam
  // formula use). FailedPrecondition before any data.
  virtual absl::StatusOr<std::vector<Range>> Ranges() const = 0;
  // The observer's own qparams: TorchObserverQParams over Ranges() unless the
  // observer overrides it (histogram: L2 search; fused: ATen's formula).
  virtual absl::StatusOr<QParams> ComputeQParams() const;
  // Non-null when the observer keeps a histogram (and moments) and has data.
  virtual const HistogramStats* histogram() const { return nullptr; }
  // Whether histogram() will be non-null once data arrives (checked when a
  // quantizer pairs the observer with a calibration method).
  virtual bool keeps_histogram() const { return false; }
  virtual void Reset() = 0;

  const QuantSpec& spec() const { return spec_; }
  // The tensor shape the groups were laid out for (empty before data).
  const std::vector<int64_t>& shape() const { return shape_; }
  // QParams with this spec's range/granularity and the given per-group values.
  QParams MakeQParams(std::vector<float> scale, std::vector<int32_t> zero_point) const;

 protected:
  // Checks the tensor (finite values, same grouping as before) and records its
  // shape; `name` is used in messages.
  absl::Status CheckInput(const Tensor& x, const char* name);
  // Per-group min and max of x under the spec's granularity.
  // `x` must be finite (CheckInput first): the reduction runs 8 lanes at a time, which
  // equals the sequential std::min/std::max loop only on finite values.
  absl::Status GroupMinMax(const Tensor& x, std::vector<float>* mins, std::vector<float>* maxs) const;

  QuantSpec spec_;
  bool bound_ = false;
  std::vector<int64_t> shape_;
};

// True when every value is finite.
bool AllFinite(const float* x, int64_t n);

}  // namespace quant

#endif  // QUANT_OBSERVERS_OBSERVER_H_
