#include "quant/qmath/qparams.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace quant {
namespace {

// Python's floor division by 2 (PyTorch halves ranges with `// 2`).
int64_t FloorHalf(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

}  // namespace

const char* GranularityName(Granularity g) {
  switch (g) {
    case Granularity::kPerTensor:
      return "per_tensor";
    case Granularity::kPerChannel:
      return "per_channel";
    case Granularity::kPerBlock:
      return "per_block";
  }
  return "?";
}

std::string QuantSpec::Describe() const {
  std::string s = absl::StrCat(bits, "-bit ", is_signed ? "signed" : "unsigned", " ",
                               symmetric ? "symmetric" : "affine", " [", quant_min, ", ",
                               quant_max, "] ", GranularityName(granularity));
  if (granularity != Granularity::kPerTensor) absl::StrAppend(&s, " axis ", axis);
  if (granularity == Granularity::kPerBlock) absl::StrAppend(&s, " block ", block_size);
  return s;
}

void IntegerRange(int bits, bool is_signed, bool narrow_range, bool reduce_range,
                  int64_t* quant_min, int64_t* quant_max) {
  int64_t lo, hi;
  if (is_signed) {
    lo = -(int64_t{1} << (bits - 1));
    hi = (int64_t{1} << (bits - 1)) - 1;
  } else {
    lo = 0;
    hi = (int64_t{1} << bits) - 1;
  }
  if (narrow_range) lo += 1;
  if (reduce_range) {
    lo = FloorHalf(lo);
    hi = FloorHalf(hi);
  }
  *quant_min = lo;
  *quant_max = hi;
}

QuantSpec ReadQuantSpec(ParamReader& p, int default_bits) {
  QuantSpec s;
  // One bit is not an affine grid (two levels with a zero point): say which quantizers do it.
  if (!p.describing() && p.Has("bits") && p.Int("bits", default_bits, "") == 1) {
    p.Fail("bits", "1 bit is not an affine grid: use `quantizer: binary` (sign, BNN) or `xnor`");
  }
  s.bits = static_cast<int>(p.IntInRange("bits", default_bits, 2, 16, "bit width of the integer grid"));
  s.symmetric = p.Bool("symmetric", false,
                       "symmetric range around zero (zero point fixed) instead of affine");
  s.is_signed = p.Bool("signed", s.symmetric,
                       "signed integers; the default follows `symmetric` (PyTorch's qint8 "
                       "weights / quint8 activations)");
  s.narrow_range = p.Bool("narrow_range", false,
                          "drop the lowest code: [-127, 127] for signed 8-bit, [1, 255] unsigned");
  s.reduce_range = p.Bool("reduce_range", false, "halve the range (PyTorch's reduce_range)");
  const bool has_min = p.Has("quant_min");
  const bool has_max = p.Has("quant_max");
  // Codes fit 16 bits (bits <= 16): bounding the keys keeps every range
  // computation below free of overflow (quant_max - quant_min + 1 at the int64
  // limits was undefined behaviour).
  constexpr int64_t kCodeLimit = int64_t{1} << 16;
  const int64_t qmin_in = p.IntInRange("quant_min", 0, -kCodeLimit, kCodeLimit - 1,
                                       "explicit smallest code (with quant_max; overrides bits/signed)");
  const int64_t qmax_in =
      p.IntInRange("quant_max", 0, -kCodeLimit, kCodeLimit - 1, "explicit largest code (with quant_min)");
  const std::string granularity =
      p.Choice("granularity", "per_tensor", {"per_tensor", "per_channel", "per_block"},
               "one scale for the tensor, one per index of `axis`, or one per block of "
               "`block_size` elements along `axis`");
  const bool has_axis = p.Has("axis");
  // Bounded before narrowing to int: 4294967296 used to become axis 0.
  s.axis = static_cast<int>(p.IntInRange("axis", 0, -16, 15, "channel/block axis (negative counts from the end)"));
  const bool has_block = p.Has("block_size");
  s.block_size = p.IntInRange("block_size", 0, 0, int64_t{1} << 30, "elements per block along `axis` (per_block)");
  s.eps = static_cast<float>(p.Double("eps", 1.1920928955078125e-07,
                                      "smallest scale (PyTorch observers' eps floor)"));
  s.axis_where = p.Location("axis");
  s.block_size_where = p.Location("block_size");
  if (p.describing()) return s;

  if (granularity == "per_channel") s.granularity = Granularity::kPerChannel;
  if (granularity == "per_block") s.granularity = Granularity::kPerBlock;

  if (has_min != has_max) {
    p.Fail(has_min ? "quant_min" : "quant_max",
           "quant_min and quant_max must be given together");
  } else if (has_min) {
    if (qmin_in >= qmax_in) {
      p.Fail("quant_min", absl::StrCat("quant_min (", qmin_in, ") must be less than quant_max (",
                                       qmax_in, ")"));
    } else if (qmin_in > 0 || qmax_in < 0) {
      p.Fail("quant_min", absl::StrCat("the range [", qmin_in, ", ", qmax_in,
                                       "] must include 0 (as PyTorch requires)"));
    } else if (qmax_in - qmin_in + 1 > (int64_t{1} << s.bits)) {
      p.Fail("quant_max", absl::StrCat("the range [", qmin_in, ", ", qmax_in, "] has ",
                                       qmax_in - qmin_in + 1, " codes, more than ", s.bits,
                                       " bits hold (set bits)"));
    }
    s.quant_min = qmin_in;
    s.quant_max = qmax_in;
    s.custom_range = true;
    if (s.reduce_range) {
      s.quant_min = FloorHalf(s.quant_min);
      s.quant_max = FloorHalf(s.quant_max);
    }
  } else {
    IntegerRange(s.bits, s.is_signed, s.narrow_range, s.reduce_range, &s.quant_min, &s.quant_max);
    s.custom_range = s.bits != 8 || s.narrow_range;
  }
  if (s.symmetric && !s.is_signed && s.reduce_range) {
    p.Fail("reduce_range",
           "reduce_range with symmetric unsigned quantization is refused (PyTorch: \"Cannot "
           "reduce range for symmetric quantization for quint8\")");
  }
  if (!(s.eps > 0.0f) || !std::isfinite(s.eps)) p.Fail("eps", "eps must be a positive number");
  if (s.granularity == Granularity::kPerTensor && has_axis) {
    p.Fail("axis", "axis is only used with granularity: per_channel or per_block");
  }
  if (s.granularity == Granularity::kPerBlock) {
    if (s.block_size < 1) {
      p.Fail("block_size", absl::StrCat("granularity: per_block needs block_size >= 1, got ",
                                        s.block_size));
    }
  } else if (has_block) {
    p.Fail("block_size", "block_size is only used with granularity: per_block");
  }
  return s;
}

absl::Status ValidateQuantSpec(const QuantSpec& s) {
  if (s.bits < 2 || s.bits > 16) {
    return absl::InvalidArgumentError(absl::StrCat("bits: expected 2..16, got ", s.bits));
  }
  if (s.quant_min >= s.quant_max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "quant_min: ", s.quant_min, " must be less than quant_max ", s.quant_max));
  }
  if (s.symmetric && !s.is_signed && s.reduce_range) {
    return absl::InvalidArgumentError(
        "reduce_range: refused with symmetric unsigned quantization (PyTorch: Cannot reduce "
        "range for symmetric quantization for quint8)");
  }
  if (s.granularity == Granularity::kPerBlock && s.block_size < 1) {
    return absl::InvalidArgumentError("block_size: per_block needs block_size >= 1");
  }
  return absl::OkStatus();
}

