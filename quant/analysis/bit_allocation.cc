#include "quant/analysis/bit_allocation.h"

#include <glpk.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace quant::analysis {
namespace {

double Resource(const AllocationProblem& p, const AllocationChoice& c) {
  switch (p.budget_kind) {
    case AllocationProblem::Budget::kSizeBytes:
      return static_cast<double>(c.size_bytes);
    case AllocationProblem::Budget::kBops:
      return c.bops;
    case AllocationProblem::Budget::kLatency:
      return c.latency_seconds;
  }
  return 0;
}

double FixedResource(const AllocationProblem& p) {
  switch (p.budget_kind) {
    case AllocationProblem::Budget::kSizeBytes:
      return static_cast<double>(p.fixed_size_bytes);
    case AllocationProblem::Budget::kBops:
      return p.fixed_bops;
    case AllocationProblem::Budget::kLatency:
      return p.fixed_latency_seconds;
  }
  return 0;
}

const char* Unit(const AllocationProblem& p) {
  switch (p.budget_kind) {
    case AllocationProblem::Budget::kSizeBytes:
      return "bytes";
    case AllocationProblem::Budget::kBops:
      return "BOPs";
    case AllocationProblem::Budget::kLatency:
      return "seconds";
  }
  return "";
}

}  // namespace

absl::StatusOr<Allocation> SolveAllocation(const AllocationProblem& p) {
  const size_t layers = p.layers.size();
  if (layers == 0 || p.choices.size() != layers) {
    return absl::InvalidArgumentError("bit allocation: no layers to allocate bits to");
  }
  const char* unit = Unit(p);
  double smallest = FixedResource(p);
  std::vector<std::string> fewest;
  for (size_t k = 0; k < layers; ++k) {
    if (p.choices[k].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("bit allocation: layer '", p.layers[k], "' has no candidate"));
    }
    size_t best = 0;
    for (size_t c = 1; c < p.choices[k].size(); ++c) {
      if (Resource(p, p.choices[k][c]) < Resource(p, p.choices[k][best])) best = c;
    }
    smallest += Resource(p, p.choices[k][best]);
    fewest.push_back(
        absl::StrCat(p.layers[k], " W", p.choices[k][best].weight_bits, "A", p.choices[k][best].activation_bits));
  }
  if (p.budget < smallest) {
    auto amount = [&](double v) {
      return p.budget_kind == AllocationProblem::Budget::kLatency ? absl::StrFormat("%.6g", v)
                                                                  : absl::StrFormat("%.0f", v);
    };
    return absl::InvalidArgumentError(absl::StrCat(
        "bit allocation: the budget of ", amount(p.budget), " ", unit, " is infeasible; the smallest feasible is ",
        amount(smallest), " ", unit, " (every layer at its cheapest choice: ", absl::StrJoin(fewest, ", "), ")"));
  }

  glp_prob* lp = glp_create_prob();
  glp_set_obj_dir(lp, GLP_MIN);
  glp_add_rows(lp, static_cast<int>(layers) + 1);
  for (size_t k = 0; k < layers; ++k) glp_set_row_bnds(lp, static_cast<int>(k) + 1, GLP_FX, 1.0, 1.0);
  const double fixed = FixedResource(p);
  // The budget row in units of the room left (RHS 1): GLPK's tolerances are absolute, and
  // latencies (1e-5 s) or BOPs (1e8) would otherwise sit far from them.
  const double room = p.budget - fixed;
  const double unit_scale = room > 0 ? room : 1.0;
  glp_set_row_bnds(lp, static_cast<int>(layers) + 1, GLP_UP, 0.0, room / unit_scale);
  std::vector<int> ia{0}, ja{0};
  std::vector<double> ar{0.0};
  std::vector<std::pair<size_t, size_t>> column;  // (layer, choice) per column
  for (size_t k = 0; k < layers; ++k) {
    for (size_t c = 0; c < p.choices[k].size(); ++c) column.emplace_back(k, c);
  }
  glp_add_cols(lp, static_cast<int>(column.size()));
  for (size_t j = 0; j < column.size(); ++j) {
    const int col = static_cast<int>(j) + 1;
    const AllocationChoice& ch = p.choices[column[j].first][column[j].second];
    glp_set_col_kind(lp, col, GLP_BV);
    glp_set_obj_coef(lp, col, ch.cost);
    ia.push_back(static_cast<int>(column[j].first) + 1);
    ja.push_back(col);
    ar.push_back(1.0);
    ia.push_back(static_cast<int>(layers) + 1);
    ja.push_back(col);
    ar.push_back(Resource(p, ch) / unit_scale);
  }
  glp_load_matrix(lp, static_cast<int>(ia.size()) - 1, ia.data(), ja.data(), ar.data());
  glp_term_out(GLP_OFF);
  glp_iocp parm;
  glp_init_iocp(&parm);
  parm.presolve = GLP_ON;
  parm.tm_lim = static_cast<int>(std::min(p.time_limit_seconds * 1000.0, 2.0e9));
  parm.mip_gap = 0.0;
  const int ret = glp_intopt(lp, &parm);
  const int status = glp_mip_status(lp);
  if (ret != 0 || status != GLP_OPT) {
    const std::string why =
        ret == GLP_ETMLIM ? absl::StrFormat("the time limit of %.0f s ran out", p.time_limit_seconds)
        : status == GLP_NOFEAS || ret == GLP_ENOPFS ? std::string("no allocation meets the budget")
                                                    : absl::StrCat("glp_intopt returned ", ret, ", status ", status);
    glp_delete_prob(lp);
    return absl::FailedPreconditionError(absl::StrCat("bit allocation: GLPK found no proven optimum: ", why,
                                                      " (no heuristic allocation is used instead)"));
  }
  Allocation a;
  a.choice.assign(layers, -1);
  a.size_bytes = p.fixed_size_bytes;
  a.bops = p.fixed_bops;
  a.latency_seconds = p.fixed_latency_seconds;
  for (size_t j = 0; j < column.size(); ++j) {
    if (glp_mip_col_val(lp, static_cast<int>(j) + 1) > 0.5) {
      const auto [k, c] = column[j];
      a.choice[k] = static_cast<int>(c);
      const AllocationChoice& ch = p.choices[k][c];
      a.cost += ch.cost;
      a.size_bytes += ch.size_bytes;
      a.bops += ch.bops;
      a.latency_seconds += ch.latency_seconds;
    }
  }
  glp_delete_prob(lp);
  for (size_t k = 0; k < layers; ++k) {
    if (a.choice[k] < 0) return absl::InternalError(absl::StrCat("bit allocation: no choice for '", p.layers[k], "'"));
  }
  const double used = p.budget_kind == AllocationProblem::Budget::kSizeBytes ? static_cast<double>(a.size_bytes)
                      : p.budget_kind == AllocationProblem::Budget::kBops    ? a.bops
                                                                             : a.latency_seconds;
  if (used > p.budget * (1 + 1e-9)) {
    return absl::InternalError(
        absl::StrFormat("bit allocation: GLPK's answer uses %.9g %s, over the budget of %.9g", used, unit, p.budget));
  }
  a.solver = absl::StrCat("GLPK ", glp_version(), " branch-and-cut: proven optimum");
  return a;
}

}  // namespace quant::analysis
