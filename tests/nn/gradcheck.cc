#include "tests/nn/gradcheck.h"

#include <cstring>
#include <string>
#include <utility>

#include "tests/nn/gradient_check.h"

namespace quant::nn::testing {

Tensor RandomTensor(const Shape& shape, uint64_t seed) { return UniformTensor(shape, seed); }

std::string GradCheck(Layer& layer, Tensor x, uint64_t seed, const GradCheckOptions& o) {
  std::vector<Tensor> inputs;
  inputs.push_back(std::move(x));
  const ::testing::AssertionResult r =
      CheckGradients(layer, std::move(inputs), seed, o.check_input, /*check_parameters=*/true, o);
  return r ? "" : r.message();
}

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.numel() * sizeof(float)) == 0;
}

}  // namespace quant::nn::testing
