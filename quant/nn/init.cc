#include "quant/nn/init.h"

#include <cmath>

namespace quant::nn {

float KaimingUniformBound(int64_t fan_in) {
  // gain = sqrt(2 / (1 + a^2)) with a = sqrt(5); std = gain / sqrt(fan_in);
  // bound = sqrt(3) * std.
  const double gain = std::sqrt(2.0 / (1.0 + 5.0));
  return static_cast<float>(std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(fan_in)));
}

void FillUniform(Tensor* t, float bound, Rng& rng) {
  float* p = t->data();
  for (int64_t i = 0; i < t->numel(); ++i) p[i] = rng.Uniform(-bound, bound);
}

}  // namespace quant::nn
