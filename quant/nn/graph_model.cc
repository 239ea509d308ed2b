#include "quant/nn/graph_model.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/suggest.h"

namespace quant::nn {
namespace {

// The checks that need no shapes, located at the node's YAML: duplicate
// names, unknown inputs, cycles. (Model::Build repeats them for graphs built
// in C++.)
absl::Status CheckStructure(ParamReader& p, const std::vector<ParamReader>& readers, const GraphSpec& spec) {
  std::map<std::string, int> by_name;
  for (size_t i = 0; i < spec.nodes.size(); ++i) {
    const std::string& name = spec.nodes[i].op->name();
    if (name.empty()) continue;
    if (name == "input") {
      return absl::InvalidArgumentError(
          absl::StrCat(readers[i].Location("name"), ": the name 'input' is reserved for the model's input"));
    }
    auto [it, inserted] = by_name.emplace(name, static_cast<int>(i));
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat(readers[i].Location("name"), ": node name '", name,
                                                     "' is used twice (first at ",
                                                     readers[it->second].Location("name"), ")"));
    }
  }
  std::vector<std::string> names = {"input"};
  for (const auto& [n, i] : by_name) names.push_back(n);
  // Edges by listed index; -1 is the model input.
  std::vector<std::vector<int>> in(spec.nodes.size());
  for (size_t i = 0; i < spec.nodes.size(); ++i) {
    const GraphNode& g = spec.nodes[i];
    if (g.inputs.empty()) {
      in[i].push_back(static_cast<int>(i) - 1);
      continue;
    }
    for (const std::string& v : g.inputs) {
      if (v == "input") {
        in[i].push_back(-1);
        continue;
      }
      auto it = by_name.find(v);
      if (it == by_name.end()) {
        return absl::InvalidArgumentError(absl::StrCat(readers[i].Location("inputs"), ": node '",
                                                       g.op->name().empty() ? g.op->type() : g.op->name(),
                                                       "': unknown input '", v, "'", DidYouMean(v, names),
                                                       "; values: ", absl::StrJoin(names, ", ")));
      }
      in[i].push_back(it->second);
    }
  }
  // Depth-first search for a cycle; report it as a path of node names.
  std::vector<int> state(spec.nodes.size(), 0);  // 0 new, 1 on the stack, 2 done
  std::vector<int> stack;
  std::function<int(int)> visit = [&](int i) -> int {
    state[i] = 1;
    stack.push_back(i);
    for (int j : in[i]) {
      if (j < 0 || state[j] == 2) continue;
      if (state[j] == 1) return j;
      if (int c = visit(j); c >= 0) return c;
    }
    stack.pop_back();
    state[i] = 2;
    return -1;
  };
  for (size_t i = 0; i < spec.nodes.size(); ++i) {
    if (state[i] != 0) continue;
    const int c = visit(static_cast<int>(i));
    if (c < 0) continue;
    std::vector<std::string> path;
    auto from = std::find(stack.begin(), stack.end(), c);
    for (auto it = from; it != stack.end(); ++it) path.push_back(spec.nodes[*it].op->name());
    path.push_back(spec.nodes[c].op->name());
    return absl::InvalidArgumentError(absl::StrCat(readers[c].Location("inputs"), ": node '",
                                                   spec.nodes[c].op->name(), "' is on a cycle: ",
                                                   absl::StrJoin(path, " <- ")));
  }
  if (!spec.output.empty() && !by_name.count(spec.output)) {
    p.Fail("output", absl::StrCat("unknown node '", spec.output, "'", DidYouMean(spec.output, names)));
    return p.status();
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Model>> GraphModel::Create(ParamReader& p) {
  YAML::Node nodes = p.Node("nodes",
                            "list of nodes: {name: ..., op: <op>, inputs: [...], the op's keys}; see docs/nn.md");
  const std::string output = p.String("output", "", "the node whose output is the logits (default: the last listed)");
  auto model = std::make_unique<GraphModel>();
  if (p.describing()) return std::unique_ptr<Model>(std::move(model));
  if (!nodes.IsDefined() || !nodes.IsSequence() || nodes.size() == 0) {
    p.Fail("nodes", "expected a non-empty list of nodes");
    return p.status();
  }
  std::vector<ParamReader> readers;
  for (size_t i = 0; i < nodes.size(); ++i) {
    YAML::Node element = nodes[i];
    if (element.IsScalar()) {
      YAML::Node map(YAML::NodeType::Map);
      map["op"] = element;
      element = map;
    }
    readers.push_back(p.ListElement(element, "nodes", i));
    ParamReader& reader = readers.back();
    absl::StatusOr<GraphNode> node = ReadGraphNode(reader, "op", /*with_inputs=*/true);
    if (!node.ok()) return node.status();
    if (absl::Status s = reader.Finish(); !s.ok()) return s;
    model->spec_.nodes.push_back(std::move(node).value());
  }
  model->spec_.output = output;
  if (absl::Status s = CheckStructure(p, readers, model->spec_); !s.ok()) return s;
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<Model>(std::move(model));
}

absl::StatusOr<GraphSpec> GraphModel::MakeGraph(const Shape&, int) {
  if (spec_.nodes.empty()) return absl::FailedPreconditionError("a graph model is built once");
  return std::move(spec_);
}

QUANTLAB_REGISTER(Model, "graph", GraphModel::Create,
                  "a network described node by node in the config (model.nodes, inputs by name)");

}  // namespace quant::nn
