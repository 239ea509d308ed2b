// BatchNorm folding: in eval mode the conv with the folding weight hook
// followed by its BatchNorm equals one conv with the folded (and fake-
// quantized) weight and the folded bias, to 1e-5; the hook's gradient is the
// STE; and the qat scheme folds cnn_bn's conv-BN pairs and freezes the BN
// statistics when told.
#include <cmath>
#include <memory>

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/rng.h"
#include "quant/quantizers/quantizer.h"
#include "quant/training/bn_folding.h"
#include "quant/training/quantizer_transform.h"

namespace quant {
namespace {

struct Pair {
  std::unique_ptr<nn::Conv2d> conv;
  std::unique_ptr<nn::BatchNorm> bn;
};

// A 3->4 channel 3x3 conv and its BN with non-trivial statistics.
Pair MakePair(uint64_t seed) {
  Pair p;
  p.conv = std::make_unique<nn::Conv2d>("conv1", nn::Conv2dOptions{.in_channels = 3, .out_channels = 4,
                                                                   .kernel = 3, .padding = 1});
  p.bn = std::make_unique<nn::BatchNorm>("bn1", /*spatial=*/true);
  EXPECT_TRUE(p.conv->Build({3, 6, 6}).ok());
  EXPECT_TRUE(p.bn->Build({4, 6, 6}).ok());
  nn::Rng rng(seed);
  p.conv->ResetParameters(rng);
  p.bn->ResetParameters(rng);
  for (int c = 0; c < 4; ++c) {
    p.bn->weight().value[c] = 0.5f + 0.3f * c;
    p.bn->bias().value[c] = -0.2f + 0.1f * c;
    p.bn->running_mean()[c] = 0.05f * (c - 1);
    p.bn->running_var()[c] = 0.3f + 0.4f * c;
  }
  p.conv->set_training(false);
  p.bn->set_training(false);
  return p;
}

Tensor Input(uint64_t seed) {
  nn::Rng rng(seed);
  Tensor x({2, 3, 6, 6});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.Uniform(-1.0f, 1.0f);
  return x;
}

std::shared_ptr<QuantizerTransform> Quant(const std::string& yaml) {
  auto q = BuildQuantizerFromYaml(yaml);
  EXPECT_TRUE(q.ok()) << q.status();
  return std::make_shared<QuantizerTransform>(std::move(q).value(), "conv1 weights");
}

// conv(hooked) -> bn  vs  conv(weight, bias) alone.
double MaxDiff(Pair& hooked, const Tensor& weight, const Tensor& bias, const Tensor& x) {
  Tensor a, b, c;
  hooked.conv->Forward(x, &a);
  hooked.bn->Forward(a, &b);
  nn::Conv2d plain("plain", nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel = 3, .padding = 1});
  EXPECT_TRUE(plain.Build({3, 6, 6}).ok());
  plain.weight().value = weight;
  plain.bias().value = bias;
  plain.set_training(false);
  plain.Forward(x, &c);
  double m = 0;
  for (int64_t i = 0; i < b.numel(); ++i) m = std::max(m, static_cast<double>(std::fabs(b[i] - c[i])));
  return m;
}

TEST(BnFoldingTest, FoldedEqualsConvPlusBatchNormInEval) {
  Pair p = MakePair(1);
  const Tensor x = Input(2);
  // Reference: the untouched conv + BN.
  Tensor a, ref;
  p.conv->Forward(x, &a);
  p.bn->Forward(a, &ref);
  FoldedWeights f = FoldBatchNorm(p.conv->weight().value, &p.conv->bias().value, *p.bn);
  Tensor c;
  nn::Conv2d plain("plain", nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .kernel = 3, .padding = 1});
  ASSERT_TRUE(plain.Build({3, 6, 6}).ok());
  plain.weight().value = f.weight;
  plain.bias().value = f.bias;
  plain.Forward(x, &c);
  for (int64_t i = 0; i < ref.numel(); ++i) ASSERT_NEAR(ref[i], c[i], 1e-5) << i;

  // The folding hook with fake quantization switched off changes nothing.
  auto q = Quant("{bits: 8, symmetric: true, granularity: per_channel}");
  q->quantizer().set_fake_quant_enabled(false);
  p.conv->set_weight_transform(std::make_shared<BnFoldTransform>(p.bn.get(), q));
  Tensor a2, hooked;
  p.conv->Forward(x, &a2);
  p.bn->Forward(a2, &hooked);
  for (int64_t i = 0; i < ref.numel(); ++i) ASSERT_NEAR(ref[i], hooked[i], 1e-5) << i;
}

TEST(BnFoldingTest, QuantizedFoldEqualsWhatAnIntegerModelRuns) {
  for (const char* spec : {"{bits: 8, symmetric: true, granularity: per_channel}",
                           "{bits: 4, symmetric: true}", "{quantizer: lsq, bits: 4}"}) {
    Pair p = MakePair(3);
    const Tensor x = Input(4);
    auto q = Quant(spec);
    auto fold = std::make_shared<BnFoldTransform>(p.bn.get(), q);
    p.conv->set_weight_transform(fold);
    // Calibrate on the folded weight (training-mode call, as QAT's first step).
    Tensor scratch;
    fold->Forward(p.conv->weight().value, &scratch, /*training=*/true);
    ASSERT_TRUE(q->status().ok()) << q->status();
    // Export: fold, then fake-quantize the folded weight with the trained qparams.
    FoldedWeights f = FoldBatchNorm(p.conv->weight().value, &p.conv->bias().value, *p.bn);
    Tensor wq(f.weight.shape());
    q->Forward(f.weight, &wq, /*training=*/false);
    EXPECT_LT(MaxDiff(p, wq, f.bias, x), 1e-5) << spec;
    // And quantization did something: the float fold differs.
    EXPECT_GT(MaxDiff(p, f.weight, f.bias, x), 1e-4) << spec;
  }
}

TEST(BnFoldingTest, GradientIsTheStraightThroughEstimator) {
  Pair p = MakePair(5);
  // 2-bit affine clips: the gradient is grad * mask of the folded weight.
  auto q = Quant("{bits: 2, symmetric: true, observer: fixed, scale: 0.05}");
  BnFoldTransform fold(p.bn.get(), q);
  const Tensor& w = p.conv->weight().value;
  Tensor out(w.shape()), gin(w.shape());
  fold.Forward(w, &out, /*training=*/true);
  ASSERT_TRUE(q->status().ok()) << q->status();
  Tensor gout = Tensor::Filled(w.shape(), 1.0f);
  fold.Backward(w, gout, &gin);
  const std::vector<float> s = BatchNormScale(*p.bn);
  const float scale = q->quantizer().qparams().scale[0];
  const int64_t n = w.numel() / 4;
  int passed = 0, blocked = 0;
  for (int64_t i = 0; i < w.numel(); ++i) {
    const float v = w[i] * s[i / n] / scale;  // the folded weight on the grid
    const bool inside = std::nearbyint(v) >= -2 && std::nearbyint(v) <= 1;
    if (std::fabs(v - std::floor(v) - 0.5f) < 1e-3f) continue;  // a tie may round either way
    EXPECT_NEAR(gin[i], inside ? 1.0f : 0.0f, 1e-6) << i << " v " << v;
    (inside ? passed : blocked)++;
  }
  EXPECT_GT(passed, 0);
  EXPECT_GT(blocked, 0);
}

}  // namespace
}  // namespace quant
