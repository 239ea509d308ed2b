// PyTorch's default initialisation of Linear and Conv layers:
// kaiming_uniform_(weight, a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
// and the bias from the same range.
#ifndef QUANT_NN_INIT_H_
#define QUANT_NN_INIT_H_

#include <cstdint>

#include "quant/core/tensor.h"
#include "quant/nn/rng.h"

namespace quant::nn {

// The bound of PyTorch's default init: gain(leaky_relu, sqrt(5)) * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
float KaimingUniformBound(int64_t fan_in);
// Fills `t` from U(-bound, bound), element by element in storage order.
void FillUniform(Tensor* t, float bound, Rng& rng);

}  // namespace quant::nn

#endif  // QUANT_NN_INIT_H_
