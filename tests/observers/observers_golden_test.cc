// Observers against PyTorch 1.13's vectors (observers.json,
// fused_moving_avg_obs_fake_quant.json): min/max, scale (as float32 bits) and
// zero point of MinMax / MovingAverage / PerChannel observers, the
// HistogramObserver's L2 search given its stored histogram, the whole 1.13
// histogram pipeline in compat mode, refusals, and the fused QAT observer.
#include <cstdio>
#include <map>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/observers/histogram_observer.h"
#include "quant/observers/minmax_observer.h"
#include "quant/qmath/fake_quant.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::FloatArray;
using golden::FloatScalar;
using golden::FloatToBits;
using golden::Json;

// A PyTorch observer config {qscheme, dtype, reduce_range[, quant_min, quant_max]}
// as a quantlab spec (8-bit, explicit range when given).
absl::StatusOr<QuantSpec> SpecFromTorch(const Json& cfg, Granularity g) {
  QuantSpec s;
  s.bits = 8;
  s.is_signed = cfg.at("dtype").get<std::string>().find("qint8") != std::string::npos;
  const std::string qscheme = cfg.at("qscheme").get<std::string>();
  s.symmetric = qscheme.find("symmetric") != std::string::npos;
  s.reduce_range = cfg.value("reduce_range", false);
  s.granularity = g;
  s.axis = cfg.value("ch_axis", 0);
  if (cfg.contains("quant_min") && !cfg.at("quant_min").is_null()) {
    const int64_t lo = cfg.at("quant_min").get<int64_t>(), hi = cfg.at("quant_max").get<int64_t>();
    s.custom_range = true;
    s.quant_min = s.reduce_range ? (lo >= 0 ? lo / 2 : -((-lo + 1) / 2)) : lo;
    s.quant_max = s.reduce_range ? (hi >= 0 ? hi / 2 : -((-hi + 1) / 2)) : hi;
  } else {
    IntegerRange(8, s.is_signed, false, s.reduce_range, &s.quant_min, &s.quant_max);
  }
  absl::Status st = ValidateQuantSpec(s);
  if (!st.ok()) return st;
  return s;
}

std::string F(float v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g(0x%08x)", v, FloatToBits(v));
  return b;
}

bool SameBits(float a, float b) { return FloatToBits(a) == FloatToBits(b); }

void CompareQParams(const QParams& qp, const Json& rec, const std::string& op,
                    const std::string& what, golden::Tally* t) {
  const std::vector<float> scale = FloatArray(rec.at("scale"));
  std::vector<int32_t> zp;
  for (const Json& z : rec.at("zero_point")) zp.push_back(z.get<int32_t>());
  ASSERT_EQ(qp.scale.size(), scale.size()) << what;
  for (size_t g = 0; g < scale.size(); ++g) {
    t->Add(op + " scale", SameBits(qp.scale[g], scale[g]),
           what + " got " + F(qp.scale[g]) + " want " + F(scale[g]));
    t->Add(op + " zero_point", qp.zero_point[g] == zp[g],
           absl::StrCat(what, " got ", qp.zero_point[g], " want ", zp[g]));
  }
}

void CompareRange(const std::vector<Range>& r, const Json& rec, const std::string& op,
                  const std::string& what, golden::Tally* t) {
  const std::vector<float> mn = FloatArray(rec.at("min_val"));
  const std::vector<float> mx = FloatArray(rec.at("max_val"));
  ASSERT_EQ(r.size(), mn.size());
  for (size_t g = 0; g < mn.size(); ++g) {
    t->Add(op + " min_val", SameBits(r[g].lo, mn[g]), what + " got " + F(r[g].lo) + " want " + F(mn[g]));
    t->Add(op + " max_val", SameBits(r[g].hi, mx[g]), what + " got " + F(r[g].hi) + " want " + F(mx[g]));
  }
}

std::unique_ptr<Observer> Make(const char* name, const QuantSpec& spec, YAML::Node params = {}) {
  ParamReader p(params, "test", "obs");
  auto obs = Registry<Observer>::Get().Create(name, p);
  EXPECT_TRUE(obs.ok()) << obs.status();
  EXPECT_TRUE(p.Finish().ok());
  EXPECT_TRUE((*obs)->Bind(spec).ok());
  return std::move(*obs);
}

Tensor InputTensor(const Json& inputs, const std::string& name) {
  const Json& in = inputs.at(name);
  return Tensor(in.at("shape").get<std::vector<int64_t>>(), FloatArray(in.at("x")));
}

