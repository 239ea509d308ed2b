#include "quant/quantizers/lsq_quantizer.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

// One step size's share of Backward: the STE (gx = gy where the value was not
// clipped, else 0), the sum of gy * dy/ds and (for lsq_plus) of the clipped
// gy, both added to *acc / *clipped one element at a time in element order
// in double: that order is what defines the result. Two things make it fast
// without changing a bit: a float times a float is exact in double, so the
// products can be formed 4 lanes at a time; and a zero product is skipped,
// since adding +-0 to a sum that starts at +0 never changes it (round to
// nearest gives -0 only from two -0 operands). After a ReLU and before a max
// pool most products are zero (the pool passes gradient to one element of
// four), which leaves a short chain of dependent adds.
void GroupBackward(const float* gy, const float* dyds, const uint8_t* mask, int64_t n, bool want_clipped, float* gx,
                   double* acc, double* clipped) {
  double a = *acc, c = *clipped;
  int64_t i = 0;
#ifdef __AVX2__
  const __m256 zero = _mm256_setzero_ps();
  alignas(32) double prod[8];
  alignas(32) float g8[8];
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gy + i);
    const __m256 d = _mm256_loadu_ps(dyds + i);
    const __m256i m = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mask + i)));
    const __m256 pass = _mm256_castsi256_ps(_mm256_cmpgt_epi32(m, _mm256_setzero_si256()));
    // gx may be gy (in place): g is already in a register.
    _mm256_storeu_ps(gx + i, _mm256_and_ps(pass, g));
    // "Not equal, unordered": a NaN product is kept, so a NaN still poisons the sum.
    const int g_nonzero = _mm256_movemask_ps(_mm256_cmp_ps(g, zero, _CMP_NEQ_UQ));
    int live = g_nonzero & _mm256_movemask_ps(_mm256_cmp_ps(d, zero, _CMP_NEQ_UQ));
    if (live != 0) {
      _mm256_store_pd(
          prod, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(g)), _mm256_cvtps_pd(_mm256_castps256_ps128(d))));
      _mm256_store_pd(prod + 4, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)),
                                              _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1))));
      for (; live != 0; live &= live - 1) a += prod[__builtin_ctz(live)];
    }
    if (want_clipped) {
      int cut = g_nonzero & ~_mm256_movemask_ps(pass) & 0xff;
      if (cut != 0) {
        _mm256_store_ps(g8, g);
        for (; cut != 0; cut &= cut - 1) c += g8[__builtin_ctz(cut)];
      }
    }
  }
#endif
  for (; i < n; ++i) {
    const float g = gy[i];
    a += static_cast<double>(g) * dyds[i];
    gx[i] = mask[i] ? g : 0.0f;
    if (want_clipped && !mask[i]) c += g;
  }
  *acc = a;
  *clipped = c;
}

}  // namespace

LsqQuantizer::LsqQuantizer(Options o) : o_(o) {
  spec_.bits = o_.bits;
  spec_.symmetric = true;
  spec_.custom_range = true;
  spec_.granularity = o_.per_channel ? Granularity::kPerChannel : Granularity::kPerTensor;
  spec_.axis = 0;
  if (o_.sign != Sign::kAuto) SetGrid(o_.sign == Sign::kSigned);
  // Per-tensor: one step size, allocated now so that an optimizer attached
  // before the first batch sees its shape (per-channel waits for the tensor).
  if (!o_.per_channel) {
    step_.value = Tensor({1});
    step_.grad = Tensor({1});
    offset_.value = Tensor({1});
    offset_.grad = Tensor({1});
  }
}

absl::StatusOr<std::unique_ptr<Quantizer>> LsqQuantizer::Create(ParamReader& p) {
  return Read(p, /*plus=*/false);
}

absl::StatusOr<std::unique_ptr<Quantizer>> LsqQuantizer::CreatePlus(ParamReader& p) {
  return Read(p, /*plus=*/true);
}

