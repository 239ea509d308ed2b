#include "quant/qmath/fake_quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace quant {
namespace {

// 2^63 as a float: v at or above it (or NaN) has no int64 value; x86 turns
// the cast into INT64_MIN, which clamps to quant_min.
constexpr float kTwo63 = 9223372036854775808.0f;

inline float FakeQuantOne(float x, float scale, float inv_scale, float zp, float qmin, float qmax,
                          uint8_t* m) {
  const float v = zp + std::nearbyint(x * inv_scale);
  float q;
  if (v < kTwo63) {
    q = std::min(std::max(v, qmin), qmax);
  } else {
    q = qmin;  // NaN, +inf, >= 2^63
  }
  if (m != nullptr) *m = (v >= qmin && v <= qmax) ? 1 : 0;
  return (q - zp) * scale;
}

#if defined(__AVX2__)
// Eight mask bits -> eight bytes of 0/1.
struct MaskTable {
  std::array<uint64_t, 256> bytes;
  MaskTable() {
    for (int b = 0; b < 256; ++b) {
      uint64_t v = 0;
      for (int k = 0; k < 8; ++k) {
        if (b & (1 << k)) v |= uint64_t{1} << (8 * k);
      }
      bytes[b] = v;
    }
  }
};
const MaskTable& Masks() {
  static const MaskTable* table = new MaskTable();
  return *table;
}

// The same as FakeQuant8 with the mask as a vector of all-ones / zero lanes.
inline __m256 FakeQuant8Mask(__m256 x, __m256 scale, __m256 inv, __m256 zp, __m256 qmin,
                             __m256 qmax, __m256 limit, __m256i* in_range) {
  const __m256 r = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 v = _mm256_add_ps(zp, r);
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(v, qmin), qmax);
  const __m256 ok = _mm256_cmp_ps(v, limit, _CMP_LT_OQ);
  const __m256 q = _mm256_blendv_ps(qmin, clamped, ok);
  *in_range = _mm256_castps_si256(
      _mm256_and_ps(_mm256_cmp_ps(v, qmin, _CMP_GE_OQ), _mm256_cmp_ps(v, qmax, _CMP_LE_OQ)));
  return _mm256_mul_ps(_mm256_sub_ps(q, zp), scale);
}

// Four vectors of 32-bit lane masks -> 32 bytes of 0/1 in element order.
inline void StoreMaskBytes(__m256i a, __m256i b, __m256i c, __m256i d, uint8_t* out) {
  const __m256i ab = _mm256_packs_epi32(a, b);    // per 128-bit lane: a0-3 b0-3 | a4-7 b4-7
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = _mm256_packs_epi16(ab, cd);  // a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7
  const __m256i order = _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_and_si256(order, _mm256_set1_epi8(1)));
}

inline __m256 FakeQuant8(__m256 x, __m256 scale, __m256 inv, __m256 zp, __m256 qmin, __m256 qmax,
                         __m256 limit, int* mask_bits) {
  const __m256 r = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 v = _mm256_add_ps(zp, r);
  const __m256 clamped = _mm256_min_ps(_mm256_max_ps(v, qmin), qmax);
  const __m256 ok = _mm256_cmp_ps(v, limit, _CMP_LT_OQ);
  const __m256 q = _mm256_blendv_ps(qmin, clamped, ok);
  if (mask_bits != nullptr) {
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(v, qmin, _CMP_GE_OQ), _mm256_cmp_ps(v, qmax, _CMP_LE_OQ));
    *mask_bits = _mm256_movemask_ps(in);
  }
  return _mm256_mul_ps(_mm256_sub_ps(q, zp), scale);
}
#endif

}  // namespace

