// Quantization parameters and the quantization spec: the integer grid
// (quant_min/quant_max from bits, signedness, narrow range, reduce_range or an
// explicit range), the scheme (affine or symmetric), the granularity
// (per-tensor, per-channel along an axis, per-block along an axis) and the
// formulas that turn an observed float range into scale and zero point.
//
// Two formulas are provided because PyTorch 1.13 has two and they disagree:
//   * TorchObserverQParams: torch.ao.quantization observers'
//     _calculate_qparams (eps floor on the scale, zero point clamped), used by
//     every quantlab observer by default;
//   * ChooseQuantizationParams: ATen's C++ quant_utils::ChooseQuantizationParams
//     used by torch.fused_moving_avg_obs_fake_quant (FusedMovingAvgObsFakeQuantize,
//     the default QAT qconfig); its symmetric scale is max(|min|/128, |max|/127).
#ifndef QUANT_QMATH_QPARAMS_H_
#define QUANT_QMATH_QPARAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "quant/core/params.h"

namespace quant {

enum class Granularity { kPerTensor, kPerChannel, kPerBlock };

const char* GranularityName(Granularity g);

// Everything about how one tensor is quantized that does not depend on data.
struct QuantSpec {
  int bits = 8;
  bool is_signed = false;
  bool symmetric = false;
  bool narrow_range = false;
  bool reduce_range = false;
  // PyTorch's has_customized_qrange: true unless the range is the default
  // 8-bit one of qint8/quint8 (it changes the unsigned symmetric zero point:
  // 128 for the default range, floor((quant_min+quant_max)/2) otherwise).
  bool custom_range = false;
  int64_t quant_min = 0;  // effective, after narrow_range/reduce_range
  int64_t quant_max = 255;
  Granularity granularity = Granularity::kPerTensor;
  int axis = 0;            // per_channel / per_block; negative counts from the end
  int64_t block_size = 0;  // per_block only
  float eps = 1.1920928955078125e-07f;  // torch.finfo(torch.float32).eps

  // Where the shape-dependent keys came from, for errors found later (an axis
  // out of range is only known when a tensor arrives).
  std::string axis_where = "axis";
  std::string block_size_where = "block_size";

  int64_t levels() const { return quant_max - quant_min + 1; }
  std::string Describe() const;
};

// The integer range for `bits` (2..16) of the given signedness:
// signed [-2^(b-1), 2^(b-1)-1] ([-2^(b-1)+1, ...] when narrow), unsigned
// [0, 2^b-1] ([1, 2^b-1] when narrow); reduce_range then halves both ends
// (floor division, PyTorch's quant_min // 2, quant_max // 2).
void IntegerRange(int bits, bool is_signed, bool narrow_range, bool reduce_range,
                  int64_t* quant_min, int64_t* quant_max);

// Reads the spec keys of a quantizer map (bits, signed, symmetric,
// narrow_range, reduce_range, quant_min, quant_max, granularity, axis,
// block_size, eps) and validates them; bad values are recorded on `p` naming
// the key. Returns the spec (meaningful only when p.status() is OK).
QuantSpec ReadQuantSpec(ParamReader& p, int default_bits = 8);

// Checks a spec built in code (tests, PyTorch-config translation); the same
// rules as ReadQuantSpec, the message names the offending field.
absl::Status ValidateQuantSpec(const QuantSpec& spec);

// Scale(s) and zero point(s) for one tensor. For per-channel, one entry per
// index of `axis`; for per-block, one entry per block: the tensor's shape with
// dimension `axis` replaced by dim/block_size, row-major.
struct QParams {
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  int64_t quant_min = 0;
  int64_t quant_max = 255;
  Granularity granularity = Granularity::kPerTensor;
  int axis = 0;
  int64_t block_size = 0;

  int64_t size() const { return static_cast<int64_t>(scale.size()); }
  static QParams PerTensor(float scale, int32_t zero_point, int64_t quant_min, int64_t quant_max);
};

// PyTorch 1.13 UniformQuantizationObserverBase._calculate_qparams for one
// (min, max) pair, in the same float32 operations:
//   min_neg = min(min, 0), max_pos = max(max, 0)
//   symmetric: scale = max(-min_neg, max_pos) / ((quant_max-quant_min)/2),
//              scale = max(scale, eps), zero point 0 (signed) or 128 /
//              floor((quant_min+quant_max)/2) (unsigned, default/custom range)
//   affine:    scale = max((max_pos-min_neg)/(quant_max-quant_min), eps),
//              zp = clamp(quant_min - round_half_even(min_neg/scale), quant_min, quant_max)
// Requires min <= max (FailedPrecondition otherwise, as PyTorch asserts).
absl::Status TorchObserverQParams(const QuantSpec& spec, float min_val, float max_val,
                                  float* scale, int32_t* zero_point);

// ATen quant_utils::ChooseQuantizationParams(min, max, qmin, qmax,
// preserve_sparsity, force_scale_power_of_two=false, reduce_range=false) with
// its float/double mix: the range is widened to contain 0, a scale that is 0
// or has an infinite reciprocal becomes 0.1, scales below 6.1e-5 are raised to
// it (widening min/max), the zero point comes from the end with the smaller
// error and is nudged to the nearest integer in [qmin, qmax]. With
// preserve_sparsity (symmetric) and min < 0 < max the range is first made
// symmetric around the middle of [qmin, qmax].
absl::Status ChooseQuantizationParams(float min, float max, int32_t qmin, int32_t qmax,
                                      bool preserve_sparsity, float* scale,
                                      int32_t* zero_point);

}  // namespace quant

#endif  // QUANT_QMATH_QPARAMS_H_