QParams QParams::PerTensor(float scale, int32_t zero_point, int64_t quant_min, int64_t quant_max) {
  QParams q;
  q.scale = {scale};
  q.zero_point = {zero_point};
  q.quant_min = quant_min;
  q.quant_max = quant_max;
  return q;
}

absl::Status TorchObserverQParams(const QuantSpec& spec, float min_val, float max_val,
                                  float* scale, int32_t* zero_point) {
  if (!(min_val <= max_val)) {
    return absl::FailedPreconditionError(
        absl::StrCat("observed min ", min_val, " should be less than or equal to max ", max_val));
  }
  const int64_t qmin = spec.quant_min;
  const int64_t qmax = spec.quant_max;
  const float min_neg = std::min(min_val, 0.0f);
  const float max_pos = std::max(max_val, 0.0f);
  if (spec.symmetric) {
    const float amax = std::max(-min_neg, max_pos);
    // torch: max_val_pos / (float(quant_max - quant_min) / 2), the divisor a
    // Python float wrapped to the tensor's float32.
    const float half_range = static_cast<float>(static_cast<double>(qmax - qmin) / 2.0);
    float s = amax / half_range;
    s = std::max(s, spec.eps);
    *scale = s;
    if (spec.is_signed) {
      *zero_point = 0;
    } else {
      const int64_t sum = qmin + qmax;
      *zero_point = spec.custom_range ? static_cast<int32_t>(sum >= 0 ? sum / 2 : -((-sum + 1) / 2))
                                      : 128;
    }
    return absl::OkStatus();
  }
  float s = (max_pos - min_neg) / static_cast<float>(qmax - qmin);
  s = std::max(s, spec.eps);
  const float r = std::nearbyint(min_neg / s);  // torch.round: half to even
  int64_t zp = qmin - static_cast<int64_t>(static_cast<int32_t>(r));
  zp = std::min<int64_t>(std::max<int64_t>(zp, qmin), qmax);
  *scale = s;
  *zero_point = static_cast<int32_t>(zp);
  return absl::OkStatus();
}

