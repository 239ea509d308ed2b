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
  return p.budget_kind == AllocationProblem::Budget::kSizeBytes ? static_cast<double>(c.size_bytes) : c.bops;
}

}  // namespace

absl::StatusOr<Allocation> SolveAllocation(const AllocationProblem& p) {
  const size_t layers = p.layers.size();
  if (layers == 0 || p.choices.size() != layers) {
    return absl::InvalidArgumentError("bit allocation: no layers to allocate bits to");
  }
  const char* unit = p.budget_kind == AllocationProblem::Budget::kSizeBytes ? "bytes" : "BOPs";
  double smallest =
      p.budget_kind == AllocationProblem::Budget::kSizeBytes ? static_cast<double>(p.fixed_size_bytes) : p.fixed_bops;
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
    return absl::InvalidArgumentError(absl::StrFormat(
        "bit allocation: the budget of %.0f %s is infeasible; the smallest feasible is %.0f %s (every layer at its "
        "fewest bits: %s)",
        p.budget, unit, smallest, unit, absl::StrJoin(fewest, ", ")));
  }

  glp_prob* lp = glp_create_prob();
  glp_set_obj_dir(lp, GLP_MIN);
  glp_add_rows(lp, static_cast<int>(layers) + 1);
  for (size_t k = 0; k < layers; ++k) glp_set_row_bnds(lp, static_cast<int>(k) + 1, GLP_FX, 1.0, 1.0);
  const double fixed =
      p.budget_kind == AllocationProblem::Budget::kSizeBytes ? static_cast<double>(p.fixed_size_bytes) : p.fixed_bops;
  glp_set_row_bnds(lp, static_cast<int>(layers) + 1, GLP_UP, 0.0, p.budget - fixed);
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
    ar.push_back(Resource(p, ch));
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
  for (size_t j = 0; j < column.size(); ++j) {
    if (glp_mip_col_val(lp, static_cast<int>(j) + 1) > 0.5) {
      const auto [k, c] = column[j];
      a.choice[k] = static_cast<int>(c);
      const AllocationChoice& ch = p.choices[k][c];
      a.cost += ch.cost;
      a.size_bytes += ch.size_bytes;
      a.bops += ch.bops;
    }
  }
  glp_delete_prob(lp);
  for (size_t k = 0; k < layers; ++k) {
    if (a.choice[k] < 0) return absl::InternalError(absl::StrCat("bit allocation: no choice for '", p.layers[k], "'"));
  }
  a.solver = absl::StrCat("GLPK ", glp_version(), " branch-and-cut: proven optimum");
  return a;
}

}  // namespace quant::analysis
