#include "tests/nn/gradcheck.h"

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quant::nn::testing {
namespace {

double Objective(Layer& layer, const Tensor& x, const Tensor& g, const GradCheckOptions& o) {
  if (o.before_forward) o.before_forward();
  Tensor y;
  layer.Forward(x, &y);
  double sum = 0.0;
  for (int64_t i = 0; i < y.numel(); ++i) sum += static_cast<double>(g[i]) * y[i];
  return sum;
}

std::vector<int64_t> Points(int64_t n, int max_points) {
  std::vector<int64_t> out;
  if (n <= max_points) {
    for (int64_t i = 0; i < n; ++i) out.push_back(i);
  } else {
    for (int i = 0; i < max_points; ++i) out.push_back((static_cast<int64_t>(i) * 7919) % n);
  }
  return out;
}

}  // namespace

Tensor RandomTensor(const Shape& shape, uint64_t seed) {
  Tensor t(shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = rng.Uniform(-1.0f, 1.0f);
  return t;
}

std::string GradCheck(Layer& layer, Tensor x, uint64_t seed, const GradCheckOptions& o) {
  if (o.before_forward) o.before_forward();
  Tensor y;
  layer.Forward(x, &y);
  const Tensor g = RandomTensor(y.shape(), seed);
  Tensor dx;
  layer.Backward(x, y, g, o.check_input ? &dx : nullptr);
  // Copy analytic parameter gradients before the numeric passes run more forwards.
  std::vector<Tensor> param_grads;
  for (Parameter* p : layer.parameters()) param_grads.push_back(p->grad);

  std::string failures;
  int reported = 0;
  auto check = [&](const std::string& what, float* v, const float* analytic, int64_t n) {
    for (int64_t i : Points(n, o.max_points)) {
      const float saved = v[i];
      v[i] = saved + static_cast<float>(o.h);
      const double up = Objective(layer, x, g, o);
      v[i] = saved - static_cast<float>(o.h);
      const double down = Objective(layer, x, g, o);
      v[i] = saved;
      // The actual step may differ from 2h by float rounding of v +- h.
      const double step = (static_cast<double>(saved + static_cast<float>(o.h)) -
                            static_cast<double>(saved - static_cast<float>(o.h)));
      const double numeric = (up - down) / step;
      if (std::fabs(numeric - analytic[i]) > o.atol + o.rtol * std::fabs(numeric)) {
        if (reported++ < 5) {
          absl::StrAppend(&failures, absl::StrFormat("%s[%d]: numeric %.6g analytic %.6g\n", what, i,
                                                     numeric, analytic[i]));
        }
      }
    }
  };
  if (o.check_input) check("input", x.data(), dx.data(), x.numel());
  std::vector<Parameter*> params = layer.parameters();
  for (size_t k = 0; k < params.size(); ++k) {
    check(params[k]->name, params[k]->value.data(), param_grads[k].data(), params[k]->value.numel());
  }
  if (reported > 5) absl::StrAppend(&failures, reported - 5, " more\n");
  return failures;
}

}  // namespace quant::nn::testing
