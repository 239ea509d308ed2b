#include "quant/nn/model.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <queue>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/suggest.h"
#include "quant/nn/buffer_plan.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"

namespace quant::nn {
namespace {

// "node 3 'add1' (add, configs/x.yaml:12:7)" or "node 3 'add1' (add)".
std::string NodeLabel(int index, const Layer& op, const std::string& origin) {
  return absl::StrCat("node ", index, " '", op.name(), "' (", op.type(),
                      origin.empty() ? "" : absl::StrCat(", ", origin), ")");
}

void AddInPlace(const Tensor& a, Tensor* sum) {
  float* s = sum->data();
  const float* x = a.data();
  const int64_t n = sum->numel();
  for (int64_t i = 0; i < n; ++i) s[i] += x[i];
}

}  // namespace

absl::Status Model::Build(const Shape& sample_shape, int num_classes, uint64_t seed) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": needs at least one class"));
  }
  auto made = MakeGraph(sample_shape, num_classes);
  if (!made.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": ", made.status().message()));
  }
  if (made->nodes.empty()) return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": no layers"));
  sample_shape_ = sample_shape;
  num_classes_ = num_classes;
  if (absl::Status s = Arrange(std::move(made).value()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": ", s.message()));
  }
  if (absl::Status s = InferShapes(); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": ", s.message()));
  }
  const Shape& logits = value_shapes_[output_value_];
  if (logits != Shape{num_classes}) {
    const int p = ProducerOf(output_value_);
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", name(), ": the output node (", p, ", ", nodes_[p].op->name(), ") outputs ",
        ShapeToString(logits), " per sample, but the dataset has ", num_classes,
        " classes: expected [", num_classes, "]"));
  }
  for (int i = 0; i < num_layers(); ++i) {
    Rng rng = Rng::Stream(seed, static_cast<uint64_t>(i));
    nodes_[i].op->ResetParameters(rng);
    if (auto* conv = dynamic_cast<Conv2d*>(nodes_[i].op.get())) conv->set_winograd(winograd_);
  }
  const size_t n = nodes_.size();
  out_.assign(n, Tensor());
  post_.assign(n, Tensor());
  value_ptr_.assign(n + 1, nullptr);
  grad_ptr_.assign(n + 1, nullptr);
  needs_grad_.clear();
  hooks_seen_.clear();
  times_.assign(n, LayerTime());
  FindClampFusions();
  PlanEval();
  built_ = true;
  set_training(training_);
  if (absl::Status s = AfterBuild(); !s.ok()) {
    built_ = false;
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::Status Model::Arrange(GraphSpec spec) {
  const int n = static_cast<int>(spec.nodes.size());
  // Automatic names count per prefix in the order listed: conv1, conv2, fc1, ...
  std::map<std::string, int> counts;
  for (GraphNode& g : spec.nodes) {
    const int k = ++counts[g.op->name_prefix()];
    if (g.op->name().empty()) g.op->set_name(absl::StrCat(g.op->name_prefix(), k));
  }
  std::map<std::string, int> by_name;
  for (int i = 0; i < n; ++i) {
    const GraphNode& g = spec.nodes[i];
    if (g.op->name() == "input") {
      return absl::InvalidArgumentError(absl::StrCat(NodeLabel(i, *g.op, g.origin),
                                                     ": the name 'input' is reserved for the model's input"));
    }
    auto [it, inserted] = by_name.emplace(g.op->name(), i);
    if (!inserted) {
      const GraphNode& first = spec.nodes[it->second];
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(i, *g.op, g.origin), ": the name is used twice (first by ",
          NodeLabel(it->second, *first.op, first.origin), ")"));
    }
  }
  // Inputs as listed-node indices (-1: the model input).
  std::vector<std::vector<int>> in(n);
  for (int i = 0; i < n; ++i) {
    const GraphNode& g = spec.nodes[i];
    if (g.inputs.empty()) {
      in[i].push_back(i - 1);
      continue;
    }
    for (const std::string& v : g.inputs) {
      if (v == "input") {
        in[i].push_back(-1);
        continue;
      }
      auto it = by_name.find(v);
      if (it == by_name.end()) {
        std::vector<std::string> names = {"input"};
        for (const GraphNode& h : spec.nodes) names.push_back(h.op->name());
        return absl::InvalidArgumentError(absl::StrCat(
            NodeLabel(i, *g.op, g.origin), ": unknown input '", v, "'", DidYouMean(v, names),
            "; values: ", absl::StrJoin(names, ", ")));
      }
      if (it->second == i) {
        return absl::InvalidArgumentError(
            absl::StrCat(NodeLabel(i, *g.op, g.origin), ": reads its own output (a cycle)"));
      }
      in[i].push_back(it->second);
    }
    const int want = g.op->num_inputs();
    const int have = static_cast<int>(in[i].size());
    if ((want > 0 && have != want) || have < 1) {
      return absl::InvalidArgumentError(absl::StrCat(NodeLabel(i, *g.op, g.origin), ": takes ",
                                                     want > 0 ? absl::StrCat(want) : "one or more",
                                                     " input(s), but ", have, " are given"));
    }
  }
  // Kahn's algorithm, always taking the earliest listed ready node, so a graph
  // listed in a valid order (every chain) keeps its order.
  std::vector<int> pending(n, 0);
  std::vector<std::vector<int>> users(n);
  for (int i = 0; i < n; ++i) {
    for (int j : in[i]) {
      if (j < 0) continue;
      ++pending[i];
      users[j].push_back(i);
    }
  }
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  std::vector<int> order;
  while (!ready.empty()) {
    const int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int u : users[i]) {
      if (--pending[u] == 0) ready.push(u);
    }
  }
  if (static_cast<int>(order.size()) != n) {
    // Every node left over reads another one left over: walk those reads from
    // the first until a node repeats; the walk's tail is a cycle.
    int i = static_cast<int>(std::find_if(pending.begin(), pending.end(), [](int p) { return p > 0; }) -
                             pending.begin());
    std::vector<int> walk, seen(n, -1);
    while (seen[i] < 0) {
      seen[i] = static_cast<int>(walk.size());
      walk.push_back(i);
      for (int j : in[i]) {
        if (j >= 0 && pending[j] > 0) {
          i = j;
          break;
        }
      }
    }
    std::vector<std::string> path;
    for (size_t k = seen[i]; k < walk.size(); ++k) path.push_back(spec.nodes[walk[k]].op->name());
    path.push_back(spec.nodes[i].op->name());
    const GraphNode& c = spec.nodes[i];
    return absl::InvalidArgumentError(
        absl::StrCat(NodeLabel(i, *c.op, c.origin), ": is on a cycle: ", absl::StrJoin(path, " <- ")));
  }
  std::vector<int> position(n);
  for (int k = 0; k < n; ++k) position[order[k]] = k;
  nodes_.clear();
  nodes_.resize(n);
  for (int k = 0; k < n; ++k) {
    GraphNode& g = spec.nodes[order[k]];
    Node& node = nodes_[k];
    node.op = std::move(g.op);
    node.origin = std::move(g.origin);
    for (int j : in[order[k]]) node.inputs.push_back(j < 0 ? kInputValue : OutputOf(position[j]));
    node.x.assign(node.inputs.size(), nullptr);
    node.dx.assign(node.inputs.size(), nullptr);
  }
  if (spec.output.empty()) {
    output_value_ = OutputOf(position[n - 1]);
  } else {
    auto it = by_name.find(spec.output);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat("output: unknown node '", spec.output, "'"));
    }
    output_value_ = OutputOf(position[it->second]);
  }
  consumers_.assign(n + 1, {});
  for (int k = 0; k < n; ++k) {
    for (int v : nodes_[k].inputs) consumers_[v].push_back(k);
  }
  warnings_.clear();
  for (int k = 0; k < n; ++k) {
    if (consumers_[OutputOf(k)].empty() && OutputOf(k) != output_value_) {
      warnings_.push_back(absl::StrCat(NodeLabel(k, *nodes_[k].op, nodes_[k].origin),
                                       ": its output is not used by any node nor the model output"));
    }
  }
  return absl::OkStatus();
}

