#include "quant/nn/fusion.h"

namespace quant::nn {
namespace {

// The single consumer of node `i`'s output, if the value is private to it.
int SoleConsumer(const Model& m, int i) {
  const int v = Model::OutputOf(i);
  if (v == m.output_value() || m.consumers(v).size() != 1) return -1;
  return m.consumers(v)[0];
}

bool IsActivation(const Layer& l) { return l.type() == "relu" || l.type() == "relu6"; }

}  // namespace

std::vector<FusionGroup> FindFusionGroups(const Model& m) {
  std::vector<FusionGroup> groups;
  for (int i = 0; i < m.num_layers(); ++i) {
    const std::string type = m.layer(i).type();
    FusionGroup g;
    if (type == "conv2d" || type == "linear") {
      g.kind = FusionGroup::Kind::kWeighted;
    } else if (type == "add") {
      g.kind = FusionGroup::Kind::kAdd;
    } else {
      continue;
    }
    g.anchor = i;
    int next = SoleConsumer(m, i);
    if (g.kind == FusionGroup::Kind::kWeighted && next >= 0) {
      const std::string nt = m.layer(next).type();
      const bool spatial = type == "conv2d";
      if ((spatial && nt == "batchnorm2d") || (!spatial && nt == "batchnorm1d")) {
        g.batch_norm = next;
        next = SoleConsumer(m, next);
      }
    }
    if (next >= 0 && IsActivation(m.layer(next))) g.activation = next;
    groups.push_back(g);
  }
  return groups;
}

}  // namespace quant::nn