// Runs the minmax-like section `section` with observer `name`.
void RunMinMaxSection(const Json& j, const std::string& section, const char* name, Granularity g,
                      golden::Tally* t) {
  for (const Json& rec : j.at(section)) {
    const std::string what = rec.at("input").get<std::string>() + " " + rec.at("config").dump();
    auto spec = SpecFromTorch(rec.at("config"), g);
    if (rec.contains("error")) {
      t->Add(section + " refused", !spec.ok(), what);
      continue;
    }
    ASSERT_TRUE(spec.ok()) << what << spec.status();
    t->Add(section + " quant_range",
           spec->quant_min == rec.at("quant_min").get<int64_t>() &&
               spec->quant_max == rec.at("quant_max").get<int64_t>(),
           what);
    YAML::Node params;
    if (section == "moving_average_minmax") params["averaging_constant"] = 0.01;
    auto obs = Make(name, *spec, params);
    const Tensor x = InputTensor(j.at("inputs"), rec.at("input").get<std::string>());
    if (section == "moving_average_minmax") {
      int step = 0;
      for (const Json& st : rec.at("steps")) {
        // batch j = input * (1 + 0.25 j) + 0.1 j in float32 ops.
        Tensor b = x;
        const float mul = static_cast<float>(1.0 + 0.25 * step);
        const float add = static_cast<float>(0.1 * step);
        for (int64_t i = 0; i < b.numel(); ++i) {
          const float m = b[i] * mul;
          b[i] = m + add;
        }
        ASSERT_TRUE(obs->Observe(b).ok());
        const std::string w = absl::StrCat(what, " step ", step);
        CompareRange(*obs->Ranges(), st, section, w, t);
        auto qp = obs->ComputeQParams();
        ASSERT_TRUE(qp.ok()) << qp.status();
        CompareQParams(*qp, st, section, w, t);
        ++step;
      }
      continue;
    }
    ASSERT_TRUE(obs->Observe(x).ok());
    CompareRange(*obs->Ranges(), rec, section, what, t);
    auto qp = obs->ComputeQParams();
    ASSERT_TRUE(qp.ok()) << qp.status();
    CompareQParams(*qp, rec, section, what, t);
  }
}

