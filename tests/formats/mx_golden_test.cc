// OCP MX blocks against tests/golden/formats/mx_blocks.json: shared E8M0 scale,
// element patterns and dequantized values for E4M3, E5M2, E3M2, E2M3, E2M1
// elements; MXINT8 (not in the file) against the README's worked example.
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/formats/block_format.h"
#include "tests/formats/format_test_util.h"
#include "tests/golden/golden_util.h"

namespace quant {
namespace {

using golden::Json;
using testing_util::Hex;
using testing_util::MakeFormat;

int Col(const Json& table, const std::string& name) { return golden::ColumnIndex(table, name); }

TEST(MxGoldenTest, BlocksMatchSpecification) {
  const std::map<std::string, std::string> formats = {{"E4M3", "mxfp8_e4m3"},
                                                      {"E5M2", "mxfp8_e5m2"},
                                                      {"E3M2", "mxfp6_e3m2"},
                                                      {"E2M3", "mxfp6_e2m3"},
                                                      {"E2M1", "mxfp4_e2m1"}};
  for (const std::string& path : golden::FilesFor("formats/mx_blocks.json")) {
    const Json j = golden::LoadJson(path);
    ASSERT_FALSE(j.is_null());
    golden::Tally tally(path);
    std::map<int, std::vector<float>> inputs;
    const Json& blocks = j.at("blocks");
    const int cbi = Col(blocks, "block"), cin = Col(blocks, "inputs_f32_hex");
    for (const Json& row : blocks.at("rows")) {
      std::vector<float> v;
      for (const Json& h : row[cin]) v.push_back(golden::BitsToFloat(golden::ParseHex(h)));
      inputs[row[cbi].get<int>()] = v;
    }
    std::vector<std::string> ops;
    for (const auto& [elem, name] : formats) {
      auto base = MakeFormat(name);
      ASSERT_TRUE(base);
      auto* f = dynamic_cast<BlockFormat*>(base.get());
      ASSERT_NE(f, nullptr);
      const Json& res = j.at("results_" + elem);
      const int cb = Col(res, "block"), cs = Col(res, "scale_e8m0"), cz = Col(res, "all_zero_block"),
                ce = Col(res, "elements"), cd = Col(res, "dequantized_f32_hex");
      for (const Json& row : res.at("rows")) {
        const std::vector<float>& in = inputs.at(row[cb].get<int>());
        ASSERT_EQ(in.size(), 32u);
        std::vector<uint32_t> elements(32);
        const uint32_t scale = f->EncodeBlock(in, absl::MakeSpan(elements));
        const std::string d = elem + " block " + std::to_string(row[cb].get<int>());
        if (!row[cz].get<bool>()) {
          const uint32_t want = golden::ParseHex(row[cs]);
          tally.Add(elem + "_scale", scale == want, d + " got " + Hex(scale) + " want " + Hex(want));
        }
        std::vector<float> deq(32), rounded(32);
        f->DecodeBlock(scale, elements, absl::MakeSpan(deq));
        f->RoundSpan(in, absl::MakeSpan(rounded));
        for (int i = 0; i < 32; ++i) {
          const uint32_t want_e = golden::ParseHex(row[ce][i]);
          const uint32_t want_d = golden::ParseHex(row[cd][i]);
          const std::string di = d + " [" + std::to_string(i) + "]";
          tally.Add(elem + "_elements", elements[i] == want_e,
                    di + " got " + Hex(elements[i]) + " want " + Hex(want_e));
          tally.Add(elem + "_dequantized", golden::FloatToBits(deq[i]) == want_d, di);
          tally.Add(elem + "_round_span", golden::FloatToBits(rounded[i]) == want_d, di);
        }
      }
      ops.push_back(elem + "_scale");
      ops.push_back(elem + "_elements");
    }
    tally.Report(ops);
  }
}

TEST(MxTest, MxInt8FollowsTheSpecNotUniversal) {
  auto base = MakeFormat("mxint8");
  ASSERT_TRUE(base);
  auto* f = dynamic_cast<BlockFormat*>(base.get());
  std::vector<float> in(32, 0.5f);
  in[0] = 1.0f;
  std::vector<uint32_t> e(32);
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0x7fu);
  EXPECT_EQ(e[0], 0x40u);
  EXPECT_EQ(e[1], 0x20u);
  // Block max just below 2: 1.9999 / 1 * 64 = 127.99 -> 128 -> clamped to 127.
  in[0] = -1.9999f;
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0x7fu);
  EXPECT_EQ(e[0], 0x81u);  // -127
  std::vector<float> out(32);
  f->RoundSpan(in, absl::MakeSpan(out));
  EXPECT_EQ(out[0], -127.0f / 64);
  EXPECT_EQ(out[1], 0.5f);
}

TEST(MxTest, ScaleIsExactJustBelowPowersOfTwo) {
  // The README's universal deviation: 127.99999 (0x42ffffff) must give 0x7d for E4M3.
  auto base = MakeFormat("mxfp8_e4m3");
  auto* f = dynamic_cast<BlockFormat*>(base.get());
  std::vector<float> in(32, 0.0f);
  in[3] = golden::BitsToFloat(0x42ffffff);
  std::vector<uint32_t> e(32);
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0x7du);
  in[3] = golden::BitsToFloat(0x3d7ffffe);
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0x72u);
  in[3] = golden::BitsToFloat(0x3afffffe);
  EXPECT_EQ(f->EncodeBlock(in, absl::MakeSpan(e)), 0x6du);
}

TEST(MxTest, SpecialBlocksAndTails) {
  auto f = MakeFormat("mxfp4_e2m1");
  // NaN or inf anywhere: the whole block is NaN; the next block is unaffected.
  std::vector<float> in(40, 1.0f), out(40);
  in[5] = INFINITY;
  f->RoundSpan(in, absl::MakeSpan(out));
  for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
  // Tail block of 8 scaled by its own max: 1.0 -> exactly 1.
  for (int i = 32; i < 40; ++i) EXPECT_EQ(out[i], 1.0f) << i;
  // The tail's scale is independent: a small tail next to a big block.
  std::vector<float> in2(33, 1000.0f), out2(33);
  in2[32] = 0.3f;
  f->RoundSpan(in2, absl::MakeSpan(out2));
  // Own scale: s = floor(log2 0.3) - 2 = -4, 0.3 * 16 = 4.8 -> 4 -> 0.25.
  // (With the first block's scale 2^7 it would have flushed to 0.)
  EXPECT_EQ(out2[32], 0.25f);
  // 1000: s = 9 - 2 = 7, 1000 / 128 = 7.8 is above E2M1's max 6: clamped (the MX rule).
  EXPECT_EQ(out2[0], 768.0f);

}

}  // namespace
}  // namespace quant
