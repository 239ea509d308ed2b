#include "experiments/sweep_summary.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace quant {
namespace {

using ::testing::HasSubstr;

TEST(SweepSummaryTest, StudentTQuantilesMatchTheTables) {
  // t(0.975, df) from the standard tables (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2).
  EXPECT_NEAR(StudentT975(1), 12.706, 1e-3);
  EXPECT_NEAR(StudentT975(2), 4.303, 1e-3);
  EXPECT_NEAR(StudentT975(4), 2.776, 1e-3);
  EXPECT_NEAR(StudentT975(9), 2.262, 1e-3);
  EXPECT_NEAR(StudentT975(30), 2.042, 1e-3);
  EXPECT_NEAR(StudentT975(100), 1.984, 1e-3);
  EXPECT_NEAR(StudentT975(100000), 1.960, 1e-3);
  EXPECT_TRUE(std::isnan(StudentT975(0)));
}

TEST(SweepSummaryTest, AggregateEqualsAHandComputation) {
  // 0.85, 0.87, 0.89: mean 0.87, s = sqrt((0.02^2 + 0 + 0.02^2) / 2) = 0.02,
  // half-width = 4.302653 * 0.02 / sqrt(3) = 0.0496828.
  const MeanCi m = Aggregate({0.85, 0.87, 0.89});
  EXPECT_EQ(m.n, 3);
  EXPECT_NEAR(m.mean, 0.87, 1e-12);
  EXPECT_NEAR(m.stddev, 0.02, 1e-12);
  EXPECT_NEAR(m.half_width, 4.302653 * 0.02 / std::sqrt(3.0), 1e-6);
  EXPECT_EQ(FormatMeanCi(m, true), "87.00 ± 4.97 (n=3)");
  const MeanCi one = Aggregate({0.5});
  EXPECT_EQ(one.n, 1);
  EXPECT_EQ(one.half_width, 0);
  EXPECT_EQ(FormatMeanCi(one, true), "50.00 (n=1)");
}

quantlab::ResultRecord Record(double trained, double reference, double epoch_seconds) {
  quantlab::ResultRecord r;
  r.set_status(quantlab::ResultRecord::OK);
  (*r.mutable_metrics())["final_test_accuracy"] = trained;
  auto* b = r.add_backends();
  b->set_backend("reference");
  b->set_test_accuracy(reference);
  r.add_epochs()->set_seconds(epoch_seconds);
  return r;
}

TEST(SweepSummaryTest, TableShowsEachMemberAndTheSeedGroups) {
  EXPECT_EQ(SeedGroup("q__bits=4__seed=12"), "q__bits=4");
  EXPECT_EQ(SeedGroup("q__seed=1__bits=4"), "q__bits=4");
  std::vector<SummaryRow> rows;
  const double reference[] = {0.85, 0.87, 0.89};
  for (int seed = 0; seed < 3; ++seed) {
    rows.push_back(SummaryRow{"q__seed=" + std::to_string(seed), "00000000000000a" + std::to_string(seed), "ok", 1.5,
                              "", Record(0.9, reference[seed], 2.0 + seed)});
  }
  rows.push_back(SummaryRow{"broken", "00000000000000ff", "failed", 0.2, "cannot open x", std::nullopt});
  const std::string table = FormatSummary(rows);
  EXPECT_THAT(table, HasSubstr("experiment  id                status  seconds  trained %  reference %  epoch s\n"));
  EXPECT_THAT(table, HasSubstr("q__seed=1   00000000000000a1  ok          1.5      90.00        87.00     3.00\n"));
  EXPECT_THAT(table, HasSubstr("broken      00000000000000ff  failed      0.2          -            -        -\n"));
  EXPECT_THAT(table, HasSubstr("\nbroken: cannot open x\n"));
  // The hand computation above, and epoch seconds 2, 3, 4: mean 3, s 1, 4.30 * 1 / sqrt(3) = 2.48.
  EXPECT_THAT(table, HasSubstr("q           90.00 ± 0.00 (n=3)  87.00 ± 4.97 (n=3)  3.00 ± 2.48 (n=3)\n")) << table;
}

}  // namespace
}  // namespace quant