void FakeQuantizeSpan(const float* x, float* y, uint8_t* mask, int64_t n, float scale,
                      int32_t zero_point, int64_t quant_min, int64_t quant_max) {
  const float inv = 1.0f / scale;
  const float zp = static_cast<float>(zero_point);
  const float qmin = static_cast<float>(quant_min);
  const float qmax = static_cast<float>(quant_max);
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vs = _mm256_set1_ps(scale), vi = _mm256_set1_ps(inv), vz = _mm256_set1_ps(zp),
               vlo = _mm256_set1_ps(qmin), vhi = _mm256_set1_ps(qmax),
               vlim = _mm256_set1_ps(kTwo63);
  if (mask == nullptr) {
    for (; i + 16 <= n; i += 16) {
      const __m256 a = FakeQuant8(_mm256_loadu_ps(x + i), vs, vi, vz, vlo, vhi, vlim, nullptr);
      const __m256 b = FakeQuant8(_mm256_loadu_ps(x + i + 8), vs, vi, vz, vlo, vhi, vlim, nullptr);
      _mm256_storeu_ps(y + i, a);
      _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i + 8 <= n; i += 8) {
      _mm256_storeu_ps(y + i, FakeQuant8(_mm256_loadu_ps(x + i), vs, vi, vz, vlo, vhi, vlim, nullptr));
    }
  } else {
    for (; i + 32 <= n; i += 32) {
      __m256i m0, m1, m2, m3;
      _mm256_storeu_ps(y + i, FakeQuant8Mask(_mm256_loadu_ps(x + i), vs, vi, vz, vlo, vhi, vlim, &m0));
      _mm256_storeu_ps(y + i + 8, FakeQuant8Mask(_mm256_loadu_ps(x + i + 8), vs, vi, vz, vlo, vhi, vlim, &m1));
      _mm256_storeu_ps(y + i + 16, FakeQuant8Mask(_mm256_loadu_ps(x + i + 16), vs, vi, vz, vlo, vhi, vlim, &m2));
      _mm256_storeu_ps(y + i + 24, FakeQuant8Mask(_mm256_loadu_ps(x + i + 24), vs, vi, vz, vlo, vhi, vlim, &m3));
      StoreMaskBytes(m0, m1, m2, m3, mask + i);
    }
    const MaskTable& table = Masks();
    for (; i + 8 <= n; i += 8) {
      int bits;
      _mm256_storeu_ps(y + i, FakeQuant8(_mm256_loadu_ps(x + i), vs, vi, vz, vlo, vhi, vlim, &bits));
      std::memcpy(mask + i, &table.bytes[bits], 8);
    }
  }
#endif
  for (; i < n; ++i) {
    y[i] = FakeQuantOne(x[i], scale, inv, zp, qmin, qmax, mask == nullptr ? nullptr : mask + i);
  }
}

void FakeQuantizeLanes(const float* x, float* y, uint8_t* mask, int64_t n, const float* scale,
                       const float* inv_scale, const float* zero_point, int64_t quant_min,
                       int64_t quant_max) {
  const float qmin = static_cast<float>(quant_min);
  const float qmax = static_cast<float>(quant_max);
  int64_t i = 0;
#if defined(__AVX2__)
  const __m256 vlo = _mm256_set1_ps(qmin), vhi = _mm256_set1_ps(qmax),
               vlim = _mm256_set1_ps(kTwo63);
  if (mask == nullptr) {
    for (; i + 16 <= n; i += 16) {
      const __m256 a = FakeQuant8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(scale + i),
                                  _mm256_loadu_ps(inv_scale + i), _mm256_loadu_ps(zero_point + i),
                                  vlo, vhi, vlim, nullptr);
      const __m256 b = FakeQuant8(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(scale + i + 8),
                                  _mm256_loadu_ps(inv_scale + i + 8),
                                  _mm256_loadu_ps(zero_point + i + 8), vlo, vhi, vlim, nullptr);
      _mm256_storeu_ps(y + i, a);
      _mm256_storeu_ps(y + i + 8, b);
    }
    for (; i + 8 <= n; i += 8) {
      _mm256_storeu_ps(y + i, FakeQuant8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(scale + i),
                                         _mm256_loadu_ps(inv_scale + i),
                                         _mm256_loadu_ps(zero_point + i), vlo, vhi, vlim, nullptr));
    }
  } else {
    const MaskTable& table = Masks();
    for (; i + 8 <= n; i += 8) {
      int bits;
      _mm256_storeu_ps(y + i, FakeQuant8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(scale + i),
                                         _mm256_loadu_ps(inv_scale + i),
                                         _mm256_loadu_ps(zero_point + i), vlo, vhi, vlim, &bits));
      std::memcpy(mask + i, &table.bytes[bits], 8);
    }
  }
#endif
  for (; i < n; ++i) {
    y[i] = FakeQuantOne(x[i], scale[i], inv_scale[i], zero_point[i], qmin, qmax,
                        mask == nullptr ? nullptr : mask + i);
  }
}

void QuantizeSpan(const float* x, int32_t* q, int64_t n, float scale, int32_t zero_point,
                  int64_t quant_min, int64_t quant_max) {
  const float inv = 1.0f / scale;
  const float zp = static_cast<float>(zero_point);
  const float qmin = static_cast<float>(quant_min);
  const float qmax = static_cast<float>(quant_max);
  for (int64_t i = 0; i < n; ++i) {
    const float v = zp + std::nearbyint(x[i] * inv);
    const float c = v < kTwo63 ? std::min(std::max(v, qmin), qmax) : qmin;
    q[i] = static_cast<int32_t>(c);
  }
}

