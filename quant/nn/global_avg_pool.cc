#include "quant/nn/global_avg_pool.h"

#include <immintrin.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"

namespace quant::nn {

absl::StatusOr<Shape> GlobalAvgPool::Build(const Shape& input) {
  if (input.size() != 3 || input[1] <= 0 || input[2] <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expects an input [C, H, W] but gets ", ShapeToString(input)));
  }
  c_ = input[0];
  h_ = input[1];
  w_ = input[2];
  return Shape{c_};
}

namespace {

// The float32 sum of a contiguous row in the order of PyTorch 1.13's
// SumKernel.cpp (cascade_sum -> vectorized_inner_sum / scalar_inner_sum, AVX2):
// items are 8-float vectors (rows of at least 8) or floats (shorter rows).
inline float Add(float a, float b) { return a + b; }
inline __m256 Add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
template <typename T>
T Load(const float* p, int64_t i);
template <>
inline float Load<float>(const float* p, int64_t i) { return p[i]; }
template <>
inline __m256 Load<__m256>(const float* p, int64_t i) { return _mm256_loadu_ps(p + 8 * i); }
template <typename T>
T Zero();
template <>
inline float Zero<float>() { return 0.0f; }
template <>
inline __m256 Zero<__m256>() { return _mm256_setzero_ps(); }

// at::native::utils::CeilLog2.
int64_t CeilLog2(int64_t x) {
  if (x <= 2) return 1;
  int64_t bits = 0;
  for (uint64_t v = static_cast<uint64_t>(x - 1); v != 0; v >>= 1) ++bits;
  return bits;
}

// row_sum (ilp_factor 4) over `size` items: multi_row_sum's four running sums
// of items 4r + k, cascaded over 4 levels every 2^level_power rows, then the
// items after the last full row go into sum 0, then sums 1..3 are added to it.
template <typename T>
T RowSum(const float* p, int64_t size) {
  constexpr int kIlp = 4, kLevels = 4;
  const int64_t rows = size / kIlp;
  const int64_t level_power = std::max<int64_t>(4, CeilLog2(rows) / kLevels);
  const int64_t level_step = int64_t{1} << level_power, level_mask = level_step - 1;
  T acc[kLevels][kIlp];
  for (auto& level : acc) {
    for (T& a : level) a = Zero<T>();
  }
  int64_t i = 0;
  while (i + level_step <= rows) {
    for (int64_t j = 0; j < level_step; ++j, ++i) {
      for (int k = 0; k < kIlp; ++k) acc[0][k] = Add(acc[0][k], Load<T>(p, i * kIlp + k));
    }
    for (int j = 1; j < kLevels; ++j) {
      for (int k = 0; k < kIlp; ++k) {
        acc[j][k] = Add(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k] = Zero<T>();
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < rows; ++i) {
    for (int k = 0; k < kIlp; ++k) acc[0][k] = Add(acc[0][k], Load<T>(p, i * kIlp + k));
  }
  for (int j = 1; j < kLevels; ++j) {
    for (int k = 0; k < kIlp; ++k) acc[0][k] = Add(acc[0][k], acc[j][k]);
  }
  for (int64_t r = rows * kIlp; r < size; ++r) acc[0][0] = Add(acc[0][0], Load<T>(p, r));
  for (int k = 1; k < kIlp; ++k) acc[0][0] = Add(acc[0][0], acc[0][k]);
  return acc[0][0];
}

// vectorized_inner_sum for n >= 8: the vectors' sum, then the scalar tail
// from 0, then the eight lanes in order; scalar_inner_sum below that.
float TorchRowSum(const float* p, int64_t n) {
  if (n < 8) return RowSum<float>(p, n);
  const int64_t vectors = n / 8;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, RowSum<__m256>(p, vectors));
  float sum = 0.0f;
  for (int64_t k = vectors * 8; k < n; ++k) sum += p[k];
  for (float lane : lanes) sum += lane;
  return sum;
}

}  // namespace

void GlobalAvgPool::Forward(const Tensor& x, Tensor* y) {
  const int64_t planes = x.dim(0) * c_, size = h_ * w_;
  EnsureShape(y, {x.dim(0), c_});
  const float count = static_cast<float>(size);
  for (int64_t pl = 0; pl < planes; ++pl) {
    y->data()[pl] = TorchRowSum(x.data() + pl * size, size) / count;
  }
}

void GlobalAvgPool::Backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  EnsureShape(dx, x.shape());
  const int64_t planes = x.dim(0) * c_, size = h_ * w_;
  const float count = static_cast<float>(size);
  for (int64_t pl = 0; pl < planes; ++pl) {
    float* d = dx->data() + pl * size;
    std::fill(d, d + size, dy.data()[pl] / count);
  }
}

namespace {

absl::StatusOr<std::unique_ptr<Layer>> CreateGlobalAvgPool(ParamReader& p) {
  return std::unique_ptr<Layer>(new GlobalAvgPool(""));
}

}  // namespace

QUANTLAB_REGISTER(Layer, "global_avg_pool", CreateGlobalAvgPool,
                  "[C, H, W] -> [C], the mean of each plane "
                  "(torch.nn.AdaptiveAvgPool2d(1) + flatten)");

}  // namespace quant::nn
