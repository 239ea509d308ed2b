#include "quant/nn/buffer_plan.h"

#include <algorithm>
#include <numeric>

namespace quant::nn {

BufferPlan PlanBuffers(const std::vector<BufferUse>& uses) {
  BufferPlan plan;
  plan.slot.assign(uses.size(), -1);
  std::vector<int> order(uses.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return uses[a].first < uses[b].first; });
  std::vector<int> busy_until;  // per slot: last step of its current occupant
  for (int u : order) {
    int chosen = -1;
    for (int s = 0; s < plan.num_slots(); ++s) {
      if (plan.shapes[s] == uses[u].shape && busy_until[s] < uses[u].first) {
        chosen = s;
        break;
      }
    }
    if (chosen < 0) {
      chosen = plan.num_slots();
      plan.shapes.push_back(uses[u].shape);
      busy_until.push_back(0);
    }
    plan.slot[u] = chosen;
    busy_until[chosen] = std::max(uses[u].first, uses[u].last);
  }
  return plan;
}

}  // namespace quant::nn
