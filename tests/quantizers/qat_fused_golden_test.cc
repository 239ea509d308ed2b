// PyTorch's default QAT module (FusedMovingAvgObsFakeQuantize) reproduced by
// a quantizer built from YAML, `observer: fused_moving_average_minmax`, with
// the observer enabled: each Forward() observes, recomputes the qparams and
// fake-quantizes; Backward() gives the STE gradient.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quant/quantizers/quantizer.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::FloatArray;
using golden::FloatToBits;
using golden::Json;

// The module config as quantlab YAML.
std::string YamlFor(const Json& cfg) {
  const bool per_channel = cfg.at("qscheme").get<std::string>().find("per_channel") != std::string::npos;
  const bool symmetric = cfg.at("qscheme").get<std::string>().find("symmetric") != std::string::npos;
  const bool is_signed = cfg.at("dtype").get<std::string>().find("qint8") != std::string::npos;
  const int64_t lo = cfg.at("quant_min").get<int64_t>(), hi = cfg.at("quant_max").get<int64_t>();
  int bits = 1;
  while ((int64_t{1} << bits) < hi - lo + 1) ++bits;
  return absl::StrCat("{quantizer: affine, observer: fused_moving_average_minmax, "
                      "averaging_constant: 0.01, bits: ", bits, ", signed: ", is_signed ? "true" : "false",
                      ", symmetric: ", symmetric ? "true" : "false",
                      per_channel ? ", granularity: per_channel, axis: 0" : "", "}");
}

TEST(QatFusedGolden, ForwardBackwardThroughTheSpec) {
  for (const std::string& path : golden::FilesFor("torch/fused_moving_avg_obs_fake_quant.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    for (const Json& cs : j.at("cases")) {
      const std::string yaml = YamlFor(cs.at("config"));
      auto q = BuildQuantizerFromYaml(yaml);
      ASSERT_TRUE(q.ok()) << yaml << q.status();
      ASSERT_EQ((*q)->spec().quant_min, cs.at("config").at("quant_min").get<int64_t>()) << yaml;
      ASSERT_EQ((*q)->spec().quant_max, cs.at("config").at("quant_max").get<int64_t>()) << yaml;
      (*q)->set_observer_enabled(true);
      const std::vector<int64_t> shape = cs.at("shape").get<std::vector<int64_t>>();
      int step = 0;
      for (const Json& st : cs.at("steps")) {
        const std::string what = absl::StrCat(cs.at("name").get<std::string>(), " step ", step++);
        Tensor x(shape, FloatArray(st.at("x")));
        Tensor y, gx;
        ASSERT_TRUE((*q)->Forward(x, &y).ok());
        ASSERT_TRUE((*q)->Backward(Tensor::Filled(shape, 1.0f), &gx).ok());
        const std::vector<float> wy = FloatArray(st.at("y")), wg = FloatArray(st.at("grad_x"));
        for (int64_t i = 0; i < x.numel(); ++i) {
          t.Add("qat y", FloatToBits(y[i]) == FloatToBits(wy[i]), what);
          t.Add("qat grad_x", FloatToBits(gx[i]) == FloatToBits(wg[i]), what);
        }
        const std::vector<float> ws = FloatArray(st.at("scale"));
        for (size_t g = 0; g < ws.size(); ++g) {
          t.Add("qat scale", FloatToBits((*q)->qparams().scale[g]) == FloatToBits(ws[g]), what);
          t.Add("qat zero_point", (*q)->qparams().zero_point[g] == st.at("zero_point")[g].get<int32_t>(), what);
        }
      }
    }
    t.Report({"qat y", "qat grad_x", "qat scale", "qat zero_point"});
  }
}

}  // namespace
}  // namespace quant

namespace quant {
namespace {

// FixedQParamsFakeQuantize through `observer: fixed` from YAML.
TEST(QatFusedGolden, FixedQParamsThroughTheSpec) {
  for (const std::string& path : golden::FilesFor("torch/fixed_qparams.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    for (const Json& cs : j.at("cases")) {
      char scale[64];
      std::snprintf(scale, sizeof scale, "%.9g", golden::FloatScalar(cs.at("scale")));
      const std::string yaml = absl::StrCat(
          "{observer: fixed, scale: ", scale, ", zero_point: ", cs.at("zero_point")[0].get<int>(),
          ", quant_min: ", cs.at("quant_min").get<int>(), ", quant_max: ", cs.at("quant_max").get<int>(), "}");
      auto q = BuildQuantizerFromYaml(yaml);
      ASSERT_TRUE(q.ok()) << yaml << q.status();
      ASSERT_TRUE((*q)->ComputeQParams().ok());
      const std::vector<float> x = FloatArray(cs.at("x"));
      Tensor in({static_cast<int64_t>(x.size())}, x), y, gx;
      ASSERT_TRUE((*q)->Forward(in, &y).ok());
      ASSERT_TRUE((*q)->Backward(Tensor::Filled(in.shape(), 1.0f), &gx).ok());
      const std::vector<float> wy = FloatArray(cs.at("y")), wg = FloatArray(cs.at("grad_x"));
      for (size_t i = 0; i < x.size(); ++i) {
        t.Add("fixed y", FloatToBits(y[i]) == FloatToBits(wy[i]), yaml);
        t.Add("fixed grad_x", FloatToBits(gx[i]) == FloatToBits(wg[i]), yaml);
      }
    }
    t.Report({"fixed y", "fixed grad_x"});
  }
}

}  // namespace
}  // namespace quant
