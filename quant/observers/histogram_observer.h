// `histogram`: PyTorch's HistogramObserver. Keeps a `bins`-bin histogram of
// everything observed; when a batch widens the range, the old histogram is
// upsampled by `upsample_rate`, placed on a grid that covers the new range and
// downsampled again (PyTorch 1.13's _adjust_min_max/_combine_histograms).
// Its qparams come from the L2 range search (_non_linear_param_search:
// shrink the range from the side holding less mass, stop when the estimated
// L2 quantization error grows), or from any `calibration:` method.
//
// Deliberate choices:
//  * The first histogram spans the observed [min, max] (the intended
//    algorithm), and so does the histogram of each later batch over the
//    combined range. PyTorch 1.13 passes int(min)/int(max) to torch.histc in
//    both places (Python truncation, pytorch issue #83672), dropping values
//    outside; `torch113_compat: true` reproduces that and also 1.13's search
//    grid of 2^8 destination bins (checked against its stored histograms).
//  * Without compat the search grid has quant_max - quant_min + 1 bins (the
//    levels actually used), so a 4-bit quantizer clips like a 4-bit one.
//  * The L2 search itself follows 1.13's float32 arithmetic step for step,
//    including its summation order, so that given the same histogram it
//    returns the same range bit for bit.
#ifndef QUANT_OBSERVERS_HISTOGRAM_OBSERVER_H_
#define QUANT_OBSERVERS_HISTOGRAM_OBSERVER_H_

#include <memory>
#include <vector>

#include "quant/observers/observer.h"

namespace quant {

class HistogramObserver : public Observer {
 public:
  HistogramObserver(int bins, int upsample_rate, bool torch113_compat)
      : bins_(bins), upsample_rate_(upsample_rate), compat_(torch113_compat) {}
  static absl::StatusOr<std::unique_ptr<Observer>> Create(ParamReader& p);

  absl::Status Bind(const QuantSpec& spec) override;
  absl::Status Observe(const Tensor& x) override;
  bool has_data() const override { return initialized_; }
  absl::StatusOr<std::vector<Range>> Ranges() const override;
  // The L2 search range, then the spec's qparam formula.
  absl::StatusOr<QParams> ComputeQParams() const override;
  const HistogramStats* histogram() const override { return initialized_ ? &stats_ : nullptr; }
  bool keeps_histogram() const override { return true; }
  void Reset() override;

  // Destination bins of the L2 search for the bound spec.
  int dst_nbins() const;
  // The L2 search result [search_min, search_max].
  absl::StatusOr<Range> SearchRange() const;

 private:
  int bins_;
  int upsample_rate_;
  bool compat_;
  bool initialized_ = false;
  HistogramStats stats_;
};

// torch.histc(x, bins, min=lo, max=hi) of PyTorch 1.13 (CPU, float32): an
// empty range widens to the data's range, then to +-1; values outside
// [lo, hi] are dropped; bin = int64((x - lo) * bins / (hi - lo)) in float32,
// the last bin includes hi. Writes the bins' actual span to edge_lo/edge_hi.
void TorchHistc(const float* x, int64_t n, int bins, double lo, double hi,
                std::vector<float>* out, float* edge_lo, float* edge_hi);

// torch.sum of a contiguous float32 vector on an AVX2 CPU (ATen's cascade sum
// with 8-lane float accumulators); the order matters for ties in the search.
float TorchSum(const float* x, int64_t n);

// HistogramObserver._non_linear_param_search of PyTorch 1.13 given the
// histogram, its min_val/max_val and the number of destination bins.
Range TorchNonLinearParamSearch(const std::vector<float>& histogram, float min_val,
                                float max_val, int dst_nbins);

}  // namespace quant

#endif  // QUANT_OBSERVERS_HISTOGRAM_OBSERVER_H_
