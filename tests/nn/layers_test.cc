// Layers: finite-difference gradient checks (tolerance in gradcheck.h), forward
// values against double-precision references, BatchNorm running statistics,
// PyTorch-default initialisation, the weight hook, and shape errors.
#include <cmath>
#include <memory>

#include "gtest/gtest.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/init.h"
#include "quant/nn/linear.h"
#include "quant/nn/loss.h"
#include "quant/nn/pooling.h"
#include "tests/nn/gradcheck.h"

namespace quant::nn {
namespace {

using testing::GradCheck;
using testing::GradCheckOptions;
using testing::RandomTensor;

Shape WithBatch(int64_t batch, const Shape& sample) {
  Shape s{batch};
  s.insert(s.end(), sample.begin(), sample.end());
  return s;
}

// Builds `layer` for `sample`, initialises it and checks its gradients on a random batch.
void ExpectGradientsMatch(Layer& layer, const Shape& sample, int64_t batch = 3,
                          GradCheckOptions o = {}) {
  ASSERT_TRUE(layer.Build(sample).ok());
  Rng rng(7);
  layer.ResetParameters(rng);
  // Parameters that start at exactly 1 or 0 (BatchNorm) would not exercise the
  // gradient formulas: perturb every parameter.
  for (Parameter* p : layer.parameters()) {
    Tensor noise = RandomTensor(p->value.shape(), 11);
    for (int64_t i = 0; i < p->value.numel(); ++i) p->value[i] += 0.3f * noise[i];
  }
  Tensor x = RandomTensor(WithBatch(batch, sample), 3);
  EXPECT_EQ(GradCheck(layer, x, 5, o), "") << layer.Describe();
}

TEST(LinearTest, GradientsMatchFiniteDifferences) {
  Linear fc("fc", 7, 5);
  ExpectGradientsMatch(fc, {7}, 4);
  Linear no_bias("fc", -1, 3, /*bias=*/false);
  ExpectGradientsMatch(no_bias, {6}, 2);
  EXPECT_EQ(no_bias.in_features(), 6);
  EXPECT_EQ(no_bias.parameters().size(), 1u);
}

TEST(LinearTest, ForwardIsXWtPlusB) {
  Linear fc("fc", 2, 2);
  ASSERT_TRUE(fc.Build({2}).ok());
  fc.weight().value = Tensor({2, 2}, {1, 2, 3, 4});
  fc.bias().value = Tensor({2}, {0.5f, -1});
  Tensor y;
  fc.Forward(Tensor({1, 2}, {1, -1}), &y);
  EXPECT_EQ(y.shape(), (Shape{1, 2}));
  EXPECT_FLOAT_EQ(y[0], 1 - 2 + 0.5f);
  EXPECT_FLOAT_EQ(y[1], 3 - 4 - 1);
}

TEST(LinearTest, WrongInputIsAnErrorWithBothShapes) {
  Linear fc("fc", 100, 10);
  absl::StatusOr<Shape> out = fc.Build({1568});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("[100]"), std::string::npos) << out.status();
  EXPECT_NE(out.status().message().find("[1568]"), std::string::npos) << out.status();
  EXPECT_FALSE(Linear("fc", -1, 10).Build({16, 7, 7}).ok());
}

// Direct convolution in double, the reference for the im2col + GEMM path.
Tensor ReferenceConv(const Tensor& x, const Tensor& w, const Tensor& b, int64_t stride,
                     int64_t pad, const Shape& out_shape) {
  Tensor y(out_shape);
  const int64_t batch = x.dim(0), cin = x.dim(1), h = x.dim(2), wd = x.dim(3);
  const int64_t cout = w.dim(0), k = w.dim(2), ho = out_shape[2], wo = out_shape[3];
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t co = 0; co < cout; ++co)
      for (int64_t oh = 0; oh < ho; ++oh)
        for (int64_t ow = 0; ow < wo; ++ow) {
          double s = b[co];
          for (int64_t c = 0; c < cin; ++c)
            for (int64_t i = 0; i < k; ++i)
              for (int64_t j = 0; j < k; ++j) {
                const int64_t ih = oh * stride - pad + i, iw = ow * stride - pad + j;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                s += static_cast<double>(x[((n * cin + c) * h + ih) * wd + iw]) *
                     w[((co * cin + c) * k + i) * k + j];
              }
          y[((n * cout + co) * ho + oh) * wo + ow] = static_cast<float>(s);
        }
  return y;
}