absl::Status Model::InferShapes() {
  value_shapes_.assign(nodes_.size() + 1, Shape());
  value_shapes_[kInputValue] = sample_shape_;
  std::vector<Shape> in;
  for (int i = 0; i < num_layers(); ++i) {
    Node& node = nodes_[i];
    in.clear();
    for (int v : node.inputs) in.push_back(value_shapes_[v]);
    absl::StatusOr<Shape> out = node.op->BuildInputs(in);
    if (!out.ok()) {
      std::vector<std::string> described;
      for (int v : node.inputs) {
        described.push_back(absl::StrCat(
            ShapeToString(value_shapes_[v]),
            v == kInputValue ? " (the dataset's sample)" : absl::StrCat(" (output of ", value_name(v), ")")));
      }
      return absl::InvalidArgumentError(absl::StrCat(
          NodeLabel(i, *node.op, node.origin), ": ", node.op->Describe(), " cannot be built on its input",
          node.inputs.size() > 1 ? "s " : " ", absl::StrJoin(described, " and "), ": ", out.status().message()));
    }
    value_shapes_[OutputOf(i)] = *out;
  }
  return absl::OkStatus();
}

std::string Model::value_name(int value) const {
  return value == kInputValue ? "input" : nodes_[ProducerOf(value)].op->name();
}