absl::StatusOr<std::unique_ptr<Quantizer>> LsqQuantizer::Read(ParamReader& p, bool plus) {
  Options o;
  o.learn_offset = plus;
  o.bits = static_cast<int>(p.IntInRange("bits", 4, 2, 16, "bit width of the integer grid"));
  const std::string sign = p.Choice(
      "signed", plus ? "false" : "auto", {"auto", "true", "false"},
      "grid [-2^(b-1), 2^(b-1)-1] (true) or [0, 2^b-1] (false); auto: signed when the first "
      "tensor has a negative value");
  const std::string gran = p.Choice("granularity", "per_tensor", {"per_tensor", "per_channel"},
                                    "one step size, or one per index of axis 0 (weights)");
  if (plus || p.describing()) {
    o.integer_offset = p.Bool("integer_offset", false,
                              "lsq_plus: use the offset rounded to a whole number of steps (an integer zero point), "
                              "so that the trained grid deploys exactly to an integer model (ptq from_qat)");
  }
  if (!p.status().ok()) return p.status();
  o.sign = sign == "auto" ? Sign::kAuto : sign == "true" ? Sign::kSigned : Sign::kUnsigned;
  o.per_channel = gran == "per_channel";
  return std::unique_ptr<Quantizer>(new LsqQuantizer(o));
}

absl::Status LsqQuantizer::SetRole(TensorRole role) {
  if (role == TensorRole::kActivations && o_.per_channel) {
    return absl::InvalidArgumentError(
        "lsq: granularity per_channel is for weights; activations take one step size (per_tensor)");
  }
  role_ = role;
  return absl::OkStatus();
}

void LsqQuantizer::SetGrid(bool is_signed) {
  if (is_signed) {
    qn_ = int64_t{1} << (o_.bits - 1);
    qp_ = (int64_t{1} << (o_.bits - 1)) - 1;
  } else {
    qn_ = 0;
    qp_ = (int64_t{1} << o_.bits) - 1;
  }
  spec_.is_signed = is_signed;
  spec_.quant_min = -qn_;
  spec_.quant_max = qp_;
  sign_known_ = true;
}

bool LsqQuantizer::initialised() const {
  if (step_.value.empty()) return false;
  for (int64_t g = 0; g < step_.value.numel(); ++g) {
    if (!(step_.value[g] > 0.0f)) return false;
  }
  return true;
}

absl::Status LsqQuantizer::Prepare(const Tensor& x) {
  if (x.numel() == 0) return absl::InvalidArgumentError("lsq: empty tensor");
  const int64_t groups = o_.per_channel ? x.dim(0) : 1;
  if (!sign_known_) {
    bool negative = false;
    for (int64_t i = 0; i < x.numel() && !negative; ++i) negative = x[i] < 0.0f;
    SetGrid(negative);
  }
  if (step_.value.numel() != groups) {
    if (!step_.value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("lsq: ", step_.value.numel(),
                                                     " step sizes but the tensor has ", groups,
                                                     " channels along axis 0"));
    }
    step_.value = Tensor({groups});
    step_.grad = Tensor({groups});
    offset_.value = Tensor({groups});
    offset_.grad = Tensor({groups});
  }
  if (!initialised()) {
    // The paper's init: s = 2 <|x|> / sqrt(Qp), per group.
    const int64_t n = x.numel() / groups;
    for (int64_t g = 0; g < groups; ++g) {
      if (step_.value[g] > 0.0f) continue;
      if (o_.learn_offset) {  // LSQ+: the grid spans the first tensor's range
        float lo = x[g * n], hi = x[g * n];
        for (int64_t i = 0; i < n; ++i) {
          lo = std::min(lo, x[g * n + i]);
          hi = std::max(hi, x[g * n + i]);
        }
        float s = (hi - lo) / static_cast<float>(qn_ + qp_);
        if (!(s > 1e-8f) || !std::isfinite(s)) s = 1e-8f;
        step_.value[g] = s;
        offset_.value[g] = lo + static_cast<float>(qn_) * s;
        continue;
      }
      double sum = 0.0;
      for (int64_t i = 0; i < n; ++i) sum += std::fabs(x[g * n + i]);
      float s = static_cast<float>(2.0 * (sum / n) / std::sqrt(static_cast<double>(qp_)));
      if (!(s > 1e-8f) || !std::isfinite(s)) s = 1e-8f;  // an all-zero tensor
      step_.value[g] = s;
    }
  }
  qparams_.scale.assign(step_.value.data(), step_.value.data() + groups);
  qparams_.zero_point.assign(groups, 0);
  if (o_.learn_offset) {
    // y = s * (q - z) with z = -beta / s, rounded: exact only when beta is on the grid.
    for (int64_t g = 0; g < groups; ++g) {
      qparams_.zero_point[g] = static_cast<int32_t>(std::lround(-offset_.value[g] / step_.value[g]));
    }
  }
  qparams_.quant_min = -qn_;
  qparams_.quant_max = qp_;
  qparams_.granularity = spec_.granularity;
  qparams_.axis = 0;
  return absl::OkStatus();
}