TEST(Conv2dTest, ForwardMatchesDirectConvolution) {
  struct Case {
    int64_t c, h, w, cout, k, stride, pad;
  };
  for (const Case& t : {Case{3, 7, 6, 4, 3, 1, 1}, Case{2, 8, 8, 3, 3, 2, 1},
                        Case{1, 9, 7, 2, 2, 3, 0}, Case{2, 5, 5, 2, 5, 1, 2},
                        // C*k*k <= 16 with stride 1: the direct path.
                        Case{1, 28, 28, 16, 3, 1, 1}, Case{1, 6, 5, 3, 4, 1, 2}, Case{1, 7, 7, 2, 3, 1, 0},
                        // >= 128 output pixels: one GEMM per image, no layout change.
                        Case{3, 12, 12, 4, 3, 1, 1}, Case{2, 30, 20, 3, 3, 2, 0},
                        // Stride 1, output width 9..16: the row-panel kernel (rows in
                        // blocks of 6 and a remainder; widths 16, 9, 13).
                        Case{5, 9, 16, 7, 3, 1, 1}, Case{4, 11, 9, 13, 3, 1, 1},
                        Case{2, 13, 13, 3, 5, 1, 2}}) {
    Conv2d conv("conv", {.in_channels = -1, .out_channels = t.cout, .kernel = t.k,
                         .stride = t.stride, .padding = t.pad});
    absl::StatusOr<Shape> out = conv.Build({t.c, t.h, t.w});
    ASSERT_TRUE(out.ok()) << out.status();
    Rng rng(1);
    conv.ResetParameters(rng);
    Tensor x = RandomTensor({2, t.c, t.h, t.w}, 9);
    Tensor y;
    conv.Forward(x, &y);
    Tensor ref = ReferenceConv(x, conv.weight().value, conv.bias().value, t.stride, t.pad,
                               WithBatch(2, *out));
    ASSERT_EQ(y.shape(), ref.shape());
    for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], ref[i], 1e-5) << conv.Describe() << " " << i;
  }
}

TEST(Conv2dTest, GradientsMatchFiniteDifferences) {
  Conv2d same("conv", {.in_channels = 3, .out_channels = 4, .kernel = 3, .stride = 1, .padding = 1});
  ExpectGradientsMatch(same, {3, 6, 5}, 2);
  Conv2d strided("conv", {.in_channels = -1, .out_channels = 2, .kernel = 3, .stride = 2, .padding = 1});
  ExpectGradientsMatch(strided, {2, 7, 8}, 2);
  Conv2d no_bias("conv", {.in_channels = -1, .out_channels = 2, .kernel = 2, .stride = 1,
                          .padding = 0, .bias = false});
  ExpectGradientsMatch(no_bias, {1, 5, 5}, 2);
  // One GEMM per image (>= 128 output pixels).
  Conv2d per_image("conv", {.in_channels = 2, .out_channels = 3, .kernel = 3, .stride = 1, .padding = 1});
  GradCheckOptions sparse;
  sparse.max_points = 60;
  ExpectGradientsMatch(per_image, {2, 12, 12}, 2, sparse);
  // Row panels (stride 1, output width 9..16) for y and for dx (input width 10).
  Conv2d panels("conv", {.in_channels = 5, .out_channels = 7, .kernel = 2, .stride = 1, .padding = 0});
  ExpectGradientsMatch(panels, {5, 4, 10}, 2, sparse);
  // The direct path (C*k*k <= 16, stride 1), with padding and with a wide kernel.
  Conv2d direct("conv", {.in_channels = 1, .out_channels = 3, .kernel = 3, .stride = 1, .padding = 1});
  ExpectGradientsMatch(direct, {1, 6, 7}, 3);
  Conv2d wide("conv", {.in_channels = 1, .out_channels = 2, .kernel = 4, .stride = 1, .padding = 2});
  ExpectGradientsMatch(wide, {1, 5, 6}, 2);
}

