// Fake quantization against PyTorch 1.13's vectors: values (as float32 bits)
// and the STE gradient, per tensor, per channel and FixedQParams.
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "quant/qmath/fake_quant.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::FloatArray;
using golden::FloatScalar;
using golden::FloatToBits;
using golden::Json;

std::string Detail(int c, int i, float x, float got, float want) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "case %d elem %d x=%.9g got %.9g want %.9g", c, i, x, got, want);
  return buf;
}

void CheckCases(const std::string& path, const Json& cases, bool per_channel,
                golden::Tally* tally) {
  int c = 0;
  for (const Json& cs : cases) {
    const std::vector<float> x = FloatArray(cs.at("x"));
    const std::vector<float> want_y = FloatArray(cs.at("y"));
    const std::vector<float> want_g = FloatArray(cs.at("grad_x"));
    QParams qp;
    qp.quant_min = cs.at("quant_min").get<int64_t>();
    qp.quant_max = cs.at("quant_max").get<int64_t>();
    std::vector<int64_t> shape = {static_cast<int64_t>(x.size())};
    if (per_channel) {
      qp.granularity = Granularity::kPerChannel;
      qp.axis = cs.at("axis").get<int>();
      qp.scale = FloatArray(cs.at("scale"));
      for (const Json& z : cs.at("zero_point")) qp.zero_point.push_back(z.get<int32_t>());
      shape = cs.at("shape").get<std::vector<int64_t>>();
    } else {
      qp.scale = {FloatScalar(cs.at("scale"))};
      const Json& z = cs.at("zero_point");
      qp.zero_point = {z.is_array() ? z[0].get<int32_t>() : z.get<int32_t>()};
    }
    Tensor in(shape, x);
    Tensor y;
    std::vector<uint8_t> mask;
    absl::Status s = FakeQuantize(in, qp, &y, &mask);
    ASSERT_TRUE(s.ok()) << s;
    Tensor grad_y = Tensor::Filled(shape, 1.0f), grad_x;
    ASSERT_TRUE(FakeQuantizeBackward(grad_y, mask, &grad_x).ok());
    ASSERT_EQ(want_y.size(), x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      tally->Add("y", FloatToBits(y[i]) == FloatToBits(want_y[i]),
                 Detail(c, static_cast<int>(i), x[i], y[i], want_y[i]));
      tally->Add("grad_x", FloatToBits(grad_x[i]) == FloatToBits(want_g[i]),
                 Detail(c, static_cast<int>(i), x[i], grad_x[i], want_g[i]));
    }
    ++c;
  }
}

TEST(FakeQuantGolden, PerTensor) {
  for (const std::string& path : golden::FilesFor("torch/fake_quant_per_tensor.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    CheckCases(path, j.at("cases"), false, &tally);
    tally.Report({"y", "grad_x"});
  }
}

TEST(FakeQuantGolden, PerChannel) {
  for (const std::string& path : golden::FilesFor("torch/fake_quant_per_channel.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    CheckCases(path, j.at("cases"), true, &tally);
    tally.Report({"y", "grad_x"});
  }
}

TEST(FakeQuantGolden, FixedQParams) {
  for (const std::string& path : golden::FilesFor("torch/fixed_qparams.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    CheckCases(path, j.at("cases"), false, &tally);
    tally.Report({"y", "grad_x"});
  }
}

}  // namespace
}  // namespace quant
