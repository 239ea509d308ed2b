#include "quant/nn/checkpoint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "quant/core/atomic_file.h"
#include "quant/nn/checkpoint.pb.h"

namespace quant::nn {

absl::Status SaveCheckpoint(Model& model, const std::string& path, const CheckpointInfo& info) {
  quantlab::nn::Checkpoint ckpt;
  ckpt.set_model(model.name());
  ckpt.set_architecture(model.Summary());
  for (int64_t d : model.sample_shape()) ckpt.add_sample_shape(d);
  ckpt.set_num_classes(model.num_classes());
  ckpt.set_seed(info.seed);
  ckpt.set_epochs(info.epochs);
  ckpt.set_test_accuracy(info.test_accuracy);
  ckpt.set_scheme(info.scheme);
  for (auto& [name, t] : model.StateTensors()) {
    quantlab::nn::TensorProto* tp = ckpt.add_tensors();
    tp->set_name(name);
    for (int64_t d : t->shape()) tp->add_shape(d);
    tp->mutable_values()->Add(t->data(), t->data() + t->numel());
  }
  std::string bytes;
  if (!ckpt.SerializeToString(&bytes)) {
    return absl::InternalError(absl::StrCat(path, ": cannot serialise the checkpoint"));
  }
  return WriteFileAtomically(path, bytes);
}

absl::Status LoadCheckpoint(const std::string& path, Model* model) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open the checkpoint"));
  quantlab::nn::Checkpoint ckpt;
  if (!ckpt.ParseFromIstream(&in)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a quantlab checkpoint (parse error)"));
  }
  const std::string prefix =
      absl::StrCat("checkpoint ", path, " (model ", ckpt.model(), ") does not fit model ",
                   model->name(), ": ");
  std::map<std::string, const quantlab::nn::TensorProto*> by_name;
  for (const auto& t : ckpt.tensors()) by_name[t.name()] = &t;
  auto state = model->StateTensors();
  for (auto& [name, t] : state) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "tensor '", name, "' ", t->ShapeString(),
                                                     " is missing from the checkpoint"));
    }
    const Shape shape(it->second->shape().begin(), it->second->shape().end());
    if (shape != t->shape() || it->second->values_size() != t->numel()) {
      return absl::InvalidArgumentError(absl::StrCat(prefix, "tensor '", name, "' is ",
                                                     ShapeToString(shape), " in the checkpoint but ",
                                                     t->ShapeString(), " in the model"));
    }
  }
  for (const auto& t : ckpt.tensors()) {
    bool known = false;
    for (auto& [name, tensor] : state) known = known || name == t.name();
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(prefix, "the checkpoint's tensor '", t.name(), "' is not in the model"));
    }
  }
  for (auto& [name, t] : state) {
    const auto& values = by_name[name]->values();
    std::copy(values.begin(), values.end(), t->data());
  }
  return absl::OkStatus();
}

}  // namespace quant::nn
