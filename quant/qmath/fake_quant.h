// Affine quantize / dequantize / fake-quantize kernels and their tensor-level
// wrappers for per-tensor, per-channel and per-block parameters.
//
// Element contract (PyTorch 1.13's fake_quantize_*_cachemask CPU kernels,
// checked bit for bit against its vectors):
//   inv_scale = 1.0f / scale                       (float32; not a division per element)
//   v = float(zero_point) + nearbyint(x * inv_scale)   (float32, round half to even)
//   q = clamp(v, quant_min, quant_max)
//   y = (q - zero_point) * scale                   (one float32 rounding)
//   mask = quant_min <= v <= quant_max             (the STE: grad_x = grad_y * mask)
// Inputs whose v is NaN or >= 2^63 (NaN, +inf, values too large for int64)
// come out as quant_min with mask 0, as PyTorch's float->int64 cast on x86
// makes them (INT64_MIN). quantlab reproduces this rather than rejecting such
// inputs: fake quantization sits inside training loops where an error per
// element would cost a branch; observers, on the other hand, refuse
// non-finite inputs (see quant/observers/observer.h).
#ifndef QUANT_QMATH_FAKE_QUANT_H_
#define QUANT_QMATH_FAKE_QUANT_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "quant/core/tensor.h"
#include "quant/qmath/qparams.h"

namespace quant {

// y[i] (and mask[i] when mask != nullptr) for n elements with one scale/zero
// point. y may alias x. AVX2 when compiled with it, the same results otherwise.
void FakeQuantizeSpan(const float* x, float* y, uint8_t* mask, int64_t n, float scale,
                      int32_t zero_point, int64_t quant_min, int64_t quant_max);

// The same with per-element parameters: scale[i], inv_scale[i] (= 1.0f/scale[i])
// and zero_point[i] (as float) apply to x[i].
void FakeQuantizeLanes(const float* x, float* y, uint8_t* mask, int64_t n, const float* scale,
                       const float* inv_scale, const float* zero_point, int64_t quant_min,
                       int64_t quant_max);

// The clamped codes q of the contract above.
void QuantizeSpan(const float* x, int32_t* q, int64_t n, float scale, int32_t zero_point,
                  int64_t quant_min, int64_t quant_max);
// x = (q - zero_point) * scale.
void DequantizeSpan(const int32_t* q, float* x, int64_t n, float scale, int32_t zero_point);

// How a tensor splits around `axis`: [outer, dim, inner], row-major.
struct AxisSplit {
  int64_t outer = 1;
  int64_t dim = 1;
  int64_t inner = 1;
};

// Checks `qp` against `shape` (axis in range, block size divides the axis,
// parameter count) and returns the split; errors name the spec key.
absl::StatusOr<AxisSplit> CheckQParamsForShape(const QParams& qp,
                                               const std::vector<int64_t>& shape,
                                               const std::string& axis_where = "axis",
                                               const std::string& block_where = "block_size");

// Number of parameter groups for `granularity` on `shape` (1 for per-tensor).
absl::StatusOr<int64_t> NumGroups(Granularity granularity, int axis, int64_t block_size,
                                  const std::vector<int64_t>& shape,
                                  const std::string& axis_where = "axis",
                                  const std::string& block_where = "block_size");

// Tensor-level operations. `mask` (optional) receives the STE mask.
absl::Status FakeQuantize(const Tensor& x, const QParams& qp, Tensor* y,
                          std::vector<uint8_t>* mask = nullptr);
absl::Status Quantize(const Tensor& x, const QParams& qp, std::vector<int32_t>* q);
absl::Status Dequantize(const std::vector<int32_t>& q, const std::vector<int64_t>& shape,
                        const QParams& qp, Tensor* x);
// grad_x = grad_y * mask (the straight-through estimator with clipping).
absl::Status FakeQuantizeBackward(const Tensor& grad_y, const std::vector<uint8_t>& mask,
                                  Tensor* grad_x);

}  // namespace quant

#endif  // QUANT_QMATH_FAKE_QUANT_H_
