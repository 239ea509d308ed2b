// What the backend tests share when they compare a backend with `reference`: output
// statistics (identical / off by one step / larger), running a backend on a model, inputs a
// little outside the calibrated range, the accumulators of a single weighted op, and a
// quantized mlp. Header-only, tests only.
#ifndef TESTS_BACKENDS_BACKEND_COMPARE_H_
#define TESTS_BACKENDS_BACKEND_COMPARE_H_

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quant/backends/backend.h"
#include "quant/backends/model_builder.h"
#include "quant/backends/reference_kernels.h"

namespace quant::backends {

struct Stats {
  int64_t total = 0, identical = 0, off_by_one = 0, larger = 0;
  int max_steps = 0;
  std::string ToString() const {
    return absl::StrCat(total, " outputs: ", identical, " identical, ", off_by_one, " off by one step, ", larger,
                        " larger; max ", max_steps, " steps");
  }
  void Add(const Stats& s) {
    total += s.total, identical += s.identical, off_by_one += s.off_by_one, larger += s.larger;
    max_steps = std::max(max_steps, s.max_steps);
  }
};

inline Stats Compare(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  Stats s;
  EXPECT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const int d = std::abs(a[i] - b[i]);
    ++s.total;
    s.identical += d == 0;
    s.off_by_one += d == 1;
    s.larger += d > 1;
    s.max_steps = std::max(s.max_steps, d);
  }
  return s;
}

inline RunOutput RunBackend(const std::string& name, const QuantizedModel& m, const std::vector<float>& x,
                            int64_t batch) {
  auto b = CreateBackend(name);
  EXPECT_TRUE(b.ok()) << b.status();
  absl::Status s = (*b)->Prepare(m);
  EXPECT_TRUE(s.ok()) << s;
  RunOutput out;
  if (!s.ok()) return out;
  s = (*b)->Run(x.data(), batch, &out);
  EXPECT_TRUE(s.ok()) << s;
  return out;
}

inline std::vector<float> Inputs(const QuantizedModel& m, int64_t batch, uint64_t seed) {
  std::vector<float> x = RandomImages(m, batch, seed);
  for (float& v : x) v = v * 1.2f - 0.1f;  // a little outside the calibrated range: clamps too
  return x;
}

// Accumulators (bias included) of the single weighted op of `m`, from the reference
// kernels with a unit multiplier and no clamp.
inline std::vector<int32_t> Accumulators(const QuantizedModel& m, const std::vector<float>& x, int64_t batch) {
  const std::vector<Shape> shapes = *InferShapes(m);
  std::vector<int32_t> q(x.size());
  const Tensor& iq = m.tensors(InputTensor(m));
  for (size_t i = 0; i < x.size(); ++i) {
    q[i] = QuantizeInputValue(x[i], 1.0f / TensorScale(iq), TensorZeroPoint(iq), DTypeMin(iq.dtype()),
                              DTypeMax(iq.dtype()));
  }
  const Op& l = m.ops(0);
  const Tensor& wq = m.tensors(WeightTensor(l));
  const std::vector<int32_t> w = TensorValues(wq);
  const int out_c = wq.shape(0);
  std::vector<int32_t> wzp(out_c), bias(out_c), mult(out_c, 1 << 30), shift(out_c, 1);
  for (int o = 0; o < out_c; ++o) {
    wzp[o] = TensorZeroPoint(wq, IsPerChannel(wq) ? o : 0);
    bias[o] = m.tensors(BiasTensor(l)).int_data(o);
  }
  reference::RequantParams p{TensorZeroPoint(iq),
                             wzp.data(),
                             bias.data(),
                             mult.data(),
                             shift.data(),
                             0,
                             std::numeric_limits<int32_t>::min(),
                             std::numeric_limits<int32_t>::max()};
  const Shape& in = shapes[l.inputs(0)];
  const Shape& out = shapes[l.outputs(0)];
  std::vector<int32_t> acc(batch * Numel(out));
  if (l.has_fully_connected()) {
    reference::FullyConnected(p, batch, static_cast<int>(in[0]), out_c, q.data(), w.data(), acc.data());
  } else {
    const Conv2DOptions& c = l.conv2d();
    reference::ConvGeometry g{batch,        in[0],       in[1],        in[2],        out[0],
                              out[1],       out[2],      c.kernel_h(), c.kernel_w(), c.stride_h(),
                              c.stride_w(), c.pad_top(), c.pad_left(), c.groups()};
    reference::Conv2D(p, g, q.data(), w.data(), acc.data());
  }
  return acc;
}

inline QuantizedModel MlpWith(const QuantizeOptions& o) {
  QuantizedModel f = MakeFloatMlp(20);
  std::vector<float> calib = RandomImages(f, 8, 21);
  auto m = QuantizeMinMax(f, calib.data(), 8, o);
  EXPECT_TRUE(m.ok());
  return *m;
}

}  // namespace quant::backends

#endif  // TESTS_BACKENDS_BACKEND_COMPARE_H_
