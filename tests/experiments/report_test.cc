// The report: tables (seeds aggregated, curated cells), plots (real PNGs from matplotlib), a
// self-contained HTML page, and Markdown files updated between their markers.
#include "experiments/report.h"

#include <cstdio>
#include <filesystem>
#include <string>

#include "experiments/report_tables.h"
#include "experiments/results_db.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/experiments/driver_test_util.h"

namespace quant {
namespace {

namespace fs = std::filesystem;
using driver_test::Read;
using driver_test::TmpDir;
using driver_test::Write;
using ::testing::HasSubstr;
using ::testing::Not;

quantlab::ResultRecord Record(const std::string& name, double trained, double reference, int seed) {
  quantlab::ResultRecord r;
  r.set_name(name);
  r.set_config_id("0123456789abcdef");
  r.set_status(quantlab::ResultRecord::OK);
  r.set_seed(seed);
  r.set_start_time("2026-12-02T00:00:0" + std::to_string(seed) + "Z");
  r.add_overrides("quant.weights.bits=4");
  r.add_overrides("seed=" + std::to_string(seed));
  (*r.mutable_metrics())["final_test_accuracy"] = trained;
  (*r.mutable_metrics())["ptq_packed_model_bytes"] = 20000 + 100 * seed;
  auto* b = r.add_backends();
  b->set_backend("reference");
  b->set_test_accuracy(reference);
  b->set_images_per_s_batch1(1000);
  b->set_images_per_s_batch256(5000);
  for (int e = 0; e < 2; ++e) {
    auto* epoch = r.add_epochs();
    epoch->set_epoch(e + 1);
    epoch->set_test_accuracy(trained - 0.01 * (1 - e));
    epoch->set_seconds(1.5);
  }
  auto* t = r.add_debug_tensors();
  t->set_tensor("conv1");
  t->set_op("conv1");
  t->set_kind("conv2d");
  t->set_scale(0.05f);
  t->set_zero_point(-128);
  t->set_quant_min(-128);
  t->set_quant_max(127);
  t->set_sqnr_db(30 + seed);
  t->set_histogram_min(0);
  t->set_histogram_max(12);
  for (int k = 0; k < 64; ++k) t->add_histogram(1000 / (k + 1));
  return r;
}

const char kConfig[] =
    "name: q\nmodel: {name: cnn}\ntrain: {scheme: qat}\nquant: {weights: {quantizer: lsq, bits: 4}, "
    "activations: {bits: 8}}\nptq: {method: from_qat}\n";

// Three seeds of one configuration (0.85, 0.87, 0.89 on reference) and one other run.
std::string MakeDb(const std::string& dir) {
  const std::string path = dir + "/results.db";
  auto db = ResultsDb::Open(path);
  EXPECT_TRUE(db.ok()) << db.status();
  const double reference[] = {0.85, 0.87, 0.89};
  for (int seed = 0; seed < 3; ++seed) {
    const std::string name = "q__bits=4__seed=" + std::to_string(seed);
    EXPECT_TRUE(
        db->Insert(Record(name, 0.9, reference[seed], seed), dir + "/" + name + "-0123456789abcdef", kConfig).ok());
  }
  EXPECT_TRUE(db->Insert(Record("base", 0.91, 0.905, 0), dir + "/base-0123456789abcdef", kConfig).ok());
  return path;
}

TEST(ReportTest, CellsEvaluateOnTheLatestRunOrTheSeedGroup) {
  const std::string dir = TmpDir("report_cells");
  auto runs = LoadReportRuns(MakeDb(dir), "");
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 4u);
  EXPECT_EQ((*runs)[1].seed_group, "q__bits=4");
  EXPECT_EQ((*runs)[1].family, "q");
  auto cell = [&](const std::string& text) {
    auto v = EvaluateCell(text, *runs);
    return v.ok() ? *v : "error: " + std::string(v.status().message());
  };
  EXPECT_EQ(cell("{trained@base}"), "91.00 %");
  EXPECT_EQ(cell("{backend.reference@base|n}"), "90.50");
  EXPECT_EQ(cell("{backend.reference@q__bits=4__seed=1}"), "87.00 %");
  // A seed group: the mean; |ci the mean ± 95 % CI by hand: s = 0.02, 4.3027 * 0.02 / sqrt(3) = 0.0497.
  EXPECT_EQ(cell("{backend.reference@q__bits=4}"), "87.00 %");
  EXPECT_EQ(cell("{backend.reference@q__bits=4|ci}"), "87.00 ± 4.97 (n=3)");
  EXPECT_EQ(cell("x {backend.reference@q__bits=4 - backend.reference@base|+} y"), "x -3.50 y");
  EXPECT_EQ(cell("{backend.xnnpack@base}"), "-");
  EXPECT_EQ(cell("{trained@absent}"), "not run");
  EXPECT_EQ(cell("`configs/{{mlp,cnn}}_fp32.yaml`"), "`configs/{mlp,cnn}_fp32.yaml`");
  EXPECT_EQ(cell("{metric.ptq_packed_model_bytes@base|g}"), "20000");
  EXPECT_THAT(cell("{accuracy@base}"), HasSubstr("unknown field 'accuracy'"));
  EXPECT_THAT(cell("{trained@base|%%}"), HasSubstr("unknown format"));
  EXPECT_THAT(cell("{trained@base"), HasSubstr("a { without }"));
}

TEST(ReportTest, WritesTablesPlotsAndASelfContainedPage) {
  const std::string dir = TmpDir("report_full");
  const std::string db = MakeDb(dir);
  const std::string tables = Write(dir + "/tables.yaml",
                                   "tables:\n"
                                   "  - id: t1\n"
                                   "    title: One table\n"
                                   "    header: [what, \"{m} reference\"]\n"
                                   "    repeat: {var: m, values: [q__bits=4, base], first: 1, count: 1}\n"
                                   "    rows:\n"
                                   "      - [accuracy, \"{backend.reference@{m}|ci}\"]\n");
  const std::string readme =
      Write(dir + "/README.md", "intro\n<!-- report:t1 -->\nold table\n<!-- /report:t1 -->\nend\n");
  const std::string out = dir + "/report";
  const driver_test::Result r = driver_test::RunCommand("experiments/report --db=" + db + " --out=" + out +
                                                        " --tables=" + tables + " --update=" + readme);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string md = Read(out + "/report.md");
  // The sweep table: the seed group aggregated as computed by hand.
  EXPECT_THAT(md, HasSubstr("### q (3 runs, up to 3 seeds: mean ± 95 % CI)"));
  EXPECT_THAT(md, HasSubstr("| bits=4 | 90.00 ± 0.00 (n=3) | 87.00 ± 4.97 (n=3) | 1.50 ± 0.00 (n=3) |"));
  EXPECT_THAT(md, HasSubstr("| what | q__bits=4 reference | base reference |\n| --- | --- | --- |\n"
                            "| accuracy | 87.00 ± 4.97 (n=3) | 90.50 (n=1) |"));
  for (const char* png : {"accuracy_vs_bits.png", "accuracy_vs_size.png", "backend_speed.png", "training_q.png",
                          "histograms_q_cnn.png"}) {
    const std::string bytes = Read(out + "/plots/" + png);
    ASSERT_GT(bytes.size(), 1000u) << png;
    EXPECT_EQ(bytes.substr(1, 3), "PNG") << png;
    EXPECT_THAT(md, HasSubstr(std::string("(plots/") + png + ")"));
  }
  const std::string html = Read(out + "/report.html");
  EXPECT_THAT(html, HasSubstr("<img alt=\"Training: q\" src=\"data:image/png;base64,iVBORw0KGgo"));
  EXPECT_THAT(html, Not(HasSubstr("src=\"http")));
  EXPECT_THAT(html, Not(HasSubstr("src=\"plots/")));
  EXPECT_THAT(html, HasSubstr("<td>87.00 ± 4.97 (n=3)</td>"));
  EXPECT_EQ(Read(readme),
            "intro\n<!-- report:t1 -->\n| what | q__bits=4 reference | base reference |\n| --- | --- | --- |\n"
            "| accuracy | 87.00 ± 4.97 (n=3) | 90.50 (n=1) |\n<!-- /report:t1 -->\nend\n");
}

TEST(ReportTest, BadInputsAreClearErrors) {
  const std::string dir = TmpDir("report_bad");
  driver_test::Result r = driver_test::RunCommand("experiments/report --db=" + dir + "/absent.db --out=" + dir + "/o");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("absent.db: no results database"));
  EXPECT_FALSE(fs::exists(dir + "/o"));

  const std::string db = MakeDb(dir);
  Write(dir + "/bad_tables.yaml", "tables:\n  - id: t\n    header: [a, b]\n    rows:\n      - [x]\n");
  r = driver_test::RunCommand("experiments/report --db=" + db + " --out=" + dir + "/o --tables=" + dir +
                              "/bad_tables.yaml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("bad_tables.yaml:5:9: tables[0] (t) row 1: has 1 cells; the header has 2"));
  EXPECT_FALSE(fs::exists(dir + "/o/report.html"));

  Write(dir + "/tables.yaml", "tables:\n  - id: t\n    header: [a]\n    rows:\n      - [x]\n");
  const std::string readme = Write(dir + "/README.md", "no markers\n");
  r = driver_test::RunCommand("experiments/report --db=" + db + " --out=" + dir + "/o2 --tables=" + dir +
                              "/tables.yaml --update=" + readme);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("README.md: no \"<!-- report:t -->\""));
  EXPECT_EQ(Read(readme), "no markers\n");
}

}  // namespace
}  // namespace quant
