// posit<8,0>, <8,2>, <16,1>, <16,2>, <32,2> against tests/golden/formats/posit*.json:
// the decode tables (exact, as binary64) and float32 -> posit rounding.
#include <cmath>
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

void CheckPosit(int n, int es) {
  const std::string file = "formats/posit" + std::to_string(n) + "_" + std::to_string(es) + ".json";
  auto f = MakeFormat("posit", "{n: " + std::to_string(n) + ", es: " + std::to_string(es) + "}");
  ASSERT_TRUE(f);
  for (const std::string& path : golden::FilesFor(file)) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    const Json& dec = j.at("decode");
    const int cb = Col(dec, "bits"), cv = Col(dec, "value_f64_hex");
    for (const Json& row : dec.at("rows")) {
      const uint32_t bits = golden::ParseHex(row[cb]);
      const double got = f->DecodeExact(bits);
      if (row[cv].is_null()) {
        tally.Add("decode", std::isnan(got), Hex(bits));
      } else {
        const double want = golden::BitsToDouble(golden::ParseHex(row[cv]));
        tally.Add("decode", got == want, Hex(bits) + " got " + std::to_string(got));
      }
    }
    const Json& conv = j.at("round_from_f32");
    const int ci = Col(conv, "input_f32_hex"), cp = Col(conv, "posit_bits");
    std::vector<float> inputs;
    for (const Json& row : conv.at("rows")) inputs.push_back(golden::BitsToFloat(golden::ParseHex(row[ci])));
    std::vector<float> rounded(inputs.size());
    f->RoundSpan(inputs, absl::MakeSpan(rounded));
    size_t r = 0;
    for (const Json& row : conv.at("rows")) {
      const uint32_t xb = golden::ParseHex(row[ci]);
      {
        // Fake-quant: the golden posit's value rounded to float32 (NaR -> NaN).
        const double exact = f->DecodeExact(golden::ParseHex(row[cp]));
        const float want_value = static_cast<float>(exact);
        tally.Add("round_span", std::isnan(exact) ? std::isnan(rounded[r])
                                    : golden::FloatToBits(rounded[r]) == golden::FloatToBits(want_value),
                  "x=" + Hex(xb));
        ++r;
      }
      const uint32_t want = golden::ParseHex(row[cp]);
      const uint32_t got = f->Encode(golden::BitsToFloat(xb));
      tally.Add("round_from_f32", got == want,
                "x=" + Hex(xb) + " got " + Hex(got) + " want " + Hex(want));
    }
    tally.Report({"decode", "round_from_f32"});
  }
}

TEST(PositGoldenTest, Posit8_0) { CheckPosit(8, 0); }
TEST(PositGoldenTest, Posit8_2) { CheckPosit(8, 2); }
TEST(PositGoldenTest, Posit16_1) { CheckPosit(16, 1); }
TEST(PositGoldenTest, Posit16_2) { CheckPosit(16, 2); }
TEST(PositGoldenTest, Posit32_2) { CheckPosit(32, 2); }

}  // namespace
}  // namespace quant