// Batches are computed in chunks of images (one GEMM per image when images
// are large; several images per GEMM, in chunks of about 512 KB, when small):
// the batch result must equal the per-image results, and the weight gradient
// their sum.
TEST(Conv2dTest, ChunkedBatchEqualsImageByImage) {
  struct Case {
    int64_t cin, size, cout, batch;
  };
  // 28x28: one image per GEMM; 64 channels of 10x10: 2 images per chunk, 3 chunks.
  for (const Case& t : {Case{16, 28, 8, 20}, Case{64, 10, 8, 5}}) {
    const Conv2dOptions o{.in_channels = t.cin, .out_channels = t.cout, .kernel = 3, .stride = 1, .padding = 1};
    Conv2d conv("conv", o), single("conv", o);
    const Shape sample{t.cin, t.size, t.size};
    ASSERT_TRUE(conv.Build(sample).ok());
    ASSERT_TRUE(single.Build(sample).ok());
    Rng rng(4);
    conv.ResetParameters(rng);
    single.weight().value = conv.weight().value;
    single.bias().value = conv.bias().value;
    const int64_t batch = t.batch, image = t.cin * t.size * t.size, out_image = t.cout * t.size * t.size;
    Tensor x = RandomTensor(WithBatch(batch, sample), 6);
    Tensor y, dx;
    conv.Forward(x, &y);
    Tensor dy = RandomTensor(y.shape(), 8);
    conv.Backward(x, y, dy, &dx);
    std::vector<double> dw_sum(conv.weight().value.numel(), 0.0), db_sum(t.cout, 0.0);
    for (int64_t b = 0; b < batch; ++b) {
      Tensor xb(WithBatch(1, sample), std::vector<float>(x.data() + b * image, x.data() + (b + 1) * image));
      Tensor dyb({1, t.cout, t.size, t.size},
                 std::vector<float>(dy.data() + b * out_image, dy.data() + (b + 1) * out_image));
      Tensor yb, dxb;
      single.Forward(xb, &yb);
      single.Backward(xb, yb, dyb, &dxb);
      for (int64_t i = 0; i < out_image; ++i) ASSERT_NEAR(y[b * out_image + i], yb[i], 1e-5);
      for (int64_t i = 0; i < image; ++i) ASSERT_NEAR(dx[b * image + i], dxb[i], 1e-5);
      for (int64_t i = 0; i < single.weight().grad.numel(); ++i) dw_sum[i] += single.weight().grad[i];
      for (int64_t i = 0; i < t.cout; ++i) db_sum[i] += single.bias().grad[i];
    }
    for (size_t i = 0; i < dw_sum.size(); ++i) {
      ASSERT_NEAR(conv.weight().grad[i], dw_sum[i], 1e-3 + 1e-5 * std::fabs(dw_sum[i])) << i;
    }
    for (int64_t i = 0; i < t.cout; ++i) EXPECT_NEAR(conv.bias().grad[i], db_sum[i], 1e-3);
  }
}

TEST(Conv2dTest, ChannelMismatchIsAnError) {
  Conv2d conv("conv", {.in_channels = 3, .out_channels = 4});
  absl::StatusOr<Shape> out = conv.Build({1, 28, 28});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("[1, 28, 28]"), std::string::npos) << out.status();
}