TEST(ObserversGolden, MinMaxMovingAveragePerChannel) {
  for (const std::string& path : golden::FilesFor("torch/observers.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    RunMinMaxSection(j, "minmax", "minmax", Granularity::kPerTensor, &t);
    RunMinMaxSection(j, "moving_average_minmax", "moving_average_minmax", Granularity::kPerTensor, &t);
    RunMinMaxSection(j, "per_channel_minmax", "per_channel_minmax", Granularity::kPerChannel, &t);
    t.Report({"minmax scale", "moving_average_minmax scale", "per_channel_minmax scale",
              "minmax refused"});
  }
}

TEST(ObserversGolden, HistogramSearchGivenStoredHistogram) {
  for (const std::string& path : golden::FilesFor("torch/observers.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    for (const Json& rec : j.at("histogram")) {
      const std::string what = rec.at("input").get<std::string>() + " " + rec.at("config").dump();
      auto spec = SpecFromTorch(rec.at("config"), Granularity::kPerTensor);
      ASSERT_TRUE(spec.ok());
      const std::vector<float> hist = FloatArray(rec.at("histogram"));
      const float mn = FloatScalar(rec.at("min_val")), mx = FloatScalar(rec.at("max_val"));
      const Range r = TorchNonLinearParamSearch(hist, mn, mx, rec.at("dst_nbins").get<int>());
      t.Add("histogram search_min", SameBits(r.lo, FloatScalar(rec.at("search_min"))),
            what + " got " + F(r.lo) + " want " + F(FloatScalar(rec.at("search_min"))));
      t.Add("histogram search_max", SameBits(r.hi, FloatScalar(rec.at("search_max"))),
            what + " got " + F(r.hi) + " want " + F(FloatScalar(rec.at("search_max"))));
      float scale;
      int32_t zp;
      ASSERT_TRUE(TorchObserverQParams(*spec, r.lo, r.hi, &scale, &zp).ok());
      CompareQParams(QParams::PerTensor(scale, zp, spec->quant_min, spec->quant_max), rec,
                     "histogram", what, &t);
    }
    t.Report({"histogram search_min", "histogram search_max", "histogram scale"});
  }
}

// The whole 1.13 pipeline (histc over truncated bounds, combination of
// batches, search with 256 destination bins) through the observer in compat mode.
TEST(ObserversGolden, HistogramPipelineTorch113Compat) {
  for (const std::string& path : golden::FilesFor("torch/observers.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    YAML::Node params;
    params["torch113_compat"] = true;
    auto check_state = [&](const Observer& obs, const Json& rec, const std::string& what) {
      const HistogramStats* h = obs.histogram();
      ASSERT_NE(h, nullptr);
      const std::vector<float> want = FloatArray(rec.at("histogram"));
      bool same = want.size() == h->counts.size();
      for (size_t b = 0; same && b < want.size(); ++b) same = SameBits(want[b], h->counts[b]);
      t.Add("histogram_compat histogram", same, what);
      if (!same) {  // show where they differ
        double got_sum = 0, want_sum = 0;
        int shown = 0;
        for (size_t k = 0; k < want.size() && k < h->counts.size(); ++k) {
          got_sum += h->counts[k];
          want_sum += want[k];
          if (want[k] != h->counts[k] && shown++ < 6) {
            std::printf("  bin %zu got %.9g want %.9g\n", k, h->counts[k], want[k]);
          }
        }
        std::printf("  %s: total got %.9g want %.9g\n", what.c_str(), got_sum, want_sum);
      }
      CompareRange(*obs.Ranges(), rec, "histogram_compat", what, &t);
      auto qp = obs.ComputeQParams();
      ASSERT_TRUE(qp.ok()) << qp.status();
      CompareQParams(*qp, rec, "histogram_compat", what, &t);
    };
    for (const Json& rec : j.at("histogram")) {
      const std::string what = rec.at("input").get<std::string>() + " " + rec.at("config").dump();
      auto spec = SpecFromTorch(rec.at("config"), Granularity::kPerTensor);
      ASSERT_TRUE(spec.ok());
      auto obs = Make("histogram", *spec, params);
      ASSERT_TRUE(obs->Observe(InputTensor(j.at("inputs"), rec.at("input").get<std::string>())).ok());
      check_state(*obs, rec, what);
    }
    for (const Json& rec : j.at("histogram_multi_batch")) {
      auto spec = SpecFromTorch(rec.at("config"), Granularity::kPerTensor);
      ASSERT_TRUE(spec.ok());
      auto obs = Make("histogram", *spec, params);
      int step = 0;
      for (const Json& st : rec.at("steps")) {
        const std::vector<float> x = FloatArray(st.at("x"));
        ASSERT_TRUE(obs->Observe(Tensor({static_cast<int64_t>(x.size())}, x)).ok());
        check_state(*obs, st, absl::StrCat(rec.at("name").get<std::string>(), " step ", step++));
      }
    }
    t.Report({"histogram_compat histogram", "histogram_compat scale"});
  }
}

TEST(ObserversGolden, FusedMovingAvgObsFakeQuantize) {
  for (const std::string& path : golden::FilesFor("torch/fused_moving_avg_obs_fake_quant.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally t(path);
    for (const Json& cs : j.at("cases")) {
      const Json& cfg = cs.at("config");
      const bool per_channel = cfg.at("qscheme").get<std::string>().find("per_channel") != std::string::npos;
      Json c2 = cfg;
      c2["dtype"] = cfg.at("dtype").get<std::string>();
      auto spec = SpecFromTorch(c2, per_channel ? Granularity::kPerChannel : Granularity::kPerTensor);
      ASSERT_TRUE(spec.ok()) << spec.status();
      YAML::Node params;
      params["averaging_constant"] = 0.01;
      auto obs = Make("fused_moving_average_minmax", *spec, params);
      const std::vector<int64_t> shape = cs.at("shape").get<std::vector<int64_t>>();
      int step = 0;
      for (const Json& st : cs.at("steps")) {
        const std::string what = absl::StrCat(cs.at("name").get<std::string>(), " ",
                                              cs.at("dist").get<std::string>(), " step ", step++);
        Tensor x(shape, FloatArray(st.at("x")));
        ASSERT_TRUE(obs->Observe(x).ok());
        CompareRange(*obs->Ranges(), st, "fused", what, &t);
        auto qp = obs->ComputeQParams();
        ASSERT_TRUE(qp.ok()) << qp.status();
        CompareQParams(*qp, st, "fused", what, &t);
        Tensor y, gx;
        std::vector<uint8_t> mask;
        ASSERT_TRUE(FakeQuantize(x, *qp, &y, &mask).ok());
        ASSERT_TRUE(FakeQuantizeBackward(Tensor::Filled(shape, 1.0f), mask, &gx).ok());
        const std::vector<float> wy = FloatArray(st.at("y")), wg = FloatArray(st.at("grad_x"));
        for (int64_t i = 0; i < x.numel(); ++i) {
          t.Add("fused y", SameBits(y[i], wy[i]), what + " y " + F(y[i]) + " want " + F(wy[i]));
          t.Add("fused grad_x", SameBits(gx[i], wg[i]), what);
        }
      }
    }
    t.Report({"fused y", "fused grad_x", "fused scale", "fused zero_point"});
  }
}

}  // namespace
}  // namespace quant
