#include "tests/nn/gradient_check.h"

#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/nn/rng.h"

namespace quant::nn::testing {
namespace {

std::vector<const Tensor*> Pointers(const std::vector<Tensor>& inputs) {
  std::vector<const Tensor*> out;
  for (const Tensor& t : inputs) out.push_back(&t);
  return out;
}

// L = sum(G * f(inputs)) in double.
double Objective(Layer& layer, const std::vector<Tensor>& inputs, const Tensor& g,
                 const GradientCheckOptions& o, Tensor* y) {
  if (o.before_forward) o.before_forward();
  layer.ForwardInputs(Pointers(inputs), y);
  double sum = 0.0;
  for (int64_t i = 0; i < y->numel(); ++i) sum += static_cast<double>(g[i]) * (*y)[i];
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

std::vector<Tensor> RandomInputs(const std::vector<Shape>& shapes, uint64_t seed,
                                 const GradientCheckOptions& o) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    inputs.push_back(UniformTensor(shapes[i], seed * 1000003 + 17 * i + 1, o.input_lo, o.input_hi,
                                   o.kinks, o.h));
  }
  return inputs;
}

}  // namespace

Tensor UniformTensor(const Shape& shape, uint64_t seed, float lo, float hi,
                     const std::vector<float>& kinks, double h) {
  Tensor t(shape);
  Rng rng(seed);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float v = rng.Uniform(lo, hi);
    for (float k : kinks) {
      if (std::fabs(static_cast<double>(v) - k) < 2 * h) {
        v = static_cast<float>(v >= k ? k + 4 * h : k - 4 * h);
      }
    }
    t[i] = v;
  }
  return t;
}

::testing::AssertionResult CheckGradients(Layer& layer, std::vector<Tensor> inputs, uint64_t seed,
                                          bool check_inputs, bool check_parameters,
                                          const GradientCheckOptions& o) {
  if (o.before_forward) o.before_forward();
  Tensor y;
  layer.ForwardInputs(Pointers(inputs), &y);
  const Tensor g = UniformTensor(y.shape(), seed);
  std::vector<Tensor> dx(inputs.size());
  std::vector<Tensor*> dx_ptrs;
  for (Tensor& d : dx) dx_ptrs.push_back(check_inputs ? &d : nullptr);
  layer.BackwardInputs(Pointers(inputs), y, g, dx_ptrs);
  // Copy the analytic parameter gradients before the numeric passes run more forwards.
  std::vector<Parameter*> params = layer.parameters();
  std::vector<Tensor> param_grads;
  for (Parameter* p : params) param_grads.push_back(p->grad);

  std::string failures;
  int mismatches = 0, checked = 0;
  Tensor scratch;
  auto check = [&](const std::string& what, float* v, const Tensor& analytic) {
    for (int64_t i : Points(analytic.numel(), o.max_points)) {
      const float saved = v[i];
      const float up_v = saved + static_cast<float>(o.h), down_v = saved - static_cast<float>(o.h);
      v[i] = up_v;
      const double up = Objective(layer, inputs, g, o, &scratch);
      v[i] = down_v;
      const double down = Objective(layer, inputs, g, o, &scratch);
      v[i] = saved;
      const double numeric = (up - down) / (static_cast<double>(up_v) - down_v);
      ++checked;
      if (std::fabs(numeric - analytic[i]) > o.atol + o.rtol * std::fabs(numeric)) {
        if (mismatches++ < 5) {
          absl::StrAppend(&failures, absl::StrFormat("  %s[%d] at %.6g: numeric %.6g, analytic %.6g\n",
                                                     what, i, saved, numeric, analytic[i]));
        }
      }
    }
  };
  if (check_inputs) {
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (dx[k].numel() != inputs[k].numel()) {
        return ::testing::AssertionFailure()
               << layer.Describe() << ": the gradient of input " << k << " has "
               << dx[k].numel() << " elements, the input " << inputs[k].numel();
      }
      check(absl::StrCat("input", inputs.size() > 1 ? absl::StrCat(k) : ""), inputs[k].data(),
            dx[k]);
    }
  }
  if (check_parameters) {
    for (size_t k = 0; k < params.size(); ++k) {
      check(params[k]->name, params[k]->value.data(), param_grads[k]);
    }
  }
  if (mismatches > 0) {
    if (mismatches > 5) absl::StrAppend(&failures, "  ", mismatches - 5, " more\n");
    return ::testing::AssertionFailure() << layer.Describe() << ": " << mismatches << " of "
                                         << checked << " gradients differ from central "
                                         << "differences:\n"
                                         << failures;
  }
  return ::testing::AssertionSuccess() << checked << " gradients checked";
}

::testing::AssertionResult CheckInputGradient(Layer& layer, const Shape& input_shape, uint64_t seed,
                                              const GradientCheckOptions& o) {
  return CheckInputGradients(layer, {input_shape}, seed, o);
}

::testing::AssertionResult CheckInputGradients(Layer& layer, const std::vector<Shape>& input_shapes,
                                               uint64_t seed, const GradientCheckOptions& o) {
  return CheckGradients(layer, RandomInputs(input_shapes, seed, o), seed, /*check_inputs=*/true,
                        /*check_parameters=*/false, o);
}

::testing::AssertionResult CheckParameterGradients(Layer& layer, const Shape& input_shape,
                                                   uint64_t seed, const GradientCheckOptions& o) {
  return CheckParameterGradients(layer, std::vector<Shape>{input_shape}, seed, o);
}

::testing::AssertionResult CheckParameterGradients(Layer& layer,
                                                   const std::vector<Shape>& input_shapes,
                                                   uint64_t seed, const GradientCheckOptions& o) {
  if (layer.parameters().empty()) {
    return ::testing::AssertionFailure() << layer.Describe() << " has no parameters to check";
  }
  return CheckGradients(layer, RandomInputs(input_shapes, seed, o), seed, /*check_inputs=*/false,
                        /*check_parameters=*/true, o);
}

}  // namespace quant::nn::testing