bool Model::is_chain() const {
  for (int i = 0; i < num_layers(); ++i) {
    if (nodes_[i].inputs.size() != 1 || nodes_[i].inputs[0] != i) return false;
  }
  return output_value_ == num_layers();
}

// Eval mode: step i is node i; value v lives from its producer to its last
// consumer (the output to the end); a node's raw output (before its output
// transform) only during its own step.
void Model::PlanEval() {
  const int n = num_layers();
  std::vector<BufferUse> uses;
  eval_raw_slot_.assign(n, -1);
  eval_value_slot_.assign(n, -1);
  std::vector<int> raw_use(n, -1), value_use(n, -1);
  for (int i = 0; i < n; ++i) {
    const int v = OutputOf(i);
    int last = i;
    for (int c : consumers_[v]) last = std::max(last, c);
    if (v == output_value_) last = n;
    value_use[i] = static_cast<int>(uses.size());
    uses.push_back({value_shapes_[v], i, last});
    raw_use[i] = static_cast<int>(uses.size());
    uses.push_back({value_shapes_[v], i, i});
  }
  const BufferPlan plan = PlanBuffers(uses);
  // Slots live in the training buffers, idle in eval mode: planning saves
  // memory instead of adding to it. Slot k is backed by the buffer of the
  // first use given it (use 2i is node i's value, 2i + 1 its raw output).
  eval_slots_.assign(plan.num_slots(), nullptr);
  for (size_t u = 0; u < uses.size(); ++u) {
    Tensor*& slot = eval_slots_[plan.slot[u]];
    if (slot == nullptr) slot = u % 2 == 0 ? &out_[u / 2] : &post_[u / 2];
  }
  for (int i = 0; i < n; ++i) {
    eval_value_slot_[i] = plan.slot[value_use[i]];
    eval_raw_slot_[i] = plan.slot[raw_use[i]];
  }
}

bool Model::Trainable(int node) const {
  Layer& l = *nodes_[node].op;
  if (!l.parameters().empty()) return true;
  if (l.output_transform() && !l.output_transform()->parameters().empty()) return true;
  if (l.weight_transform() && !l.weight_transform()->parameters().empty()) return true;
  return false;
}

