#include "quant/nn/model.h"

#include <chrono>
#include <regex>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace quant::nn {

absl::Status Model::Build(const Shape& sample_shape, int num_classes, uint64_t seed) {
  if (num_classes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": needs at least one class"));
  }
  auto made = MakeLayers(sample_shape, num_classes);
  if (!made.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": ", made.status().message()));
  }
  layers_ = std::move(made).value();
  if (layers_.empty()) return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": no layers"));
  std::set<std::string> names;
  Shape shape = sample_shape;
  out_shapes_.clear();
  for (int i = 0; i < num_layers(); ++i) {
    Layer& l = *layers_[i];
    if (!names.insert(l.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat("model ", name(), ": layer ", i, " (", l.name(),
                                                     "): the name is used twice"));
    }
    absl::StatusOr<Shape> out = l.Build(shape);
    if (!out.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model ", name(), ": layer ", i, " (", l.name(), ": ", l.Describe(), ") does not fit its input ",
          ShapeToString(shape), i == 0 ? " (the dataset's sample)" :
          absl::StrCat(" (output of layer ", i - 1, ", ", layers_[i - 1]->name(), ")"), ": ",
          out.status().message()));
    }
    shape = *out;
    out_shapes_.push_back(shape);
  }
  if (shape != Shape{num_classes}) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", name(), ": the last layer (", num_layers() - 1, ", ", layers_.back()->name(),
        ") outputs ", ShapeToString(shape), " per sample, but the dataset has ", num_classes,
        " classes: expected [", num_classes, "]"));
  }
  for (int i = 0; i < num_layers(); ++i) {
    Rng rng = Rng::Stream(seed, static_cast<uint64_t>(i));
    layers_[i]->ResetParameters(rng);
  }
  first_trainable_ = num_layers();
  for (int i = 0; i < num_layers(); ++i) {
    if (!layers_[i]->parameters().empty()) {
      first_trainable_ = i;
      break;
    }
  }
  const size_t n = layers_.size();
  out_.assign(n, Tensor());
  post_.assign(n, Tensor());
  grad_out_.assign(n, Tensor());
  grad_in_.assign(n, Tensor());
  sample_shape_ = sample_shape;
  num_classes_ = num_classes;
  times_.assign(n, LayerTime());
  built_ = true;
  set_training(training_);
  return absl::OkStatus();
}

bool Model::NeedsInputGrad(int i) const {
  // Hooks may carry parameters (PACT, LSQ): then everything after them needs gradients.
  for (int j = 0; j < i; ++j) {
    const Layer& l = *layers_[j];
    if (j >= first_trainable_) return true;
    if (l.output_transform() && !l.output_transform()->parameters().empty()) return true;
    if (l.weight_transform() && !l.weight_transform()->parameters().empty()) return true;
  }
  return false;
}

const Tensor& Model::Forward(const Tensor& x) {
  const Tensor* in = &x;
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0;
  for (int i = 0; i < num_layers(); ++i) {
    Layer& l = *layers_[i];
    if (profiling_) t0 = Clock::now();
    l.Forward(*in, &out_[i]);
    if (TensorTransform* t = l.output_transform()) {
      EnsureShape(&post_[i], out_[i].shape());
      t->Forward(out_[i], &post_[i], training_);
      in = &post_[i];
    } else {
      in = &out_[i];
    }
    if (profiling_) times_[i].forward += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return *in;
}

void Model::Backward(const Tensor& x, const Tensor& dlogits) {
  const Tensor* g = &dlogits;
  using Clock = std::chrono::steady_clock;
  Clock::time_point t0;
  for (int i = num_layers() - 1; i >= 0; --i) {
    Layer& l = *layers_[i];
    if (profiling_) t0 = Clock::now();
    if (TensorTransform* t = l.output_transform()) {
      EnsureShape(&grad_out_[i], out_[i].shape());
      t->Backward(out_[i], *g, &grad_out_[i]);
      g = &grad_out_[i];
    }
    const Tensor* in = &x;
    if (i > 0) in = layers_[i - 1]->output_transform() ? &post_[i - 1] : &out_[i - 1];
    const bool need = NeedsInputGrad(i);
    l.Backward(*in, out_[i], *g, need ? &grad_in_[i] : nullptr);
    if (profiling_) times_[i].backward += std::chrono::duration<double>(Clock::now() - t0).count();
    if (!need) break;
    g = &grad_in_[i];
  }
}

void Model::set_training(bool training) {
  training_ = training;
  for (auto& l : layers_) l->set_training(training);
}

Layer* Model::FindLayer(const std::string& layer_name) {
  for (auto& l : layers_) {
    if (l->name() == layer_name) return l.get();
  }
  return nullptr;
}

absl::StatusOr<std::vector<Layer*>> Model::MatchLayers(const std::string& regex) {
  std::regex re;
  try {
    re = std::regex(regex, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad layer regex '", regex, "': ", e.what()));
  }
  std::vector<Layer*> out;
  for (auto& l : layers_) {
    if (std::regex_match(l->name(), re)) out.push_back(l.get());
  }
  return out;
}

std::vector<std::pair<std::string, Parameter*>> Model::NamedParameters() {
  std::vector<std::pair<std::string, Parameter*>> out;
  for (auto& l : layers_) {
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
  for (auto& l : layers_) {
    for (auto& [n, t] : l->buffers()) out.emplace_back(absl::StrCat(l->name(), ".", n), t);
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
  for (const auto& l : layers_) f += l->ForwardFlopsPerSample();
  return f;
}

int64_t Model::BackwardFlopsPerSample() const {
  int64_t f = 0;
  for (int i = 0; i < num_layers(); ++i) f += layers_[i]->BackwardFlopsPerSample(NeedsInputGrad(i));
  return f;
}

std::string Model::Summary() const {
  std::string s = absl::StrCat("model ", name(), ": input ", ShapeToString(sample_shape_), "\n");
  for (int i = 0; i < num_layers(); ++i) {
    absl::StrAppend(&s, absl::StrFormat("  %2d %-10s %-48s -> %s\n", i, layers_[i]->name(),
                                        layers_[i]->Describe(), ShapeToString(out_shapes_[i])));
  }
  return s;
}

}  // namespace quant::nn
