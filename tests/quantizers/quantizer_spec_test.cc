// The quantization spec end to end: one YAML map -> a ready tensor quantizer
// through the registries; parameter errors naming the YAML key; properties
// (zero exactly representable, per-channel == per-tensor by channel).
#include <cmath>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/qmath/fake_quant.h"
#include "quant/quantizers/quantizer.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

Tensor Random(std::vector<int64_t> shape, float lo, float hi, uint32_t seed) {
  Tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = u(rng);
  return t;
}

TEST(QuantizerSpec, AffineIsRegistered) {
  EXPECT_TRUE(Registry<Quantizer>::Get().Contains("affine"));
}

TEST(QuantizerSpec, BuildsFromOneYamlMapAndQuantizes) {
  auto q = BuildQuantizerFromYaml(
      "{quantizer: affine, bits: 4, symmetric: true, granularity: per_channel, axis: 0, "
      "observer: minmax}");
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ((*q)->spec().quant_min, -8);
  EXPECT_EQ((*q)->spec().quant_max, 7);
  Tensor w = Random({4, 16}, -1, 1, 1);
  for (int64_t i = 0; i < 16; ++i) w[16 + i] *= 10;  // channel 1 is wider
  ASSERT_TRUE((*q)->Observe(w).ok());
  ASSERT_TRUE((*q)->ComputeQParams().ok());
  const QParams& qp = (*q)->qparams();
  ASSERT_EQ(qp.size(), 4);
  EXPECT_GT(qp.scale[1], 5 * qp.scale[0]);
  for (int32_t z : qp.zero_point) EXPECT_EQ(z, 0);
  Tensor y;
  ASSERT_TRUE((*q)->Forward(w, &y).ok());
  std::vector<int32_t> codes;
  ASSERT_TRUE((*q)->QuantizeToInt(w, &codes).ok());
  for (int64_t i = 0; i < w.numel(); ++i) {
    const int64_t c = i / 16;
    ASSERT_GE(codes[i], -8);
    ASSERT_LE(codes[i], 7);
    EXPECT_EQ(y[i], codes[i] * qp.scale[c]);  // zero point 0
  }
  Tensor g = Tensor::Filled({4, 16}, 1.0f), gx;
  ASSERT_TRUE((*q)->Backward(g, &gx).ok());
  EXPECT_THAT((*q)->Describe(), HasSubstr("4-bit signed symmetric [-8, 7] per_channel"));
}

TEST(QuantizerSpec, HistogramWithCalibrationFromYaml) {
  auto q = BuildQuantizerFromYaml(
      "{bits: 8, observer: histogram, calibration: percentile, percentile: 99.9}");
  ASSERT_TRUE(q.ok()) << q.status();
  Tensor x = Random({1000}, 0, 1, 2);
  x[0] = 100.0f;  // an outlier
  ASSERT_TRUE((*q)->Observe(x).ok());
  ASSERT_TRUE((*q)->ComputeQParams().ok());
  // The outlier is clipped: the range ends near 1, not 100.
  EXPECT_LT((*q)->qparams().scale[0] * 255, 2.0f);
}

TEST(QuantizerSpec, QatForwardObservesAndRecomputes) {
  auto q = BuildQuantizerFromYaml("{observer: fused_moving_average_minmax}");
  ASSERT_TRUE(q.ok()) << q.status();
  Tensor y;
  EXPECT_EQ((*q)->Forward(Random({8}, -1, 1, 3), &y).code(), absl::StatusCode::kFailedPrecondition);
  (*q)->set_observer_enabled(true);
  ASSERT_TRUE((*q)->Forward(Random({8}, -1, 1, 3), &y).ok());
  const float s1 = (*q)->qparams().scale[0];
  ASSERT_TRUE((*q)->Forward(Random({8}, -5, 5, 4), &y).ok());
  EXPECT_GT((*q)->qparams().scale[0], s1);  // moved toward the wider batch
  (*q)->set_observer_enabled(false);
  const float frozen = (*q)->qparams().scale[0];
  ASSERT_TRUE((*q)->Forward(Random({8}, -50, 50, 5), &y).ok());
  EXPECT_EQ((*q)->qparams().scale[0], frozen);
}