// The executor's conv -> Clamp pairs (Forward). fusion.h's FindFusionGroups
// finds deployment groups (conv or linear, BatchNorm, ReLU/ReLU6) and depends on
// Model; this is the narrower pattern the kernels fuse: a Conv2d whose output
// only a Clamp reads, with the same single-consumer rule.
void Model::FindClampFusions() {
  const int n = num_layers();
  clamp_after_.assign(n, -1);
  clamp_before_.assign(n, -1);
  fused_.assign(n, 0);
  fused_grad_.assign(n, nullptr);
  for (int i = 0; i < n; ++i) {
    const int v = OutputOf(i);
    if (dynamic_cast<Conv2d*>(nodes_[i].op.get()) == nullptr || v == output_value_ || consumers_[v].size() != 1)
      continue;
    const int a = consumers_[v][0];
    if (dynamic_cast<Clamp*>(nodes_[a].op.get()) != nullptr && nodes_[a].inputs.size() == 1) {
      clamp_after_[i] = a;
      clamp_before_[a] = i;
    }
  }
}

// Hooks are installed after Build (by training schemes), so the backward plan
// is redone whenever they change; the check itself allocates nothing.
void Model::UpdateNeedsGrad() {
  const size_t n = nodes_.size();
  bool same = hooks_seen_.size() == n;
  for (size_t i = 0; same && i < n; ++i) same = hooks_seen_[i] == nodes_[i].op->hooks_version();
  if (same) return;
  hooks_seen_.resize(n);
  trainable_.assign(n, 0);
  needs_grad_.assign(n + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    hooks_seen_[i] = nodes_[i].op->hooks_version();
    trainable_[i] = Trainable(static_cast<int>(i));
    bool any = trainable_[i];
    for (int v : nodes_[i].inputs) any = any || needs_grad_[v];
    needs_grad_[OutputOf(static_cast<int>(i))] = any;
  }
  PlanBackward();
}

// Backward: step t = n - 1 - i is node i. The gradient of value v is written
// first by its last consumer that runs and read by its producer; fan-out
// partial sums and hook gradients live during one step.
void Model::PlanBackward() {
  const int n = num_layers();
  // The step that reads value v's gradient last: its producer's, or, for an
  // activation that may be fused into the conv before it, the conv's (which
  // then reads it in the activation's place).
  auto last_read = [&](int v) {
    const int p = ProducerOf(v);
    return n - 1 - (p >= 0 && clamp_before_[p] >= 0 ? clamp_before_[p] : p);
  };
  std::vector<BufferUse> uses;
  std::vector<int> grad_use(n + 1, -1), hook_use(n, -1);
  std::vector<std::vector<int>> sum_use(n);
  std::vector<char> written(n + 1, 0);
  written[output_value_] = 1;
  grad_use[output_value_] = static_cast<int>(uses.size());
  uses.push_back({value_shapes_[output_value_], 0, last_read(output_value_)});
  for (int i = n - 1; i >= 0; --i) {
    const int t = n - 1 - i;
    const Node& node = nodes_[i];
    sum_use[i].assign(node.inputs.size(), -1);
    if (!written[OutputOf(i)]) continue;
    if (node.op->output_transform()) {
      // Read in this step, or by the conv an activation is fused into.
      hook_use[i] = static_cast<int>(uses.size());
      uses.push_back({value_shapes_[OutputOf(i)], t, clamp_before_[i] >= 0 ? n - 1 - clamp_before_[i] : t});
    }
    for (size_t j = 0; j < node.inputs.size(); ++j) {
      const int u = node.inputs[j];
      if (!needs_grad_[u]) continue;
      if (!written[u]) {
        written[u] = 1;
        grad_use[u] = static_cast<int>(uses.size());
        uses.push_back({value_shapes_[u], t, last_read(u)});
      } else {
        sum_use[i][j] = static_cast<int>(uses.size());
        uses.push_back({value_shapes_[u], t, t});
      }
    }
  }
  const BufferPlan plan = PlanBuffers(uses);
  grad_slots_.assign(plan.num_slots(), Tensor());
  grad_slot_.assign(n + 1, -1);
  hook_grad_slot_.assign(n, -1);
  sum_slot_.assign(n, {});
  for (int v = 0; v <= n; ++v) {
    if (grad_use[v] >= 0) grad_slot_[v] = plan.slot[grad_use[v]];
  }
  for (int i = 0; i < n; ++i) {
    if (hook_use[i] >= 0) hook_grad_slot_[i] = plan.slot[hook_use[i]];
    sum_slot_[i].assign(sum_use[i].size(), -1);
    for (size_t j = 0; j < sum_use[i].size(); ++j) {
      if (sum_use[i][j] >= 0) sum_slot_[i][j] = plan.slot[sum_use[i][j]];
    }
  }
  written_.assign(n + 1, 0);
}