// Inputs spaced 0.05 apart in a shuffled order: no ties within a window, so
// the max is differentiable at h = 5e-3.
Tensor DistinctValues(const Shape& shape) {
  Tensor t(shape);
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) t[i] = 0.05f * static_cast<float>((i * 37) % n) - 0.025f * n;
  return t;
}

TEST(PoolingTest, MaxPoolGradientsAndValues) {
  Pool2d pool("pool", Pool2d::Kind::kMax, 2);
  ASSERT_TRUE(pool.Build({2, 6, 5}).ok());
  Tensor x = DistinctValues({2, 2, 6, 5});
  EXPECT_EQ(GradCheck(pool, x, 3), "");
  Tensor y;
  Pool2d small("pool", Pool2d::Kind::kMax, 2);
  ASSERT_TRUE(small.Build({1, 2, 2}).ok());
  small.Forward(Tensor({1, 1, 2, 2}, {1, 4, 3, 2}), &y);
  EXPECT_EQ(y.shape(), (Shape{1, 1, 1, 1}));
  EXPECT_EQ(y[0], 4);
}

// The 2x2 fast path against the general loop (a 2x2 window with stride 3 runs
// the general code and, on the matching positions, must agree), with ties and NaNs.
TEST(PoolingTest, MaxPool2x2FastPathMatchesGeneralLoop) {
  Tensor x = RandomTensor({2, 3, 6, 6}, 5);
  for (int64_t i = 0; i < x.numel(); i += 7) x[i] = 0.5f;  // ties
  x[10] = std::nanf("");
  x[47] = std::nanf("");
  Pool2d fast("p", Pool2d::Kind::kMax, 2, 2);
  ASSERT_TRUE(fast.Build({3, 6, 6}).ok());
  Tensor y;
  fast.Forward(x, &y);
  Tensor dy = RandomTensor(y.shape(), 2), dx;
  fast.Backward(x, y, dy, &dx);
  for (int64_t pl = 0; pl < 6; ++pl) {
    for (int64_t oh = 0; oh < 3; ++oh) {
      for (int64_t ow = 0; ow < 3; ++ow) {
        // Reference: first maximum in row-major window order, a NaN wins.
        const float* in = x.data() + pl * 36;
        int64_t best = 2 * oh * 6 + 2 * ow;
        for (int64_t i = 0; i < 2; ++i) {
          for (int64_t j = 0; j < 2; ++j) {
            const int64_t idx = (2 * oh + i) * 6 + 2 * ow + j;
            if (std::isnan(in[best])) continue;
            if (in[idx] > in[best] || std::isnan(in[idx])) best = idx;
          }
        }
        const float got = y[pl * 9 + oh * 3 + ow];
        if (std::isnan(in[best])) {
          EXPECT_TRUE(std::isnan(got));
        } else {
          EXPECT_EQ(got, in[best]);
        }
        // The gradient goes to the chosen element.
        EXPECT_EQ(dx[pl * 36 + best], dy[pl * 9 + oh * 3 + ow]);
      }
    }
  }
}