// Every key error names the key, with file:line:col.
struct BadCase {
  const char* yaml;
  const char* needle;
};

TEST(QuantizerSpec, BadParametersNameTheKey) {
  const BadCase cases[] = {
      {"{bits: 0}", "t.yaml:1:8: bits: expected an integer in [2, 16], got 0"},
      {"{bits: 33}", "t.yaml:1:8: bits: expected an integer in [2, 16], got 33"},
      {"{quant_min: 5, quant_max: 3}", "quant_min: quant_min (5) must be less than quant_max (3)"},
      {"{percentile: 0, observer: histogram, calibration: percentile}",
       "percentile: percentile must be in (0, 100], got 0"},
      {"{percentile: 101, observer: histogram, calibration: percentile}",
       "percentile: percentile must be in (0, 100], got 101"},
      {"{granularity: per_block}", "block_size: granularity: per_block needs block_size >= 1"},
      {"{granularity: per_tensor, axis: 1}", "axis: axis is only used with granularity"},
      {"{symmetric: true, signed: false, reduce_range: true}",
       "reduce_range: reduce_range with symmetric unsigned quantization is refused"},
      {"{observer: minmx}", "observer: unknown observer 'minmx' (did you mean 'minmax'?)"},
      {"{calibration: kl}", "calibration: calibration 'kl' needs a histogram"},
      {"{bitz: 4}", "unknown key 'bitz' (did you mean 'bits'?)"},
      {"{observer: per_channel_minmax}", "needs granularity: per_channel"},
      {"{quant_min: -4}", "quant_min and quant_max must be given together"},
      // Integer limits: refused before any arithmetic (quant_max - quant_min + 1 overflowed).
      {"{quant_min: -9223372036854775808, quant_max: 9223372036854775807}",
       "quant_min: expected an integer in [-65536, 65535], got -9223372036854775808"},
      {"{granularity: per_channel, axis: 4294967296}", "axis: expected an integer in [-16, 15], got 4294967296"},
      {"{granularity: per_block, block_size: 9999999999}", "block_size: expected an integer in [0, 1073741824]"},
  };
  for (const BadCase& c : cases) {
    auto q = BuildQuantizerFromYaml(c.yaml, "t.yaml");
    ASSERT_FALSE(q.ok()) << c.yaml;
    // An unknown plugin name is NotFound (the registry's code), the rest InvalidArgument.
    EXPECT_TRUE(q.status().code() == absl::StatusCode::kInvalidArgument ||
                q.status().code() == absl::StatusCode::kNotFound)
        << c.yaml;
    EXPECT_THAT(std::string(q.status().message()), HasSubstr(c.needle)) << c.yaml;
  }
}

TEST(QuantizerSpec, ShapeErrorsNameTheKeyWhenDataArrives) {
  auto q = BuildQuantizerFromYaml("{granularity: per_channel, axis: 2}", "t.yaml");
  ASSERT_TRUE(q.ok());
  absl::Status s = (*q)->Observe(Tensor({3, 4}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("t.yaml:1:28: axis: axis 2 is out of range for a tensor of shape [3, 4]"));
  auto b = BuildQuantizerFromYaml("{granularity: per_block, axis: 1, block_size: 3}", "t.yaml");
  ASSERT_TRUE(b.ok());
  s = (*b)->Observe(Tensor({2, 8}));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("block_size: block_size 3 does not divide dimension 1 (size 8)"));
}