Tensor& Model::RawOutput(int node) {
  return (training_ || keep_values_) ? out_[node] : *eval_slots_[eval_raw_slot_[node]];
}

const Tensor& Model::Forward(const Tensor& x) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0;
  const bool keep = training_ || keep_values_;
  values_kept_ = keep;
  value_ptr_[kInputValue] = &x;
  if (input_transform_) {
    EnsureShape(&input_post_, x.shape());
    input_transform_->Forward(x, &input_post_, training_);
    value_ptr_[kInputValue] = &input_post_;
  }
  for (int i = 0; i < num_layers(); ++i) {
    Node& node = nodes_[i];
    Layer& l = *node.op;
    if (profiling_) t0 = Clock::now();
    for (size_t j = 0; j < node.inputs.size(); ++j) node.x[j] = value_ptr_[node.inputs[j]];
    if (const int a = clamp_after_[i]; a >= 0) {
      // A conv followed by its only consumer, a Clamp: in training (every value
      // kept, none asked for) the conv applies the clamp as its kernels store,
      // straight into the Clamp's raw buffer, and the Clamp node only runs its
      // output transform if it has one, in Backward too: the conv masks the
      // gradient of the clamped values by them (lo < v < hi is the raw values'
      // mask) before its own. The same bits. A transform on the conv's own
      // output (a value inside the group) keeps the two apart.
      const Clamp& c = static_cast<const Clamp&>(*nodes_[a].op);
      const bool fuse =
          training_ && !keep_values_ && l.output_transform() == nullptr && l.SetOutputClamp(true, c.lo(), c.hi());
      fused_[a] = fuse;
      if (fuse) {
        l.ForwardInputs(node.x, &out_[a]);
        l.SetOutputClamp(false, 0.0f, 0.0f);
        value_ptr_[OutputOf(i)] = &out_[a];
        if (profiling_) times_[i].forward += std::chrono::duration<double>(Clock::now() - t0).count();
        continue;
      }
    }
    // A fused activation's raw output was written by the conv before it (in
    // training, so into out_[i]); only its output transform is left to run.
    if (TensorTransform* t = l.output_transform()) {
      Tensor& raw = RawOutput(i);
      if (!fused_[i]) l.ForwardInputs(node.x, &raw);
      Tensor* post = keep ? &post_[i] : eval_slots_[eval_value_slot_[i]];
      EnsureShape(post, raw.shape());
      t->Forward(raw, post, training_);
      value_ptr_[OutputOf(i)] = post;
    } else {
      Tensor* out = keep ? &out_[i] : eval_slots_[eval_value_slot_[i]];
      if (!fused_[i]) l.ForwardInputs(node.x, out);
      value_ptr_[OutputOf(i)] = out;
    }
    if (profiling_) times_[i].forward += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return *value_ptr_[output_value_];
}

void Model::ReleaseBuffers() {
  for (std::vector<Tensor>* v : {&out_, &post_, &grad_slots_}) {
    for (Tensor& t : *v) t = Tensor();  // elements replaced, not removed: the plans point at them
  }
  input_post_ = Tensor();
  values_kept_ = false;  // a Backward now needs a Forward first
}