void DequantizeSpan(const int32_t* q, float* x, int64_t n, float scale, int32_t zero_point) {
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(static_cast<int64_t>(q[i]) - zero_point) * scale;
  }
}

absl::StatusOr<int64_t> NumGroups(Granularity granularity, int axis, int64_t block_size,
                                  const std::vector<int64_t>& shape, const std::string& axis_where,
                                  const std::string& block_where) {
  if (granularity == Granularity::kPerTensor) return 1;
  const int rank = static_cast<int>(shape.size());
  const int a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(axis_where, ": axis ", axis,
                                                   " is out of range for a tensor of shape ",
                                                   ShapeToString(shape)));
  }
  if (granularity == Granularity::kPerChannel) return shape[a];
  if (block_size < 1 || shape[a] % block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        block_where, ": block_size ", block_size, " does not divide dimension ", a, " (size ",
        shape[a], ") of a tensor of shape ", ShapeToString(shape)));
  }
  return NumElements(shape) / block_size;
}

absl::StatusOr<AxisSplit> CheckQParamsForShape(const QParams& qp, const std::vector<int64_t>& shape,
                                               const std::string& axis_where,
                                               const std::string& block_where) {
  auto groups = NumGroups(qp.granularity, qp.axis, qp.block_size, shape, axis_where, block_where);
  if (!groups.ok()) return groups.status();
  if (qp.size() != *groups || static_cast<int64_t>(qp.zero_point.size()) != *groups) {
    return absl::FailedPreconditionError(
        absl::StrCat("quantization parameters have ", qp.size(), " scales but a tensor of shape ",
                     ShapeToString(shape), " needs ", *groups, " (", GranularityName(qp.granularity),
                     "); were they computed for another shape?"));
  }
  if (qp.quant_min >= qp.quant_max) {
    return absl::InvalidArgumentError("quant_min must be less than quant_max");
  }
  AxisSplit s;
  if (qp.granularity == Granularity::kPerTensor) {
    s.outer = NumElements(shape);
    return s;
  }
  const int rank = static_cast<int>(shape.size());
  const int a = qp.axis < 0 ? qp.axis + rank : qp.axis;
  for (int k = 0; k < a; ++k) s.outer *= shape[k];
  s.dim = shape[a];
  for (int k = a + 1; k < rank; ++k) s.inner *= shape[k];
  return s;
}

namespace {

// Parameter index of element (o, d, i) under `qp`.
inline int64_t GroupOf(const QParams& qp, const AxisSplit& s, int64_t o, int64_t d, int64_t i) {
  switch (qp.granularity) {
    case Granularity::kPerTensor:
      return 0;
    case Granularity::kPerChannel:
      return d;
    case Granularity::kPerBlock:
      return (o * (s.dim / qp.block_size) + d / qp.block_size) * s.inner + i;
  }
  return 0;
}

}  // namespace

absl::Status FakeQuantize(const Tensor& x, const QParams& qp, Tensor* y,
                          std::vector<uint8_t>* mask) {
  auto split = CheckQParamsForShape(qp, x.shape());
  if (!split.ok()) return split.status();
  const AxisSplit& s = *split;
  if (y != &x) y->Resize(x.shape());
  if (mask != nullptr) mask->resize(x.numel());
  const float* in = x.data();
  float* out = y->data();
  uint8_t* m = mask == nullptr ? nullptr : mask->data();
  if (qp.granularity == Granularity::kPerTensor) {
    FakeQuantizeSpan(in, out, m, x.numel(), qp.scale[0], qp.zero_point[0], qp.quant_min,
                     qp.quant_max);
    return absl::OkStatus();
  }
  std::vector<float> inv(qp.size()), zpf(qp.size());
  for (int64_t g = 0; g < qp.size(); ++g) {
    inv[g] = 1.0f / qp.scale[g];
    zpf[g] = static_cast<float>(qp.zero_point[g]);
  }
  const int64_t row = s.dim * s.inner;
  if (qp.granularity == Granularity::kPerChannel && s.inner < 16) {
    // Short runs: expand the parameters along a few [dim, inner] rows (about
    // 1K elements, so calls are few and the arrays stay in L1) and run the
    // per-lane kernel over the tensor in chunks of that many rows.
    const int64_t rows_per_chunk = std::max<int64_t>(1, std::min<int64_t>(s.outer, 1024 / row));
    const int64_t chunk = rows_per_chunk * row;
    std::vector<float> ls(chunk), li(chunk), lz(chunk);
    for (int64_t e = 0; e < chunk; ++e) {
      const int64_t d = (e % row) / s.inner;
      ls[e] = qp.scale[d];
      li[e] = inv[d];
      lz[e] = zpf[d];
    }
    for (int64_t o = 0; o < s.outer; o += rows_per_chunk) {
      const int64_t len = std::min(rows_per_chunk, s.outer - o) * row;
      FakeQuantizeLanes(in + o * row, out + o * row, m == nullptr ? nullptr : m + o * row, len,
                        ls.data(), li.data(), lz.data(), qp.quant_min, qp.quant_max);
    }
    return absl::OkStatus();
  }
  if (qp.granularity == Granularity::kPerChannel || s.inner == 1) {
    // Runs of equal parameters: `inner` elements (per channel) or one block.
    const int64_t run = qp.granularity == Granularity::kPerChannel ? s.inner : qp.block_size;
    const int64_t runs = x.numel() / run;
    for (int64_t r = 0; r < runs; ++r) {
      const int64_t g = qp.granularity == Granularity::kPerChannel ? r % s.dim : r;
      FakeQuantizeSpan(in + r * run, out + r * run, m == nullptr ? nullptr : m + r * run, run,
                       qp.scale[g], qp.zero_point[g], qp.quant_min, qp.quant_max);
    }
    return absl::OkStatus();
  }
  // Per block along a non-innermost axis: the parameters of one (o, d) row are
  // contiguous over `inner`.
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t d = 0; d < s.dim; ++d) {
      const int64_t base = (o * s.dim + d) * s.inner;
      const int64_t g = GroupOf(qp, s, o, d, 0);
      FakeQuantizeLanes(in + base, out + base, m == nullptr ? nullptr : m + base, s.inner,
                        qp.scale.data() + g, inv.data() + g, zpf.data() + g, qp.quant_min,
                        qp.quant_max);
    }
  }
  return absl::OkStatus();
}

