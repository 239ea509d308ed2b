// The comparison table: one row per registered format, properties and SQNR
// figures that theory predicts.
#include "quant/formats/format_table.h"

#include <cmath>
#include <map>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/formats/number_format.h"

namespace quant {
namespace {

TEST(FormatTableTest, RowsAndFigures) {
  auto rows = ComputeFormatTable(1 << 15, 0);
  ASSERT_TRUE(rows.ok()) << rows.status();
  std::map<std::string, FormatTableRow> by;
  for (const auto& r : *rows) by[r.key] = r;
  EXPECT_EQ(by.size(), Registry<NumberFormat>::Get().Names().size());
  EXPECT_TRUE(std::isinf(by["fp32"].sqnr_normal_db));
  EXPECT_NEAR(by["fp16"].range_binades, 40.0, 0.001);  // log2(65504 / 2^-24)
  EXPECT_EQ(by["mxfp8_e4m3"].bits_per_value, 8.25);
  // A p-bit significand gives about 6.02 p + 1.2 dB on smooth data
  // (uniform error of relative size 2^-p / sqrt(12) per binade).
  EXPECT_NEAR(by["fp16"].sqnr_normal_db, 6.02 * 11 + 7.3, 1.5);
  EXPECT_NEAR(by["bf16"].sqnr_normal_db, 6.02 * 8 + 7.3, 1.5);
  EXPECT_NEAR(by["fp16"].sqnr_normal_db, by["tf32"].sqnr_normal_db, 0.2);
  // Ordering facts: posit16 beats fp16 near 1; fp8_e4m3 saturates at 448 on log-uniform data
  // (up to 1e4) while E5M2 keeps its range.
  EXPECT_GT(by["posit16"].sqnr_normal_db, by["fp16"].sqnr_normal_db);
  EXPECT_LT(by["fp8_e4m3"].sqnr_loguniform_db, 5);
  EXPECT_GT(by["fp8_e5m2"].sqnr_loguniform_db, 20);
  // MX shared scales keep the log-uniform data (wide range) that fp8 alone clips.
  EXPECT_GT(by["mxfp8_e4m3"].sqnr_loguniform_db, 25);
  const std::string md = FormatTableMarkdown(*rows);
  EXPECT_THAT(md, ::testing::HasSubstr("| posit16 | posit<16,2> | 16 |"));
  EXPECT_THAT(md, ::testing::HasSubstr("| fp32 | fp32 | 32 |"));
}

TEST(FormatTableTest, Sqnr) {
  EXPECT_TRUE(std::isinf(SqnrDb({1, 2}, {1, 2})));
  EXPECT_NEAR(SqnrDb({1, 1}, {1.1f, 0.9f}), 20.0, 1e-5);
  EXPECT_TRUE(std::isnan(SqnrDb({1}, {NAN})));
}

}  // namespace
}  // namespace quant