// Row lengths that exercise the ends of rows: out_w >= 8 but not a multiple of
// 8 (the last block moves back), out_w < 8 (whole blocks spill into the next
// row, masked only at the end of the tensor), odd input sizes (a column and a
// row that no window covers): the whole of y and dx against plain loops.
TEST(PoolingTest, MaxPool2x2RowEndsMatchReference) {
  for (const Shape& shape : {Shape{3, 2, 28, 29}, Shape{2, 3, 15, 14}, Shape{1, 1, 5, 7}}) {
    const int64_t planes = shape[0] * shape[1], h = shape[2], w = shape[3];
    const int64_t oh_n = h / 2, ow_n = w / 2;
    Tensor x = RandomTensor(shape, 9);
    Pool2d pool("p", Pool2d::Kind::kMax, 2, 2);
    ASSERT_TRUE(pool.Build({shape[1], h, w}).ok());
    Tensor y, dx;
    pool.Forward(x, &y);
    Tensor dy = RandomTensor(y.shape(), 4);
    pool.Backward(x, y, dy, &dx);
    std::vector<float> ref_dx(x.numel(), 0.0f);
    for (int64_t pl = 0; pl < planes; ++pl) {
      for (int64_t oh = 0; oh < oh_n; ++oh) {
        for (int64_t ow = 0; ow < ow_n; ++ow) {
          int64_t best = pl * h * w + 2 * oh * w + 2 * ow;
          for (int64_t i = 0; i < 2; ++i) {
            for (int64_t j = 0; j < 2; ++j) {
              const int64_t idx = pl * h * w + (2 * oh + i) * w + 2 * ow + j;
              if (x[idx] > x[best]) best = idx;
            }
          }
          const int64_t o = (pl * oh_n + oh) * ow_n + ow;
          ASSERT_EQ(y[o], x[best]) << ShapeToString(shape) << " " << o;
          ref_dx[best] += dy[o];
        }
      }
    }
    for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(dx[i], ref_dx[i]) << ShapeToString(shape) << " " << i;
  }
}

TEST(PoolingTest, AvgPoolGradientsAndOverlappingWindows) {
  Pool2d pool("pool", Pool2d::Kind::kAvg, 3, 2);
  absl::StatusOr<Shape> out = pool.Build({2, 7, 6});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, (Shape{2, 3, 2}));
  EXPECT_EQ(GradCheck(pool, RandomTensor({2, 2, 7, 6}, 4), 3), "");
}

TEST(ElementwiseTest, ClampGradients) {
  // Values kept 0.05 away from the kinks at -1, 0, 1 and 6.
  Tensor x({2, 40});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = -2.025f + 0.1f * static_cast<float>(i % 80);
  for (int i = 0; i < 80; ++i) x[i] *= (i % 3 == 0) ? 4.0f : 1.0f;  // also reach past 6
  for (Clamp::Kind kind : {Clamp::Kind::kReLU, Clamp::Kind::kReLU6, Clamp::Kind::kHardtanh}) {
    Clamp act("act", kind, -1.0f, 1.0f);
    ASSERT_TRUE(act.Build({40}).ok());
    EXPECT_EQ(GradCheck(act, x, 2), "") << act.Describe();
  }
  Clamp relu6("r", Clamp::Kind::kReLU6);
  Tensor y;
  relu6.Forward(Tensor({1, 3}, {-1, 3, 7}), &y);
  EXPECT_EQ(y[0], 0);
  EXPECT_EQ(y[1], 3);
  EXPECT_EQ(y[2], 6);
}

TEST(ElementwiseTest, FlattenKeepsOrder) {
  Flatten flatten("flatten");
  absl::StatusOr<Shape> out = flatten.Build({2, 3, 4});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, (Shape{24}));
  EXPECT_EQ(GradCheck(flatten, RandomTensor({2, 2, 3, 4}, 1), 2), "");
}

TEST(ElementwiseTest, DropoutMaskScaleAndGradient) {
  Dropout drop("drop", 0.25f);
  ASSERT_TRUE(drop.Build({1000}).ok());
  Rng rng(3);
  drop.ResetParameters(rng);
  Tensor x = Tensor::Filled({4, 1000}, 1.0f);
  Tensor y;
  drop.Forward(x, &y);
  int64_t zeros = 0;
  for (int64_t i = 0; i < y.numel(); ++i) {
    if (y[i] == 0.0f) {
      ++zeros;
    } else {
      EXPECT_FLOAT_EQ(y[i], 1.0f / 0.75f);
    }
  }
  EXPECT_NEAR(zeros / 4000.0, 0.25, 0.03);
  // With the same mask replayed, dropout is linear and its gradient exact.
  GradCheckOptions o;
  o.before_forward = [&] {
    Rng replay(3);
    drop.ResetParameters(replay);
  };
  EXPECT_EQ(GradCheck(drop, RandomTensor({2, 1000}, 2), 2, o), "");
  drop.set_training(false);
  drop.Forward(x, &y);
  for (int64_t i = 0; i < y.numel(); ++i) ASSERT_EQ(y[i], 1.0f);
}