void Model::Backward(const Tensor& x, const Tensor& dlogits) {
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0;
  if (!values_kept_) {
    // A programming error, not a user's: eval-mode buffers were reused, the
    // activations Backward needs are gone.
    std::fprintf(stderr, "quantlab: internal error: Model::Backward after an eval-mode Forward (model %s); "
                 "call set_training(true) or set_keep_values(true) before Forward\n", name().c_str());
    std::abort();
  }
  UpdateNeedsGrad();
  const int n = num_layers();
  std::fill(written_.begin(), written_.end(), 0);
  Tensor& g_out = grad_slots_[grad_slot_[output_value_]];
  EnsureShape(&g_out, dlogits.shape());
  std::copy(dlogits.data(), dlogits.data() + dlogits.numel(), g_out.data());
  written_[output_value_] = 1;
  value_ptr_[kInputValue] = input_transform_ ? &input_post_ : &x;  // what the first nodes read in Forward
  for (int i = n - 1; i >= 0; --i) {
    Node& node = nodes_[i];
    const int v = OutputOf(i);
    if (!written_[v]) continue;
    Layer& l = *node.op;
    bool any_dx = false;
    for (size_t j = 0; j < node.inputs.size(); ++j) {
      const int u = node.inputs[j];
      node.x[j] = value_ptr_[u];
      node.dx[j] = nullptr;
      if (!needs_grad_[u]) continue;
      any_dx = true;
      Tensor* d = sum_slot_[i][j] >= 0 ? &grad_slots_[sum_slot_[i][j]] : &grad_slots_[grad_slot_[u]];
      EnsureShape(d, value_ptr_[u]->shape());
      node.dx[j] = d;
    }
    if (!any_dx && !trainable_[i]) continue;
    if (profiling_) t0 = Clock::now();
    const Tensor* g = &grad_slots_[grad_slot_[v]];
    if (TensorTransform* t = l.output_transform()) {
      Tensor& hg = grad_slots_[hook_grad_slot_[i]];
      EnsureShape(&hg, out_[i].shape());
      t->Backward(out_[i], *g, &hg);
      g = &hg;
    }
    const int a = clamp_after_[i];
    if (fused_[i]) {
      // An activation computed by the conv before it: the conv reads this
      // gradient (`g`, after the transform's) and applies the mask itself.
      fused_grad_[i] = g;
    } else if (a >= 0 && fused_[a]) {
      const Clamp& c = static_cast<const Clamp&>(*nodes_[a].op);
      l.SetOutputClamp(true, c.lo(), c.hi());
      l.BackwardInputs(node.x, out_[a], *fused_grad_[a], node.dx);
      l.SetOutputClamp(false, 0.0f, 0.0f);
    } else {
      l.BackwardInputs(node.x, out_[i], *g, node.dx);
    }
    for (size_t j = 0; j < node.inputs.size(); ++j) {
      if (node.dx[j] == nullptr) continue;
      const int u = node.inputs[j];
      if (sum_slot_[i][j] >= 0) AddInPlace(*node.dx[j], &grad_slots_[grad_slot_[u]]);
      written_[u] = 1;
    }
    if (profiling_) times_[i].backward += std::chrono::duration<double>(Clock::now() - t0).count();
  }
}

absl::Status Model::RunNodes(int begin, int end, std::vector<Tensor>* values) {
  if (begin < 0 || end > num_layers() || begin > end) {
    return absl::InvalidArgumentError(
        absl::StrCat("RunNodes: range [", begin, ", ", end, ") is not within the ", num_layers(), " nodes"));
  }
  values->resize(num_values());
  std::vector<const Tensor*> x;
  for (int i = begin; i < end; ++i) {
    Node& node = nodes_[i];
    x.clear();
    for (int u : node.inputs) {
      const Tensor& t = (*values)[u];
      if (t.numel() == 0) {
        return absl::FailedPreconditionError(absl::StrCat(NodeLabel(i, *node.op, node.origin), ": its input '",
                                                          value_name(u), "' has not been computed"));
      }
      x.push_back(&t);
    }
    Tensor& out = (*values)[OutputOf(i)];
    if (TensorTransform* t = node.op->output_transform()) {
      Tensor raw;
      node.op->ForwardInputs(x, &raw);
      EnsureShape(&out, raw.shape());
      t->Forward(raw, &out, training_);
    } else {
      node.op->ForwardInputs(x, &out);
    }
  }
  return absl::OkStatus();
}

void Model::set_training(bool training) {
  training_ = training;
  for (auto& node : nodes_) node.op->set_training(training);
}

