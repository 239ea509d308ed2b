// OCP OFP8 E4M3 / E5M2 against tests/golden/formats/fp8_*.json (decode tables,
// float32 conversion saturating and not). Where universal deviates from the
// OFP8 specification (E5M2 saturating, +-inf: the cell is null and listed in
// `universal_deviations`) the specification's answer is expected.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/formats/format_test_util.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::Json;
using testing_util::Hex;
using testing_util::MakeFormat;

int Col(const Json& table, const std::string& name) { return golden::ColumnIndex(table, name); }

void CheckFp8(const std::string& name) {
  auto sat = MakeFormat(name, "{overflow: saturate}");
  auto nonsat = MakeFormat(name, "{overflow: format}");
  ASSERT_TRUE(sat && nonsat);
  for (const std::string& path : golden::FilesFor("formats/" + name + ".json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    const Json& dec = j.at("decode");
    const int cb = Col(dec, "bits"), c64 = Col(dec, "value_f64_hex"), c32 = Col(dec, "value_f32_hex");
    for (const Json& row : dec.at("rows")) {
      const uint32_t bits = golden::ParseHex(row[cb]);
      const double got = sat->DecodeExact(bits);
      const float got32 = sat->Decode(bits);
      if (row[c64].is_null()) {
        tally.Add("decode", std::isnan(got) && std::isnan(got32), Hex(bits));
      } else {
        const double want = golden::BitsToDouble(golden::ParseHex(row[c64]));
        const uint32_t want32 = golden::ParseHex(row[c32]);
        tally.Add("decode", got == want && std::signbit(got) == std::signbit(want) &&
                                golden::FloatToBits(got32) == want32,
                  Hex(bits));
      }
    }
    const Json& conv = j.at("convert_from_f32");
    std::map<std::pair<std::string, uint32_t>, uint32_t> spec_expected;
    for (const Json& dev : conv.at("universal_deviations")) {
      spec_expected[{dev["policy"], golden::ParseHex(dev["input_f32_hex"])}] =
          golden::ParseHex(dev["spec_expected"]);
    }
    const int ci = Col(conv, "input_f32_hex"), cs = Col(conv, "bits_saturating"),
              cn = Col(conv, "bits_nonsaturating");
    // The span fake-quant must give the decoded golden patterns (NaN for NaN).
    std::vector<float> inputs;
    for (const Json& row : conv.at("rows")) inputs.push_back(golden::BitsToFloat(golden::ParseHex(row[ci])));
    std::vector<float> round_sat(inputs.size()), round_nonsat(inputs.size());
    sat->RoundSpan(inputs, absl::MakeSpan(round_sat));
    nonsat->RoundSpan(inputs, absl::MakeSpan(round_nonsat));
    size_t r = 0;
    for (const Json& row : conv.at("rows")) {
      const uint32_t xb = golden::ParseHex(row[ci]);
      const float x = golden::BitsToFloat(xb);
      for (int policy = 0; policy < 2; ++policy) {
        const Json& cell = row[policy == 0 ? cs : cn];
        const std::string pname = policy == 0 ? "sat" : "nonsat";
        uint32_t want;
        if (cell.is_null()) {
          auto it = spec_expected.find({pname, xb});
          ASSERT_NE(it, spec_expected.end()) << "null cell without deviation " << Hex(xb);
          want = it->second;
        } else {
          want = golden::ParseHex(cell);
        }
        NumberFormat* f = policy == 0 ? sat.get() : nonsat.get();
        const uint32_t got = f->Encode(x);
        tally.Add("convert_" + pname, got == want,
                  "x=" + Hex(xb) + " got " + Hex(got) + " want " + Hex(want));
        const float rounded = policy == 0 ? round_sat[r] : round_nonsat[r];
        const float want_value = f->Decode(want);
        tally.Add("round_span_" + pname,
                  std::isnan(want_value) ? std::isnan(rounded)
                                         : golden::FloatToBits(rounded) == golden::FloatToBits(want_value),
                  "x=" + Hex(xb));
      }
      ++r;
    }
    tally.Report({"decode", "convert_sat", "convert_nonsat"});
  }
}

TEST(Fp8GoldenTest, E4M3) { CheckFp8("fp8_e4m3"); }
TEST(Fp8GoldenTest, E5M2) { CheckFp8("fp8_e5m2"); }

}  // namespace
}  // namespace quant