TEST(BatchNormTest, GradientsInTrainingAndEval) {
  BatchNorm bn2d("bn", /*spatial=*/true);
  ExpectGradientsMatch(bn2d, {3, 4, 3}, 4);
  BatchNorm bn1d("bn", /*spatial=*/false);
  ExpectGradientsMatch(bn1d, {5}, 6);
  bn2d.set_training(false);
  ExpectGradientsMatch(bn2d, {3, 4, 3}, 2);
}

TEST(BatchNormTest, RunningStatisticsFollowPyTorchMomentum) {
  BatchNorm bn("bn", /*spatial=*/false);
  ASSERT_TRUE(bn.Build({2}).ok());
  Tensor y;
  // Channel 0 sees 1, 2, 3, 4: mean 2.5, biased var 1.25, unbiased var 5/3.
  // Channel 1 sees 0, 0, 0, 8: mean 2, unbiased var 16.
  bn.Forward(Tensor({4, 2}, {1, 0, 2, 0, 3, 0, 4, 8}), &y);
  EXPECT_FLOAT_EQ(bn.running_mean()[0], 0.25f);
  EXPECT_FLOAT_EQ(bn.running_var()[0], 0.9f + 0.1f * 5.0f / 3.0f);
  EXPECT_FLOAT_EQ(bn.running_mean()[1], 0.2f);
  EXPECT_FLOAT_EQ(bn.running_var()[1], 0.9f + 1.6f);
  // Output uses the biased batch variance: (1 - 2.5) / sqrt(1.25 + 1e-5).
  EXPECT_NEAR(y[0], -1.5 / std::sqrt(1.25 + 1e-5), 1e-6);
  // Second step: running = 0.9 * running + 0.1 * batch.
  bn.Forward(Tensor({4, 2}, {1, 0, 2, 0, 3, 0, 4, 8}), &y);
  EXPECT_FLOAT_EQ(bn.running_mean()[0], 0.9f * 0.25f + 0.25f);
  // Eval mode uses the running statistics and leaves them alone.
  bn.set_training(false);
  bn.Forward(Tensor({1, 2}, {1, 1}), &y);
  EXPECT_NEAR(y[0], (1 - bn.running_mean()[0]) / std::sqrt(bn.running_var()[0] + 1e-5), 1e-6);
  EXPECT_FLOAT_EQ(bn.running_mean()[0], 0.9f * 0.25f + 0.25f);
}

TEST(LossTest, CrossEntropyValueAndGradient) {
  SoftmaxCrossEntropy ce;
  int64_t correct = -1;
  EXPECT_NEAR(ce.Forward(Tensor({1, 2}, {0, 0}), {0}, &correct), std::log(2.0), 1e-7);
  EXPECT_EQ(correct, 1);  // the first maximum counts
  // Finite differences of the mean loss in double.
  Tensor logits = RandomTensor({4, 5}, 3);
  for (int64_t i = 0; i < logits.numel(); ++i) logits[i] *= 3.0f;
  const std::vector<int32_t> labels = {0, 4, 2, 2};
  ce.Forward(logits, labels, &correct);
  Tensor grad;
  ce.Backward(&grad);
  for (int64_t i = 0; i < logits.numel(); ++i) {
    const float saved = logits[i];
    logits[i] = saved + 1e-3f;
    const double up = ce.Forward(logits, labels, nullptr);
    logits[i] = saved - 1e-3f;
    const double down = ce.Forward(logits, labels, nullptr);
    logits[i] = saved;
    const double step = static_cast<double>(saved + 1e-3f) - static_cast<double>(saved - 1e-3f);
    EXPECT_NEAR((up - down) / step, grad[i], 1e-4) << i;
  }
  // Large logits do not overflow.
  EXPECT_NEAR(ce.Forward(Tensor({1, 2}, {1000, 0}), {1}, nullptr), 1000.0, 1e-3);
}