absl::Status LsqQuantizer::Observe(const Tensor& x) { return Prepare(x); }

absl::Status LsqQuantizer::ComputeQParams() {
  if (!initialised()) {
    return absl::FailedPreconditionError("lsq: no step size yet (observe a tensor first)");
  }
  return absl::OkStatus();
}

absl::Status LsqQuantizer::Forward(const Tensor& x, Tensor* y) {
  if (absl::Status s = Prepare(x); !s.ok()) return s;
  const int64_t numel = x.numel();
  const int64_t groups = step_.value.numel();
  const int64_t n = numel / groups;
  if (y != &x && y->shape() != x.shape()) y->Resize(x.shape());
  dyds_.resize(numel);
  mask_.resize(numel);
  last_batch_ = x.rank() >= 2 ? x.dim(0) : 1;
  const float lo = static_cast<float>(-qn_), hi = static_cast<float>(qp_);
  const float* in = x.data();
  float* out = y->data();
  for (int64_t g = 0; g < groups; ++g) {
    const float s = step_.value[g];
    const float beta = Beta(g);
    const int64_t base = g * n;
    if (!fake_quant_enabled_) {
      for (int64_t i = base; i < base + n; ++i) {
        out[i] = in[i];
        dyds_[i] = 0.0f;
        mask_[i] = 1;
      }
      continue;
    }
    int64_t i = base;
#ifdef __AVX2__
    // The same float steps 8 lanes at a time (a true division, compares that are false for
    // NaN, rounding half to even, a separate multiply and add): identical results.
    const __m256 vb = _mm256_set1_ps(beta), vs = _mm256_set1_ps(s);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (; i + 8 <= base + n; i += 8) {
      const __m256 v = _mm256_div_ps(_mm256_sub_ps(_mm256_loadu_ps(in + i), vb), vs);
      const __m256 below = _mm256_cmp_ps(v, vlo, _CMP_LE_OQ), above = _mm256_cmp_ps(v, vhi, _CMP_GE_OQ);
      const __m256 rounded = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256 r = _mm256_blendv_ps(_mm256_blendv_ps(rounded, vhi, above), vlo, below);
      const __m256 d = _mm256_blendv_ps(_mm256_blendv_ps(_mm256_sub_ps(rounded, v), vhi, above), vlo, below);
      _mm256_storeu_ps(out + i, _mm256_add_ps(_mm256_mul_ps(r, vs), vb));
      _mm256_storeu_ps(dyds_.data() + i, d);
      // The mask (1 where not clipped): 32-bit lanes of 1 where clipped, packed to 8 bytes in order, xor 1.
      const __m256i cut = _mm256_srli_epi32(_mm256_castps_si256(_mm256_or_ps(below, above)), 31);
      const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(cut), _mm256_extracti128_si256(cut, 1));
      const __m128i bytes = _mm_xor_si128(_mm_packus_epi16(words, words), _mm_set1_epi8(1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(mask_.data() + i), bytes);
    }
#endif
    for (; i < base + n; ++i) {
      const float v = (in[i] - beta) / s;
      float r, d;
      uint8_t m;
      if (v <= lo) {
        r = lo, d = lo, m = 0;
      } else if (v >= hi) {
        r = hi, d = hi, m = 0;
      } else {
        r = std::nearbyint(v), d = r - v, m = 1;
      }
      out[i] = r * s + beta;
      dyds_[i] = d;
      mask_[i] = m;
    }
  }
  return absl::OkStatus();
}