absl::Status ChooseQuantizationParams(float min, float max, int32_t qmin, int32_t qmax,
                                      bool preserve_sparsity, float* scale_out,
                                      int32_t* zero_point_out) {
  constexpr float kSmallScaleThreshold = 6.1e-5f;
  if (!(min <= max)) {
    return absl::FailedPreconditionError(
        "In ChooseQuantizationParams, min should be less than or equal to max");
  }
  if (min < 0 && max > 0 && preserve_sparsity) {
    const int symmetric_qmin = -((qmax - qmin) / 2 + 1);
    const int symmetric_qmax = (qmax - qmin) / 2;
    // float / int is float arithmetic in ATen; fabs and max are exact.
    const double max_scale = std::max(std::fabs(min / static_cast<float>(symmetric_qmin)),
                                      std::fabs(max / static_cast<float>(symmetric_qmax)));
    min = static_cast<float>(max_scale * symmetric_qmin);
    max = static_cast<float>(max_scale * symmetric_qmax);
  }
  min = std::min(min, 0.f);
  max = std::max(max, 0.f);
  if (!(qmin < qmax)) {
    return absl::InvalidArgumentError("In ChooseQuantizationParams, qmin should be less than qmax");
  }
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) {
    scale = 0.1;
  }
  if (scale < kSmallScaleThreshold) {
    const float org_scale = static_cast<float>(scale);
    scale = kSmallScaleThreshold;
    if (min == 0.0f) {
      max = kSmallScaleThreshold * static_cast<float>(qmax - qmin);
    } else if (max == 0.0f) {
      min = -kSmallScaleThreshold * static_cast<float>(qmax - qmin);
    } else {
      const float amplifier = kSmallScaleThreshold / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zero_point_from_min = qmin - min / scale;
  const double zero_point_from_max = qmax - max / scale;
  const double zero_point_from_min_error = std::abs(qmin) - std::abs(min / scale);
  const double zero_point_from_max_error = std::abs(qmax) - std::abs(max / scale);
  double initial_zero_point = zero_point_from_min_error < zero_point_from_max_error
                                  ? zero_point_from_min
                                  : zero_point_from_max;
  if (min < 0 && max > 0 && preserve_sparsity) {
    initial_zero_point = static_cast<double>(qmin + qmax) / 2;
  }
  int32_t nudged;
  if (initial_zero_point < qmin) {
    nudged = qmin;
  } else if (initial_zero_point > qmax) {
    nudged = qmax;
  } else {
    nudged = static_cast<int32_t>(std::nearbyint(initial_zero_point));
  }
  *scale_out = static_cast<float>(scale);
  *zero_point_out = nudged;
  return absl::OkStatus();
}

}  // namespace quant
