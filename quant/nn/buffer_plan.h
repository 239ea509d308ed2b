// Liveness-based buffer planning: which temporaries may share one buffer.
//
// A graph executor needs a buffer for every value it computes, but most values
// die soon after they are made (their last consumer has run). PlanBuffers
// gives each use interval a slot such that two intervals that overlap never
// share a slot; only buffers of the same shape share one, so a slot never
// changes shape and keeps its allocation from batch to batch (no allocation in
// steady state). Greedy in order of first use, which is optimal for interval
// graphs when every shape is the same.
#ifndef QUANT_NN_BUFFER_PLAN_H_
#define QUANT_NN_BUFFER_PLAN_H_

#include <cstdint>
#include <vector>

namespace quant::nn {

struct BufferUse {
  std::vector<int64_t> shape;  // buffers share a slot only with equal shapes
  int first = 0;               // first step it is written (inclusive)
  int last = 0;                // last step it is read (inclusive)
};

struct BufferPlan {
  std::vector<int> slot;                      // per use: its slot
  std::vector<std::vector<int64_t>> shapes;   // per slot: its shape
  int num_slots() const { return static_cast<int>(shapes.size()); }
};

BufferPlan PlanBuffers(const std::vector<BufferUse>& uses);

}  // namespace quant::nn

#endif  // QUANT_NN_BUFFER_PLAN_H_