Layer* Model::FindLayer(const std::string& layer_name) {
  const int i = FindNode(layer_name);
  return i < 0 ? nullptr : nodes_[i].op.get();
}

int Model::FindNode(const std::string& layer_name) const {
  for (int i = 0; i < num_layers(); ++i) {
    if (nodes_[i].op->name() == layer_name) return i;
  }
  return -1;
}

absl::StatusOr<std::vector<Layer*>> Model::MatchLayers(const std::string& regex) {
  std::regex re;
  try {
    re = std::regex(regex, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer regex '", regex, "': ", e.what()));
  }
  std::vector<Layer*> out;
  for (auto& node : nodes_) {
    if (std::regex_match(node.op->name(), re)) out.push_back(node.op.get());
  }
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Model::NamedParameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& node : nodes_) {
    Layer* l = node.op.get();
    for (Parameter* p : l->parameters()) out.emplace_back(absl::StrCat(l->name(), ".", p->name), p);
    for (TensorTransform* t : {l->weight_transform(), l->output_transform()}) {
      if (t == nullptr) continue;
      const char* where = t == l->weight_transform() ? "weight_hook" : "output_hook";
      for (Parameter* p : t->parameters()) {
        out.emplace_back(absl::StrCat(l->name(), ".", where, ".", p->name), p);
      }
    }
  }
  return out;
}

std::vector<Parameter*> Model::Parameters() {
  std::vector<Parameter*> out;
  for (auto& [n, p] : NamedParameters()) out.push_back(p);
  return out;
}

std::vector<std::pair<std::string, Tensor*>> Model::StateTensors() {
  std::vector<std::pair<std::string, Tensor*>> out;
  for (auto& [n, p] : NamedParameters()) out.emplace_back(n, &p->value);
  for (auto& node : nodes_) {
    for (auto& [n, t] : node.op->buffers()) out.emplace_back(absl::StrCat(node.op->name(), ".", n), t);
  }
  return out;
}

int64_t Model::NumParameters() {
  int64_t n = 0;
  for (Parameter* p : Parameters()) n += p->value.numel();
  return n;
}

int64_t Model::ForwardFlopsPerSample() const {
  int64_t f = 0;
  for (const auto& node : nodes_) f += node.op->ForwardFlopsPerSample();
  return f;
}

int64_t Model::BackwardFlopsPerSample() const {
  // Whether a node's input needs a gradient, as Backward decides it.
  std::vector<char> needs(nodes_.size() + 1, 0);
  int64_t f = 0;
  for (int i = 0; i < num_layers(); ++i) {
    bool in = false;
    for (int v : nodes_[i].inputs) in = in || needs[v];
    needs[OutputOf(i)] = in || Trainable(i);
    f += nodes_[i].op->BackwardFlopsPerSample(in);
  }
  return f;
}

std::string Model::Summary() const {
  std::string s = absl::StrCat("model ", name(), ": input ", ShapeToString(sample_shape_), "\n");
  const bool chain = is_chain();
  for (int i = 0; i < num_layers(); ++i) {
    std::string from;
    if (!chain) {
      std::vector<std::string> names;
      for (int v : nodes_[i].inputs) names.push_back(value_name(v));
      from = absl::StrCat(" <- ", absl::StrJoin(names, ", "));
    }
    absl::StrAppend(&s, absl::StrFormat("  %2d %-10s %-48s -> %s%s\n", i, nodes_[i].op->name(),
                                        nodes_[i].op->Describe(), ShapeToString(value_shapes_[OutputOf(i)]),
                                        from));
  }
  return s;
}

absl::StatusOr<std::unique_ptr<Model>> CreateModel(ParamReader& reader) {
  const bool winograd = reader.Bool("winograd", false, kWinogradHelp);
  absl::StatusOr<std::unique_ptr<Model>> model = Registry<Model>::Get().CreateFrom(reader, "name", "", "which model");
  if (model.ok()) (*model)->set_winograd(winograd);
  return model;
}

}  // namespace quant::nn