absl::Status LsqQuantizer::Backward(const Tensor& grad_y, Tensor* grad_x) {
  const int64_t numel = grad_y.numel();
  if (numel != static_cast<int64_t>(mask_.size())) {
    return absl::FailedPreconditionError("lsq: Backward() does not match the last Forward()");
  }
  if (grad_x != &grad_y && grad_x->shape() != grad_y.shape()) grad_x->Resize(grad_y.shape());
  const int64_t groups = step_.value.numel();
  const int64_t n = numel / groups;
  // N: weights per step size, or features of one sample for activations.
  const double count = role_ == TensorRole::kWeights ? static_cast<double>(n)
                                                     : static_cast<double>(numel / last_batch_);
  grad_scale_ = 1.0 / std::sqrt(count * static_cast<double>(qp_));
  const float* gy = grad_y.data();
  float* gx = grad_x->data();
  for (int64_t g = 0; g < groups; ++g) {
    double acc = 0.0, clipped = 0.0;
    GroupBackward(gy + g * n, dyds_.data() + g * n, mask_.data() + g * n, n, o_.learn_offset, gx + g * n, &acc,
                  &clipped);
    step_.grad[g] += static_cast<float>(grad_scale_ * acc);
    if (o_.learn_offset) offset_.grad[g] += static_cast<float>(grad_scale_ * clipped);
  }
  return absl::OkStatus();
}

absl::Status LsqQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  if (!initialised()) return absl::FailedPreconditionError("lsq: QuantizeToInt() before a step size");
  const int64_t groups = step_.value.numel();
  if (x.numel() % groups != 0) return absl::InvalidArgumentError("lsq: tensor does not fit the step sizes");
  const int64_t n = x.numel() / groups;
  q->resize(x.numel());
  for (int64_t g = 0; g < groups; ++g) {
    const float s = step_.value[g];
    for (int64_t i = g * n; i < (g + 1) * n; ++i) {
      const float beta = Beta(g);
      const float v =
          std::min(std::max((x[i] - beta) / s, static_cast<float>(-qn_)), static_cast<float>(qp_));
      (*q)[i] = static_cast<int32_t>(std::nearbyint(v));
    }
  }
  return absl::OkStatus();
}

float LsqQuantizer::Beta(int64_t g) const {
  if (!o_.learn_offset) return 0.0f;
  if (!o_.integer_offset) return offset_.value[g];
  // The zero point qparams() reports, z = round(-beta / s), as the offset: -z * s.
  return -static_cast<float>(std::lround(-offset_.value[g] / step_.value[g])) * step_.value[g];
}

std::string LsqQuantizer::Describe() const {
  const char* sign = !sign_known_ ? "auto-signed" : spec_.is_signed ? "signed" : "unsigned";
  return absl::StrCat(o_.learn_offset ? "lsq_plus " : "lsq ", o_.bits, "-bit ", sign, o_.per_channel ? " per_channel" : " per_tensor",
                      o_.learn_offset ? (o_.integer_offset ? " learned step size and whole-step offset"
                                                           : " learned step size and offset")
                                      : " learned step size");
}

absl::StatusOr<QParams> LsqQuantizer::IntegerGrid() const {
  if (!initialised()) return absl::FailedPreconditionError("lsq: no step size yet (nothing observed)");
  if (o_.learn_offset && !o_.integer_offset) {
    // y = s * (q - z) needs z = -beta / s to be an integer; a learned offset is anywhere
    // (integer_offset: Forward uses the rounded one, qparams' zero point).
    for (int64_t g = 0; g < offset_.value.numel(); ++g) {
      const double z = -static_cast<double>(offset_.value[g]) / step_.value[g];
      if (std::fabs(z - std::nearbyint(z)) > 1e-3) {
        return absl::UnimplementedError(absl::StrCat(
            "lsq_plus: the learned offset is ", z, " steps from zero, not a whole number of steps; an integer zero "
            "point would move the grid by ", std::fabs(z - std::nearbyint(z)), " of a step"));
      }
    }
  }
  return qparams_;
}

QUANTLAB_REGISTER(Quantizer, "lsq_plus", LsqQuantizer::CreatePlus,
                  "LSQ+ (Bhalgat et al. 2020): LSQ with a learned offset, min/max init");
QUANTLAB_REGISTER(Quantizer, "lsq", LsqQuantizer::Create,
                  "learned step size (Esser et al. 2020): STE, step gradient scaled by 1/sqrt(N*Qp)");

}  // namespace quant
