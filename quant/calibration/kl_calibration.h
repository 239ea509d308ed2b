// `kl`: TensorRT's entropy calibration (Migacz, "8-bit Inference with
// TensorRT", GTC 2017). On a 2048-bin histogram of |x|, for every candidate
// threshold bin i >= max(n, kl_start_bin) (n = the number of quantized bins;
// kl_start_bin 128 as NVIDIA's pytorch-quantization, which keeps 4-bit
// thresholds from collapsing onto the spike at zero): P = the first i bins with
// the outliers folded into bin i-1; Q = those i bins merged into n bins and
// expanded back over P's non-empty bins; pick the i with the least KL(P||Q)
// (both smoothed as in MXNet's implementation). n is 2^(bits-1) for data with
// negative values (symmetric grid) and the full level count for non-negative
// data. The range is [-T, T] clipped to the observed one (T = i bin widths).
#ifndef QUANT_CALIBRATION_KL_CALIBRATION_H_
#define QUANT_CALIBRATION_KL_CALIBRATION_H_

#include <memory>

#include "quant/calibration/calibration.h"

namespace quant {

class KlCalibration : public CalibrationMethod {
 public:
  KlCalibration(int bins, int start_bin) : bins_(bins), start_bin_(start_bin) {}
  static absl::StatusOr<std::unique_ptr<CalibrationMethod>> Create(ParamReader& p);
  bool needs_histogram() const override { return true; }
  absl::StatusOr<std::vector<Range>> ChooseRanges(const Observer& observer) const override;

 private:
  int bins_;
  int start_bin_;
};

}  // namespace quant

#endif  // QUANT_CALIBRATION_KL_CALIBRATION_H_