TEST(InitTest, KaimingUniformMatchesPyTorchDefault) {
  EXPECT_FLOAT_EQ(KaimingUniformBound(784), 1.0f / 28.0f);
  Linear fc("fc", 784, 256);
  ASSERT_TRUE(fc.Build({784}).ok());
  Rng rng(0);
  fc.ResetParameters(rng);
  const float bound = 1.0f / 28.0f;
  double sum = 0, sq = 0;
  float lo = 1, hi = -1;
  for (int64_t i = 0; i < fc.weight().value.numel(); ++i) {
    const float w = fc.weight().value[i];
    sum += w;
    sq += static_cast<double>(w) * w;
    lo = std::min(lo, w);
    hi = std::max(hi, w);
  }
  const double n = fc.weight().value.numel();
  EXPECT_GE(lo, -bound);
  EXPECT_LT(hi, bound);
  EXPECT_LT(hi, bound * 1.0001f);
  EXPECT_GT(hi, bound * 0.999f);
  EXPECT_NEAR(sum / n, 0.0, 1e-3 * bound * 10);
  EXPECT_NEAR(sq / n, bound * bound / 3.0, 0.01 * bound * bound);
  for (int64_t i = 0; i < 256; ++i) ASSERT_LE(std::fabs(fc.bias().value[i]), bound);
  Conv2d conv("conv", {.in_channels = 16, .out_channels = 32, .kernel = 3});
  ASSERT_TRUE(conv.Build({16, 14, 14}).ok());
  conv.ResetParameters(rng);
  float max_abs = 0;
  for (int64_t i = 0; i < conv.weight().value.numel(); ++i) {
    max_abs = std::max(max_abs, std::fabs(conv.weight().value[i]));
  }
  EXPECT_LE(max_abs, 1.0f / 12.0f);  // fan_in = 16 * 3 * 3 = 144
  EXPECT_GT(max_abs, 0.99f / 12.0f);
}

// w -> w^3 with its exact derivative: a non-trivial transform at the weight hook.
class Cube : public TensorTransform {
 public:
  std::string Describe() const override { return "cube"; }
  void Forward(const Tensor& in, Tensor* out, bool) override {
    EnsureShape(out, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*out)[i] = in[i] * in[i] * in[i];
    ++forwards;
  }
  void Backward(const Tensor& in, const Tensor& g, Tensor* grad_in) override {
    EnsureShape(grad_in, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*grad_in)[i] = 3 * in[i] * in[i] * g[i];
  }
  int forwards = 0;
};

TEST(HookTest, WeightTransformIsUsedAndDifferentiated) {
  for (bool conv : {false, true}) {
    std::unique_ptr<Layer> layer;
    Shape sample;
    if (conv) {
      layer = std::make_unique<Conv2d>("c", Conv2dOptions{.out_channels = 2, .kernel = 3, .padding = 1});
      sample = {2, 4, 4};
    } else {
      layer = std::make_unique<Linear>("f", -1, 3);
      sample = {4};
    }
    auto cube = std::make_shared<Cube>();
    layer->set_weight_transform(cube);
    ExpectGradientsMatch(*layer, sample, 2);
    EXPECT_GT(cube->forwards, 0);
  }
  // Forward really uses the transformed weight.
  Linear fc("fc", 1, 1, false);
  ASSERT_TRUE(fc.Build({1}).ok());
  fc.weight().value[0] = 2.0f;
  fc.set_weight_transform(std::make_shared<Cube>());
  Tensor y;
  fc.Forward(Tensor({1, 1}, {1.5f}), &y);
  EXPECT_FLOAT_EQ(y[0], 12.0f);
}

}  // namespace
}  // namespace quant::nn
