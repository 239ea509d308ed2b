// Mixed-precision bit allocation as an integer linear program (HAWQ-V3's formulation),
// solved by GLPK's branch-and-cut (Debian libglpk-dev):
//
//   minimise    sum_k sum_c cost[k][c] x[k][c]
//   subject to  sum_c x[k][c] = 1                          (one choice per layer)
//               sum_k sum_c size[k][c] x[k][c] <= budget    (bytes), or
//               sum_k sum_c bops[k][c] x[k][c] <= budget    (bit operations), or
//               sum_k sum_c time[k][c] x[k][c] <= budget    (measured seconds)
//               x binary
//
// A budget below the smallest achievable one is an InvalidArgument naming that
// smallest value; a solver that stops without a proven optimum is an error too (no
// heuristic answer is ever returned in its place).
#ifndef QUANT_ANALYSIS_BIT_ALLOCATION_H_
#define QUANT_ANALYSIS_BIT_ALLOCATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace quant::analysis {

struct AllocationChoice {
  int weight_bits = 8;
  int activation_bits = 8;
  double cost = 0;             // the sensitivity of this layer at these bits
  int64_t size_bytes = 0;      // what this layer's choice adds to the model size
  double bops = 0;             // MACs x weight bits x input activation bits
  double latency_seconds = 0;  // this layer's measured time at these bits (latency_table.h)
};

struct AllocationProblem {
  enum class Budget { kSizeBytes, kBops, kLatency };
  std::vector<std::string> layers;
  std::vector<std::vector<AllocationChoice>> choices;  // per layer
  int64_t fixed_size_bytes = 0;                        // the part of the size no choice changes
  double fixed_bops = 0;
  double fixed_latency_seconds = 0;  // input quantization, ops without weights, output
  Budget budget_kind = Budget::kSizeBytes;
  double budget = 0;  // total, fixed part included
  double time_limit_seconds = 60;
};

struct Allocation {
  std::vector<int> choice;  // per layer, index into its choices
  double cost = 0;
  int64_t size_bytes = 0;  // total, fixed part included
  double bops = 0;
  double latency_seconds = 0;
  std::string solver;  // "GLPK 5.0 branch-and-cut: optimal, N nodes"
};

absl::StatusOr<Allocation> SolveAllocation(const AllocationProblem& problem);

}  // namespace quant::analysis

#endif  // QUANT_ANALYSIS_BIT_ALLOCATION_H_