TEST(QuantizerSpec, ZeroExactlyRepresentableForEveryAsymmetricRangeContainingIt) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0, 1);
  int checked = 0;
  for (int bits : {2, 3, 4, 8, 12, 16}) {
    for (bool is_signed : {false, true}) {
      QuantSpec spec;
      spec.bits = bits;
      spec.is_signed = is_signed;
      spec.custom_range = bits != 8;
      IntegerRange(bits, is_signed, false, false, &spec.quant_min, &spec.quant_max);
      for (int k = 0; k < 500; ++k) {
        // min <= 0 <= max over many magnitudes, including one-sided ranges.
        const float mag = std::pow(10.0f, -6 + 12 * u(rng));
        const float lo = k % 10 == 0 ? 0.0f : -mag * u(rng);
        const float hi = k % 10 == 1 ? 0.0f : mag * u(rng);
        float scale;
        int32_t zp;
        ASSERT_TRUE(TorchObserverQParams(spec, lo, hi, &scale, &zp).ok());
        float zero = 0.0f, y;
        FakeQuantizeSpan(&zero, &y, nullptr, 1, scale, zp, spec.quant_min, spec.quant_max);
        ASSERT_EQ(y, 0.0f) << bits << " " << lo << " " << hi;
        ASSERT_TRUE(ChooseQuantizationParams(lo, hi, spec.quant_min, spec.quant_max, false, &scale, &zp).ok());
        FakeQuantizeSpan(&zero, &y, nullptr, 1, scale, zp, spec.quant_min, spec.quant_max);
        ASSERT_EQ(y, 0.0f) << "aten " << bits << " " << lo << " " << hi;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 6000);
}

TEST(QuantizerSpec, PerChannelEqualsPerTensorChannelByChannel) {
  Tensor w = Random({6, 5, 7}, -2, 2, 11);
  for (int64_t i = 0; i < 35; ++i) w[2 * 35 + i] *= 4;
  auto pc = BuildQuantizerFromYaml("{bits: 4, granularity: per_channel, axis: 0}");
  ASSERT_TRUE(pc.ok());
  ASSERT_TRUE((*pc)->Observe(w).ok());
  ASSERT_TRUE((*pc)->ComputeQParams().ok());
  Tensor y;
  ASSERT_TRUE((*pc)->Forward(w, &y).ok());
  for (int64_t c = 0; c < 6; ++c) {
    auto pt = BuildQuantizerFromYaml("{bits: 4}");
    ASSERT_TRUE(pt.ok());
    Tensor slice({5, 7}, std::vector<float>(w.data() + c * 35, w.data() + (c + 1) * 35));
    ASSERT_TRUE((*pt)->Observe(slice).ok());
    ASSERT_TRUE((*pt)->ComputeQParams().ok());
    EXPECT_EQ((*pt)->qparams().scale[0], (*pc)->qparams().scale[c]);
    EXPECT_EQ((*pt)->qparams().zero_point[0], (*pc)->qparams().zero_point[c]);
    Tensor ys;
    ASSERT_TRUE((*pt)->Forward(slice, &ys).ok());
    for (int64_t i = 0; i < 35; ++i) ASSERT_EQ(ys[i], y[c * 35 + i]) << c << " " << i;
  }
}

TEST(QuantizerSpec, RunListDescribesTheAffineParameters) {
  auto all = RegistryIndex::Get().DescribeAll();
  ASSERT_TRUE(all.count("quantizer"));
  bool found = false;
  for (const PluginDescription& d : all["quantizer"]) {
    if (d.name != "affine") continue;
    found = true;
    std::vector<std::string> keys;
    for (const ParamInfo& p : d.params) keys.push_back(p.key);
    EXPECT_THAT(keys, ::testing::IsSupersetOf({"bits", "symmetric", "granularity", "axis",
                                               "block_size", "observer", "calibration"}));
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

TEST(QuantizerSpec, IntegerRangesFromYaml) {
  struct Case {
    const char* yaml;
    int64_t lo, hi;
  } cases[] = {
      {"{}", 0, 255},
      {"{symmetric: true}", -128, 127},
      {"{signed: true, narrow_range: true}", -127, 127},
      {"{narrow_range: true}", 1, 255},
      {"{reduce_range: true}", 0, 127},
      {"{signed: true, reduce_range: true}", -64, 63},
      {"{bits: 4, symmetric: true}", -8, 7},
      {"{bits: 2, calibration: none}", 0, 3},
      {"{bits: 16, signed: true}", -32768, 32767},
      {"{quant_min: -7, quant_max: 7}", -7, 7},
      {"{quant_min: -7, quant_max: 7, reduce_range: true}", -4, 3},
  };
  for (const Case& c : cases) {
    auto q = BuildQuantizerFromYaml(c.yaml);
    ASSERT_TRUE(q.ok()) << c.yaml << q.status();
    EXPECT_EQ((*q)->spec().quant_min, c.lo) << c.yaml;
    EXPECT_EQ((*q)->spec().quant_max, c.hi) << c.yaml;
  }
}

}  // namespace
}  // namespace quant
