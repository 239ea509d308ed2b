#include "quant/onnx/onnx_runner.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "quant/onnx/onnx_ops.h"

namespace quant {
namespace onnx_io {
namespace {

std::string NodeName(const onnx::NodeProto& n, int k) {
  return absl::StrCat("node '", n.name().empty() ? absl::StrCat("#", k) : n.name(), "' (", n.op_type(), ")");
}

// "" if a graph input or output is a tensor of a supported element type.
std::string ValueTypeProblem(const onnx::ValueInfoProto& v) {
  if (!v.has_type()) return "";
  if (!v.type().has_tensor_type())
    return absl::StrCat("value '", v.name(), "' is not a tensor (sequence, map or optional)");
  const int t = v.type().tensor_type().elem_type();
  if (!IsSupportedDType(t)) return absl::StrCat("value '", v.name(), "' has element type ", DTypeName(t));
  return "";
}

}  // namespace

OnnxRunner::OnnxRunner(onnx::ModelProto model, std::string file) : model_(std::move(model)), file_(std::move(file)) {
  for (const onnx::OperatorSetIdProto& o : model_.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") opset_ = static_cast<int>(o.version());
  }
  const onnx::GraphProto& g = model_.graph();
  std::set<std::string> init;
  for (const onnx::TensorProto& t : g.initializer()) {
    init.insert(t.name());
    if (unsupported_.empty() && !IsSupportedDType(t.data_type())) {
      unsupported_ = absl::StrCat("initializer '", t.name(), "' has element type ", DTypeName(t.data_type()));
    }
  }
  for (const onnx::ValueInfoProto& v : g.input()) {
    if (init.count(v.name()) == 0) inputs_.push_back(v.name());
  }
  auto note = [&](const std::string& why) {
    if (unsupported_.empty()) unsupported_ = why;
  };
  if (opset_ == 0) {
    std::string domains;
    for (const onnx::OperatorSetIdProto& o : model_.opset_import())
      domains += (domains.empty() ? "" : ", ") + o.domain();
    note(absl::StrCat("no opset of the default ONNX domain is imported (only: ", domains, ")"));
  } else if (opset_ < kMinRunnerOpset || opset_ > kMaxRunnerOpset) {
    note(absl::StrCat("opset ", opset_, " (opsets ", kMinRunnerOpset, " to ", kMaxRunnerOpset, " are implemented)"));
  }
  if (g.sparse_initializer_size() > 0) note("sparse initializers");
  for (const onnx::ValueInfoProto& v : g.input()) note(ValueTypeProblem(v));
  for (const onnx::ValueInfoProto& v : g.output()) note(ValueTypeProblem(v));
  for (int k = 0; k < g.node_size(); ++k) {
    const std::string why = WhyUnsupported(g.node(k), opset_);
    if (!why.empty()) note(absl::StrCat(NodeName(g.node(k), k), ": ", why));
  }
}

absl::StatusOr<std::vector<OnnxTensor>> OnnxRunner::Run(const std::vector<OnnxTensor>& inputs) const {
  if (!unsupported_.empty()) {
    return absl::UnimplementedError(absl::StrCat(file_, ": cannot run: ", unsupported_));
  }
  const onnx::GraphProto& g = model_.graph();
  if (inputs.size() != inputs_.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(file_, ": the graph has ", inputs_.size(), " inputs, ", inputs.size(), " were given"));
  }
  std::map<std::string, OnnxTensor> values;
  for (const onnx::TensorProto& t : g.initializer()) {
    absl::StatusOr<OnnxTensor> v = FromProto(t, absl::StrCat("initializer '", t.name(), "' in ", file_));
    if (!v.ok()) return v.status();
    values[t.name()] = std::move(v).value();
  }
  for (size_t k = 0; k < inputs.size(); ++k) values[inputs_[k]] = inputs[k];
  for (int k = 0; k < g.node_size(); ++k) {
    const onnx::NodeProto& n = g.node(k);
    const OpSpec* spec = FindOp(n.op_type());
    OpCall call;
    call.node = &n;
    call.opset = opset_;
    call.num_outputs = n.output_size();
    for (const std::string& in : n.input()) {
      if (in.empty()) {
        call.inputs.push_back(nullptr);
        continue;
      }
      auto it = values.find(in);
      if (it == values.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file_, ": ", NodeName(n, k), " reads '", in, "', which no earlier node or input produces"));
      }
      call.inputs.push_back(&it->second);
    }
    std::vector<OnnxTensor> outs;
    const absl::Status s = spec->run(call, &outs);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(file_, ": ", NodeName(n, k), ": ", s.message()));
    for (int o = 0; o < n.output_size() && o < static_cast<int>(outs.size()); ++o) {
      if (!n.output(o).empty()) values[n.output(o)] = std::move(outs[o]);
    }
  }
  std::vector<OnnxTensor> result;
  for (const onnx::ValueInfoProto& v : g.output()) {
    auto it = values.find(v.name());
    if (it == values.end()) {
      return absl::InvalidArgumentError(absl::StrCat(file_, ": graph output '", v.name(), "' is never produced"));
    }
    result.push_back(it->second);
  }
  return result;
}

}  // namespace onnx_io
}  // namespace quant
