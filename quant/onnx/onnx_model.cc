#include "quant/onnx/onnx_model.h"

#include <cctype>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/nn/graph.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace onnx_io {
namespace {

bool AllEqual(const std::vector<int64_t>& v, int64_t x) {
  for (int64_t e : v) {
    if (e != x) return false;
  }
  return true;
}

// Turns an ONNX graph into a quantlab GraphSpec, node by node.
class Importer {
 public:
  Importer(const onnx::ModelProto& m, const std::string& file, std::map<std::string, OnnxTensor>* state)
      : m_(m), file_(file), state_(state) {}

  absl::StatusOr<nn::GraphSpec> Run(const nn::Shape& sample_shape) {
    for (const onnx::OperatorSetIdProto& o : m_.opset_import()) {
      if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = static_cast<int>(o.version());
    }
    if (opset_ < kMinImportOpset || opset_ > kMaxImportOpset) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": opset ", opset_, " is outside the opsets import reads (",
                                                     kMinImportOpset, " to ", kMaxImportOpset, ")"));
    }
    const onnx::GraphProto& g = m_.graph();
    for (const onnx::TensorProto& t : g.initializer()) {
      absl::StatusOr<OnnxTensor> v = FromProto(t, absl::StrCat(file_, ": initializer '", t.name(), "'"));
      if (!v.ok()) return v.status();
      consts_[t.name()] = std::move(v).value();
    }
    if (absl::Status s = ReadInput(sample_shape); !s.ok()) return s;
    for (const onnx::NodeProto& n : g.node()) {
      for (const std::string& in : n.input()) ++uses_[in];
    }
    for (const onnx::ValueInfoProto& o : g.output()) ++uses_[o.name()];
    for (int k = 0; k < g.node_size(); ++k) {
      if (fused_.count(k) > 0) continue;
      if (absl::Status s = Node(k); !s.ok()) return s;
    }
    if (g.output_size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": the graph has ", g.output_size(), " outputs; import needs one (the logits)"));
    }
    auto out = value_.find(g.output(0).name());
    if (out == value_.end() || out->second == "input") {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": the graph output '", g.output(0).name(), "' is not computed by an imported node"));
    }
    if (rank_[g.output(0).name()] != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": the graph output '", g.output(0).name(), "' must be [batch, classes]"));
    }
    spec_.output = out->second;
    return std::move(spec_);
  }

 private:
  absl::Status ReadInput(const nn::Shape& sample_shape) {
    const onnx::GraphProto& g = m_.graph();
    std::vector<const onnx::ValueInfoProto*> inputs;
    for (const onnx::ValueInfoProto& v : g.input()) {
      if (consts_.count(v.name()) == 0) inputs.push_back(&v);
    }
    if (inputs.size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(file_, ": the graph has ", inputs.size(), " inputs besides its initializers; import needs one"));
    }
    const onnx::ValueInfoProto& in = *inputs[0];
    const std::string what = absl::StrCat(file_, ": input '", in.name(), "'");
    if (!in.type().has_tensor_type() || in.type().tensor_type().elem_type() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(what, " must be a float tensor"));
    }
    const onnx::TensorShapeProto& shape = in.type().tensor_type().shape();
    if (shape.dim_size() != 1 + static_cast<int>(sample_shape.size())) {
      return absl::InvalidArgumentError(absl::StrCat(what, " has rank ", shape.dim_size(),
                                                     "; the dataset's samples are ", ShapeToString(sample_shape),
                                                     " (NCHW with a batch dimension)"));
    }
    for (int d = 1; d < shape.dim_size(); ++d) {
      const onnx::TensorShapeProto::Dimension& dim = shape.dim(d);
      if (!dim.has_dim_value()) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": dimension ", d, " is dynamic ('", dim.dim_param(),
                                                       "') where a static size is needed (", sample_shape[d - 1],
                                                       " for this dataset)"));
      }
      if (dim.dim_value() != sample_shape[d - 1]) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": dimension ", d, " is ", dim.dim_value(),
                                                       ", the dataset's sample shape is ",
                                                       ShapeToString(sample_shape)));
      }
    }
    value_[in.name()] = "input";
    rank_[in.name()] = static_cast<int>(sample_shape.size());
    return absl::OkStatus();
  }

  absl::Status Err(int k, const std::string& msg) const {
    const onnx::NodeProto& n = m_.graph().node(k);
    return absl::InvalidArgumentError(absl::StrCat(file_, ": node '",
                                                   n.name().empty() ? absl::StrCat("#", k) : n.name(), "' (",
                                                   n.op_type(), ", opset ", opset_, "): ", msg));
  }

  absl::Status CheckAttributes(int k, const std::vector<std::string>& allowed) const {
    for (const onnx::AttributeProto& a : m_.graph().node(k).attribute()) {
      if (std::find(allowed.begin(), allowed.end(), a.name()) == allowed.end()) {
        return Err(
            k, absl::StrCat("attribute ", a.name(), " is not imported",
                            allowed.empty() ? "" : absl::StrCat(" (imported: ", absl::StrJoin(allowed, ", "), ")")));
      }
    }
    return absl::OkStatus();
  }

  // The quantlab value an activation input reads, or an error if it is a constant or unknown.
  absl::StatusOr<std::string> Activation(int k, int input) const {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (input >= n.input_size() || n.input(input).empty()) return Err(k, absl::StrCat("input ", input, " is missing"));
    auto it = value_.find(n.input(input));
    if (it != value_.end()) return it->second;
    if (consts_.count(n.input(input)) > 0) {
      return Err(
          k, absl::StrCat("input ", input, " ('", n.input(input), "') is a constant where an activation is needed"));
    }
    return Err(k, absl::StrCat("input ", input, " ('", n.input(input), "') is produced by no imported node"));
  }

  const OnnxTensor* Const(int k, int input) const {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (input >= n.input_size() || n.input(input).empty()) return nullptr;
    auto it = consts_.find(n.input(input));
    return it == consts_.end() ? nullptr : &it->second;
  }

  absl::StatusOr<const OnnxTensor*> FloatConst(int k, int input, const char* what) const {
    const OnnxTensor* t = Const(k, input);
    if (t == nullptr) return Err(k, absl::StrCat(what, " (input ", input, ") must be an initializer or a Constant"));
    if (!t->is_float()) return Err(k, absl::StrCat(what, " must be float"));
    return t;
  }

  std::string NodeName(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    std::string s;
    for (char c : n.name()) s.push_back(std::isalnum(static_cast<unsigned char>(c)) ? c : '_');
    while (!s.empty() && s.front() == '_') s.erase(s.begin());
    if (s.empty() || s == "input" || names_.count(s) > 0) {
      std::string op;
      for (char c : n.op_type()) op.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
      s = absl::StrCat(op, "_", k);
    }
    names_.insert(s);
    return s;
  }

  // Adds quantlab op `op` (its YAML keys in `params`) reading `inputs`, as the output of node k.
  absl::Status Add(int k, const std::string& name, const std::string& op, YAML::Node params,
                   std::vector<std::string> inputs, int rank) {
    params["name"] = name;
    params["op"] = op;
    ParamReader reader(params, file_, absl::StrCat("node ", name));
    absl::StatusOr<nn::GraphNode> node = nn::ReadGraphNode(reader, "op", /*with_inputs=*/false);
    if (!node.ok()) return Err(k, std::string(node.status().message()));
    if (absl::Status s = reader.Finish(); !s.ok()) return Err(k, std::string(s.message()));
    node->inputs = std::move(inputs);
    node->origin = absl::StrCat(file_, ": ONNX node ", k, " (", m_.graph().node(k).op_type(), ")");
    spec_.nodes.push_back(std::move(node).value());
    const std::string& out = m_.graph().node(k).output(0);
    value_[out] = name;
    rank_[out] = rank;
    return absl::OkStatus();
  }

  void Alias(int k, const std::string& from) {
    const onnx::NodeProto& n = m_.graph().node(k);
    value_[n.output(0)] = value_[from];
    rank_[n.output(0)] = rank_[from];
    flat_gap_[n.output(0)] = flat_gap_[from];
  }

  // The one node reading `value`, or -1.
  int OnlyConsumer(const std::string& value) const {
    if (uses_.count(value) == 0 || uses_.at(value) != 1) return -1;
    const onnx::GraphProto& g = m_.graph();
    for (int k = 0; k < g.node_size(); ++k) {
      for (const std::string& in : g.node(k).input()) {
        if (in == value) return k;
      }
    }
    return -1;
  }

  absl::Status Node(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      return Err(k, absl::StrCat("op domain '", n.domain(), "' is not imported"));
    const std::string& op = n.op_type();
    if (n.output_size() < 1) return Err(k, "has no output");
    for (int o = 1; o < n.output_size(); ++o) {
      if (!n.output(o).empty() && uses_[n.output(o)] > 0) {
        return Err(k, absl::StrCat("output ", o, " ('", n.output(o), "') is read; only the first output is imported"));
      }
    }
    if (op == "Constant") {
      if (n.attribute_size() != 1 || n.attribute(0).name() != "value")
        return Err(k, "only a Constant with a `value` tensor is imported");
      absl::StatusOr<OnnxTensor> v = FromProto(n.attribute(0).t(), absl::StrCat(file_, ": Constant ", n.output(0)));
      if (!v.ok()) return v.status();
      consts_[n.output(0)] = std::move(v).value();
      return absl::OkStatus();
    }
    if (op == "Identity" || op == "Dropout") {
      if (op == "Dropout" && n.input_size() >= 3 && !n.input(2).empty())
        return Err(k, "input training_mode is not imported");
      if (absl::Status s = CheckAttributes(k, {"ratio", "seed"}); !s.ok()) return s;
      if (absl::StatusOr<std::string> x = Activation(k, 0); !x.ok()) return x.status();
      Alias(k, n.input(0));
      return absl::OkStatus();
    }
    if (op == "Conv") return Conv(k);
    if (op == "Gemm" || op == "MatMul") return Dense(k);
    if (op == "BatchNormalization") return BatchNorm(k);
    if (op == "MaxPool" || op == "AveragePool") return Pool(k);
    if (op == "Relu" || op == "Sigmoid" || op == "Tanh" || op == "HardSwish" || op == "LeakyRelu") {
      if (absl::Status s =
              CheckAttributes(k, op == "LeakyRelu" ? std::vector<std::string>{"alpha"} : std::vector<std::string>{});
          !s.ok()) {
        return s;
      }
      ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
      YAML::Node p(YAML::NodeType::Map);
      if (op == "LeakyRelu") p["negative_slope"] = FloatAttr(n, "alpha", 0.01f);
      const std::string q = op == "Relu"        ? "relu"
                            : op == "Sigmoid"   ? "sigmoid"
                            : op == "Tanh"      ? "tanh"
                            : op == "HardSwish" ? "hardswish"
                                                : "leaky_relu";
      return Add(k, NodeName(k), q, p, {x}, rank_[n.input(0)]);
    }
    if (op == "Clip") return Clip(k);
    if (op == "GlobalAveragePool") {
      if (absl::Status s = CheckAttributes(k, {}); !s.ok()) return s;
      ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
      if (rank_[n.input(0)] != 3) return Err(k, "needs a [batch, C, H, W] input");
      // quantlab's global_avg_pool outputs [C]; ONNX's [C, 1, 1], which a Flatten or Reshape then flattens.
      absl::Status s = Add(k, NodeName(k), "global_avg_pool", YAML::Node(YAML::NodeType::Map), {x}, 1);
      flat_gap_[n.output(0)] = true;
      return s;
    }
    if (op == "Flatten") {
      if (absl::Status s = CheckAttributes(k, {"axis"}); !s.ok()) return s;
      if (IntAttr(n, "axis", 1) != 1)
        return Err(k, absl::StrCat("attribute axis = ", IntAttr(n, "axis", 1), " (only 1 is imported)"));
      return FlattenLike(k);
    }
    if (op == "Reshape") {
      if (absl::Status s = CheckAttributes(k, {"allowzero"}); !s.ok()) return s;
      const OnnxTensor* shape = Const(k, 1);
      if (shape == nullptr || shape->dtype != DType::kInt64) return Err(k, "the shape must be a constant int64 tensor");
      const bool flatten = shape->numel() == 2 && (shape->i[0] == 0 || shape->i[0] == -1) &&
                           (shape->i[1] == -1 || shape->i[1] > 0) && !(shape->i[0] == -1 && shape->i[1] == -1);
      if (!flatten) {
        return Err(
            k, absl::StrCat("shape [", absl::StrJoin(shape->i, ", "), "]: only a flatten to [batch, -1] is imported"));
      }
      return FlattenLike(k);
    }
    if (op == "Mul") return Mul(k);
    if (op == "Add") {
      if (absl::Status s = CheckAttributes(k, {}); !s.ok()) return s;
      if (Const(k, 0) != nullptr || Const(k, 1) != nullptr) {
        return Err(k, "an Add of a constant is imported only as the bias right after a MatMul");
      }
      ASSIGN_OR_RETURN(std::string a, Activation(k, 0));
      ASSIGN_OR_RETURN(std::string b, Activation(k, 1));
      return Add(k, NodeName(k), "add", YAML::Node(YAML::NodeType::Map), {a, b}, rank_[n.input(0)]);
    }
    if (op == "Concat") {
      if (absl::Status s = CheckAttributes(k, {"axis"}); !s.ok()) return s;
      const int64_t axis = IntAttr(n, "axis", 0);
      std::vector<std::string> ins;
      for (int i = 0; i < n.input_size(); ++i) {
        ASSIGN_OR_RETURN(std::string x, Activation(k, i));
        ins.push_back(x);
      }
      const int rank = rank_[n.input(0)];
      if (axis != 1 && axis != -(rank + 1))
        return Err(k, absl::StrCat("attribute axis = ", axis, " (only the channel axis 1 is imported)"));
      return Add(k, NodeName(k), "concat", YAML::Node(YAML::NodeType::Map), ins, rank);
    }
    return Err(k, absl::StrCat("op ", op, " is not imported (see quant/onnx/onnx_model.h for the list)"));
  }

  absl::Status FlattenLike(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    if (rank_[n.input(0)] == 1) {
      Alias(k, n.input(0));  // already [batch, features] in quantlab (e.g. after global_avg_pool)
      return absl::OkStatus();
    }
    return Add(k, NodeName(k), "flatten", YAML::Node(YAML::NodeType::Map), {x}, 1);
  }

  absl::Status Conv(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (absl::Status s = CheckAttributes(k, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
        !s.ok()) {
      return s;
    }
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    ASSIGN_OR_RETURN(const OnnxTensor* w, FloatConst(k, 1, "the weight"));
    if (rank_[n.input(0)] != 3 || w->shape.size() != 4)
      return Err(k, "only 2-D convolutions ([batch, C, H, W]) are imported");
    const int64_t kh = w->shape[2], kw = w->shape[3];
    if (kh != kw) return Err(k, absl::StrCat("kernel ", kh, "x", kw, ": only square kernels are imported"));
    const std::vector<int64_t> ks = IntsAttr(n, "kernel_shape");
    if (!ks.empty() && ks != std::vector<int64_t>{kh, kw})
      return Err(k, "attribute kernel_shape differs from the weight's");
    const std::vector<int64_t> dil = IntsAttr(n, "dilations"), strides = IntsAttr(n, "strides"),
                               pads = IntsAttr(n, "pads");
    if (!AllEqual(dil, 1))
      return Err(k, absl::StrCat("attribute dilations = [", absl::StrJoin(dil, ", "), "] (only 1 is imported)"));
    if (!strides.empty() && (strides.size() != 2 || strides[0] != strides[1])) {
      return Err(
          k, absl::StrCat("attribute strides = [", absl::StrJoin(strides, ", "), "]: only equal strides are imported"));
    }
    const std::string auto_pad = AutoPad(n);
    if (auto_pad != "NOTSET" && auto_pad != "VALID")
      return Err(k, absl::StrCat("attribute auto_pad = ", auto_pad, " (NOTSET or VALID are imported)"));
    if (!pads.empty() && (pads.size() != 4 || !AllEqual(pads, pads[0]))) {
      return Err(k, absl::StrCat("attribute pads = [", absl::StrJoin(pads, ", "),
                                 "]: only the same padding on every side is imported"));
    }
    const int64_t group = IntAttr(n, "group", 1);
    const OnnxTensor* b = nullptr;
    if (n.input_size() > 2 && !n.input(2).empty()) {
      ASSIGN_OR_RETURN(b, FloatConst(k, 2, "the bias"));
      if (b->numel() != w->shape[0]) return Err(k, "the bias must hold one value per output channel");
    }
    YAML::Node p(YAML::NodeType::Map);
    p["out_channels"] = w->shape[0];
    p["in_channels"] = w->shape[1] * group;
    p["kernel"] = kh;
    p["stride"] = strides.empty() ? 1 : strides[0];
    p["padding"] = pads.empty() || auto_pad == "VALID" ? 0 : pads[0];
    p["groups"] = group;
    p["bias"] = b != nullptr;
    const std::string name = NodeName(k);
    (*state_)[name + ".weight"] = *w;
    if (b != nullptr) (*state_)[name + ".bias"] = *b;
    weighted_[n.output(0)] = name;
    return Add(k, name, "conv2d", p, {x}, 3);
  }

  static std::string AutoPad(const onnx::NodeProto& n) { return StringAttr(n, "auto_pad", "NOTSET"); }

  // Gemm (alpha = beta = 1, transA = 0) or MatMul with a constant weight, and
  // the Add of a constant bias that follows a MatMul: linear.
  absl::Status Dense(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    const bool gemm = n.op_type() == "Gemm";
    if (absl::Status s = CheckAttributes(
            k, gemm ? std::vector<std::string>{"alpha", "beta", "transA", "transB"} : std::vector<std::string>{});
        !s.ok()) {
      return s;
    }
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    if (rank_[n.input(0)] != 1) return Err(k, "the input must be [batch, features] (flatten it first)");
    ASSIGN_OR_RETURN(const OnnxTensor* bw, FloatConst(k, 1, "the weight"));
    if (bw->shape.size() != 2) return Err(k, "the weight must be 2-D");
    if (gemm && (FloatAttr(n, "alpha", 1.0f) != 1.0f || IntAttr(n, "transA", 0) != 0)) {
      return Err(k, "only alpha = 1 and transA = 0 are imported");
    }
    const bool trans_b = gemm && IntAttr(n, "transB", 0) != 0;
    const int64_t out = trans_b ? bw->shape[0] : bw->shape[1], in = trans_b ? bw->shape[1] : bw->shape[0];
    // quantlab's weight is [out, in] (PyTorch's layout).
    OnnxTensor w = OnnxTensor::Zeros(DType::kFloat, {out, in});
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t i = 0; i < in; ++i) w.f[o * in + i] = trans_b ? bw->f[o * in + i] : bw->f[i * out + o];
    }
    const OnnxTensor* bias = nullptr;
    int bias_add = -1;
    if (gemm && n.input_size() > 2 && !n.input(2).empty()) {
      ASSIGN_OR_RETURN(bias, FloatConst(k, 2, "C"));
      if (FloatAttr(n, "beta", 1.0f) != 1.0f) return Err(k, "only beta = 1 is imported");
    } else if (!gemm) {
      const int c = OnlyConsumer(n.output(0));
      if (c >= 0 && m_.graph().node(c).op_type() == "Add") {
        const onnx::NodeProto& a = m_.graph().node(c);
        const int other = a.input(0) == n.output(0) ? 1 : 0;
        auto it = consts_.find(a.input(other));
        if (it != consts_.end()) {
          bias = &it->second;
          bias_add = c;
        }
      }
    }
    if (bias != nullptr && (!bias->is_float() || bias->numel() != out))
      return Err(k, absl::StrCat("the bias must hold ", out, " floats"));
    YAML::Node p(YAML::NodeType::Map);
    p["in_features"] = in;
    p["out_features"] = out;
    p["bias"] = bias != nullptr;
    const std::string name = NodeName(k);
    (*state_)[name + ".weight"] = w;
    if (bias != nullptr) {
      OnnxTensor b = *bias;
      b.shape = {out};
      (*state_)[name + ".bias"] = b;
    }
    weighted_[n.output(0)] = name;
    if (absl::Status s = Add(k, name, "linear", p, {x}, 1); !s.ok()) return s;
    if (bias_add >= 0) {
      fused_.insert(bias_add);
      value_[m_.graph().node(bias_add).output(0)] = name;
      weighted_[m_.graph().node(bias_add).output(0)] = name;
      rank_[m_.graph().node(bias_add).output(0)] = 1;
    }
    return absl::OkStatus();
  }

  absl::Status BatchNorm(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (absl::Status s = CheckAttributes(k, {"epsilon", "momentum", "training_mode"}); !s.ok()) return s;
    if (IntAttr(n, "training_mode", 0) != 0) return Err(k, "attribute training_mode = 1 is not imported");
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    const char* names[] = {"", "scale", "B", "input_mean", "input_var"};
    const char* ours[] = {"", "weight", "bias", "running_mean", "running_var"};
    const std::string name = NodeName(k);
    for (int i = 1; i <= 4; ++i) {
      ASSIGN_OR_RETURN(const OnnxTensor* t, FloatConst(k, i, names[i]));
      OnnxTensor v = *t;
      v.shape = {t->numel()};
      (*state_)[absl::StrCat(name, ".", ours[i])] = v;
    }
    const int rank = rank_[n.input(0)];
    YAML::Node p(YAML::NodeType::Map);
    p["eps"] = FloatAttr(n, "epsilon", 1e-5f);
    // ONNX: running = running * momentum + batch * (1 - momentum); PyTorch (and quantlab) the other way round.
    p["momentum"] = 1.0 - FloatAttr(n, "momentum", 0.9f);
    return Add(k, name, rank == 3 ? "batchnorm2d" : "batchnorm1d", p, {x}, rank);
  }

  absl::Status Pool(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    const bool max = n.op_type() == "MaxPool";
    if (absl::Status s =
            CheckAttributes(k, max ? std::vector<std::string>{"auto_pad", "ceil_mode", "dilations", "kernel_shape",
                                                              "pads", "storage_order", "strides"}
                                   : std::vector<std::string>{"auto_pad", "ceil_mode", "count_include_pad",
                                                              "kernel_shape", "pads", "strides"});
        !s.ok()) {
      return s;
    }
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    if (rank_[n.input(0)] != 3) return Err(k, "only 2-D pooling ([batch, C, H, W]) is imported");
    const std::vector<int64_t> ks = IntsAttr(n, "kernel_shape"), strides = IntsAttr(n, "strides"),
                               pads = IntsAttr(n, "pads");
    if (ks.size() != 2 || ks[0] != ks[1])
      return Err(k, absl::StrCat("attribute kernel_shape = [", absl::StrJoin(ks, ", "),
                                 "]: only square windows are imported"));
    if (!strides.empty() && (strides.size() != 2 || strides[0] != strides[1]))
      return Err(k, "only equal strides are imported");
    if (!AllEqual(pads, 0))
      return Err(k,
                 absl::StrCat("attribute pads = [", absl::StrJoin(pads, ", "), "]: only unpadded pooling is imported"));
    if (IntAttr(n, "ceil_mode", 0) != 0) return Err(k, "attribute ceil_mode = 1 is not imported (floor mode only)");
    if (!AllEqual(IntsAttr(n, "dilations"), 1)) return Err(k, "only dilation 1 is imported");
    const std::string auto_pad = AutoPad(n);
    if (auto_pad != "NOTSET" && auto_pad != "VALID")
      return Err(k, absl::StrCat("attribute auto_pad = ", auto_pad, " is not imported"));
    YAML::Node p(YAML::NodeType::Map);
    p["kernel"] = ks[0];
    p["stride"] = strides.empty() ? 1 : strides[0];
    return Add(k, NodeName(k), max ? "maxpool2d" : "avgpool2d", p, {x}, 3);
  }

  // Mul by a constant (a scalar or one value per output channel) right after a
  // Conv / Gemm / MatMul whose output nothing else reads: folded into that
  // layer's weight rows and bias, exactly as the product distributes.
  absl::Status Mul(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (absl::Status s = CheckAttributes(k, {}); !s.ok()) return s;
    const int ci = Const(k, 1) != nullptr ? 1 : Const(k, 0) != nullptr ? 0 : -1;
    if (ci < 0) return Err(k, "a Mul of two activations is not imported");
    ASSIGN_OR_RETURN(const OnnxTensor* c, FloatConst(k, ci, "the factor"));
    const std::string& x = n.input(1 - ci);
    auto layer = weighted_.find(x);
    if (layer == weighted_.end() || uses_[x] != 1) {
      return Err(
          k, "a Mul by a constant is imported only right after a Conv, Gemm or MatMul whose output nothing else reads");
    }
    OnnxTensor& w = (*state_)[layer->second + ".weight"];
    const int64_t out = w.shape[0], per = w.numel() / out;
    int64_t channels_in_c = 0;
    for (int64_t d : c->shape) channels_in_c += d > 1;
    if (c->numel() != 1 && (c->numel() != out || channels_in_c > 1)) {
      return Err(k, absl::StrCat("the factor ", c->ShapeString(),
                                 " must be a scalar or hold one value per output channel (", out, ")"));
    }
    for (int64_t o = 0; o < out; ++o) {
      const float f = c->f[c->numel() == 1 ? 0 : o];
      for (int64_t j = 0; j < per; ++j) w.f[o * per + j] *= f;
      auto b = state_->find(layer->second + ".bias");
      if (b != state_->end()) b->second.f[o] *= f;
    }
    Alias(k, x);
    return absl::OkStatus();
  }

  absl::Status Clip(int k) {
    const onnx::NodeProto& n = m_.graph().node(k);
    if (absl::Status s = CheckAttributes(k, {}); !s.ok()) return s;
    ASSIGN_OR_RETURN(std::string x, Activation(k, 0));
    const OnnxTensor* lo = Const(k, 1);
    const OnnxTensor* hi = Const(k, 2);
    if ((n.input_size() > 1 && !n.input(1).empty() && lo == nullptr) ||
        (n.input_size() > 2 && !n.input(2).empty() && hi == nullptr)) {
      return Err(k, "min and max must be constants");
    }
    if ((lo != nullptr && (!lo->is_float() || lo->numel() != 1)) ||
        (hi != nullptr && (!hi->is_float() || hi->numel() != 1))) {
      return Err(k, "min and max must be float scalars");
    }
    const int rank = rank_[n.input(0)];
    if (lo != nullptr && lo->f[0] == 0.0f && hi != nullptr && hi->f[0] == 6.0f) {
      return Add(k, NodeName(k), "relu6", YAML::Node(YAML::NodeType::Map), {x}, rank);
    }
    if (lo != nullptr && lo->f[0] == 0.0f && hi == nullptr)
      return Add(k, NodeName(k), "relu", YAML::Node(YAML::NodeType::Map), {x}, rank);
    if (lo == nullptr || hi == nullptr) return Err(k, "a Clip with one open side is imported only as ReLU (min 0)");
    YAML::Node p(YAML::NodeType::Map);
    p["min_val"] = lo->f[0];
    p["max_val"] = hi->f[0];
    return Add(k, NodeName(k), "hardtanh", p, {x}, rank);
  }

  const onnx::ModelProto& m_;
  const std::string& file_;
  std::map<std::string, OnnxTensor>* state_;
  int opset_ = 0;
  std::map<std::string, OnnxTensor> consts_;
  std::map<std::string, std::string> value_;  // ONNX value -> quantlab value ("input" or a node name)
  std::map<std::string, int> rank_;           // ONNX value -> quantlab per-sample rank
  std::map<std::string, bool> flat_gap_;
  std::map<std::string, int> uses_;
  std::set<int> fused_;  // ONNX nodes folded into an earlier one (the bias Add of a MatMul)
  std::set<std::string> names_;
  std::map<std::string, std::string> weighted_;  // ONNX output of a Conv/Gemm/MatMul -> its quantlab node
  nn::GraphSpec spec_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<OnnxModel>> OnnxModel::FromProto(onnx::ModelProto model, std::string file) {
  auto m = std::make_unique<OnnxModel>();
  m->proto_ = std::move(model);
  m->file_ = std::move(file);
  return m;
}