absl::Status Quantize(const Tensor& x, const QParams& qp, std::vector<int32_t>* q) {
  auto split = CheckQParamsForShape(qp, x.shape());
  if (!split.ok()) return split.status();
  const AxisSplit& s = *split;
  q->resize(x.numel());
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t d = 0; d < s.dim; ++d) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t e = (o * s.dim + d) * s.inner + i;
        const int64_t g = GroupOf(qp, s, o, d, i);
        QuantizeSpan(x.data() + e, q->data() + e, 1, qp.scale[g], qp.zero_point[g], qp.quant_min,
                     qp.quant_max);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status Dequantize(const std::vector<int32_t>& q, const std::vector<int64_t>& shape,
                        const QParams& qp, Tensor* x) {
  if (static_cast<int64_t>(q.size()) != NumElements(shape)) {
    return absl::InvalidArgumentError(absl::StrCat("Dequantize: ", q.size(),
                                                   " codes for a tensor of shape ",
                                                   ShapeToString(shape)));
  }
  auto split = CheckQParamsForShape(qp, shape);
  if (!split.ok()) return split.status();
  const AxisSplit& s = *split;
  x->Resize(shape);
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t d = 0; d < s.dim; ++d) {
      for (int64_t i = 0; i < s.inner; ++i) {
        const int64_t e = (o * s.dim + d) * s.inner + i;
        const int64_t g = GroupOf(qp, s, o, d, i);
        DequantizeSpan(q.data() + e, x->data() + e, 1, qp.scale[g], qp.zero_point[g]);
      }
    }
  }
  return absl::OkStatus();
}

absl::Status FakeQuantizeBackward(const Tensor& grad_y, const std::vector<uint8_t>& mask,
                                  Tensor* grad_x) {
  if (static_cast<int64_t>(mask.size()) != grad_y.numel()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backward: the gradient has ", grad_y.numel(), " elements but the forward pass saw ",
        mask.size(), " (run forward first, with the same tensor)"));
  }
  if (grad_x != &grad_y) grad_x->Resize(grad_y.shape());
  const float* g = grad_y.data();
  float* out = grad_x->data();
  const int64_t n = grad_y.numel();
  int64_t i = 0;
#if defined(__AVX2__)
  // 8 mask bytes widened to lane masks; and-ing keeps g or writes +0.0f, as the select does.
  for (; i + 8 <= n; i += 8) {
    int64_t bytes;
    std::memcpy(&bytes, mask.data() + i, 8);
    const __m256i lanes = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
    const __m256i keep = _mm256_cmpgt_epi32(lanes, _mm256_setzero_si256());
    _mm256_storeu_ps(out + i, _mm256_and_ps(_mm256_loadu_ps(g + i), _mm256_castsi256_ps(keep)));
  }
#endif
  for (; i < n; ++i) out[i] = mask[i] ? g[i] : 0.0f;
  return absl::OkStatus();
}

}  // namespace quant