absl::StatusOr<std::unique_ptr<nn::Model>> OnnxModel::Create(ParamReader& p) {
  std::string path =
      p.String("path", "", "the .onnx file (relative: to the config file's directory, then the working directory)");
  const std::string layout = p.String("input_layout", "NCHW", "the layout of the model's input; only NCHW is imported");
  if (p.describing()) return std::unique_ptr<nn::Model>(std::make_unique<OnnxModel>());
  if (path.empty()) {
    p.Fail("path", "expected the path of an .onnx file");
    return p.status();
  }
  if (layout != "NCHW") {
    p.Fail("input_layout", absl::StrCat("'", layout, "': only NCHW is imported"));
    return p.status();
  }
  if (!std::filesystem::path(path).is_absolute() && !p.file().empty()) {
    const std::filesystem::path beside = std::filesystem::path(p.file()).parent_path() / path;
    if (std::filesystem::exists(beside)) path = beside.string();
  }
  absl::StatusOr<onnx::ModelProto> proto = ReadModelFile(path);
  if (!proto.ok()) {
    p.Fail("path", std::string(proto.status().message()));
    return p.status();
  }
  absl::StatusOr<std::unique_ptr<OnnxModel>> m = FromProto(std::move(proto).value(), path);
  if (!m.ok()) return m.status();
  if (absl::Status s = p.status(); !s.ok()) return s;
  return std::unique_ptr<nn::Model>(std::move(m).value());
}

absl::StatusOr<nn::GraphSpec> OnnxModel::MakeGraph(const nn::Shape& sample_shape, int) {
  state_.clear();
  Importer importer(proto_, file_, &state_);
  return importer.Run(sample_shape);
}

absl::Status OnnxModel::AfterBuild() {
  std::set<std::string> set;
  for (auto& [name, tensor] : StateTensors()) {
    auto it = state_.find(name);
    if (it == state_.end()) continue;
    const OnnxTensor& v = it->second;
    if (v.shape != tensor->shape()) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": ", name, " is ", v.ShapeString(), " in the file, ",
                                                     ShapeToString(tensor->shape()), " in the imported layer"));
    }
    if (!v.f.empty()) std::memcpy(tensor->data(), v.f.data(), v.f.size() * sizeof(float));
    set.insert(name);
  }
  for (const auto& [name, v] : state_) {
    if (set.count(name) == 0) return absl::InternalError(absl::StrCat(file_, ": no layer takes ", name));
  }
  return absl::OkStatus();
}

QUANTLAB_REGISTER(nn::Model, "onnx", OnnxModel::Create,
                  "a float ONNX model (opsets 11-17) imported as a graph; its initializers become the parameters");

}  // namespace onnx_io
}  // namespace quant
