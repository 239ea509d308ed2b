#include "quant/training/quantizer_transform.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quant {

QuantizerTransform::QuantizerTransform(std::unique_ptr<Quantizer> quantizer, std::string where)
    : quantizer_(std::move(quantizer)), where_(std::move(where)) {
  for (LearnedParameter* p : quantizer_->parameters()) mirrors_.push_back(nn::Parameter{p->name});
}

std::string QuantizerTransform::Describe() const { return quantizer_->Describe(); }

std::vector<nn::Parameter*> QuantizerTransform::parameters() {
  // Shapes only: values already in the mirrors (e.g. just loaded from a
  // checkpoint) are the current ones and must not be overwritten here.
  SyncOut(/*values=*/false, /*grads=*/false);
  std::vector<nn::Parameter*> out;
  for (nn::Parameter& p : mirrors_) out.push_back(&p);
  return out;
}

// Optimizer / checkpoint values -> the quantizer.
void QuantizerTransform::SyncIn() {
  std::vector<LearnedParameter*> learned = quantizer_->parameters();
  for (size_t i = 0; i < learned.size(); ++i) {
    const nn::Parameter& m = mirrors_[i];
    if (m.value.numel() == learned[i]->value.numel() && m.value.numel() > 0) {
      std::copy(m.value.data(), m.value.data() + m.value.numel(), learned[i]->value.data());
    }
  }
}

// The quantizer -> the mirrors (values after an initialisation, gradients).
void QuantizerTransform::SyncOut(bool values, bool grads) {
  std::vector<LearnedParameter*> learned = quantizer_->parameters();
  for (size_t i = 0; i < learned.size(); ++i) {
    nn::Parameter& m = mirrors_[i];
    const Tensor& v = learned[i]->value;
    if (m.value.shape() != v.shape()) {
      m.Allocate(v.shape());
      std::copy(v.data(), v.data() + v.numel(), m.value.data());
    }
    if (values) std::copy(v.data(), v.data() + v.numel(), m.value.data());
    if (grads && learned[i]->grad.numel() == v.numel()) {
      std::copy(learned[i]->grad.data(), learned[i]->grad.data() + v.numel(), m.grad.data());
    }
  }
}

void QuantizerTransform::Record(const absl::Status& s, const char* what) {
  if (s.ok() || !status_.ok()) return;
  status_ = absl::Status(s.code(), absl::StrCat(where_, " quantizer (", quantizer_->Describe(), ") ",
                                                what, ": ", std::string(s.message())));
}

void QuantizerTransform::Forward(const Tensor& in, Tensor* out, bool training) {
  SyncIn();
  const bool observe = (training && !observer_frozen_) || !quantizer_->calibrated();
  quantizer_->set_observer_enabled(observe);
  absl::Status s = quantizer_->Forward(in, out);
  if (!s.ok()) {
    Record(s, "forward");
    if (out != &in) *out = in;
  }
  SyncOut(/*values=*/true, /*grads=*/false);
}

void QuantizerTransform::Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) {
  for (LearnedParameter* p : quantizer_->parameters()) p->grad.Fill(0.0f);
  absl::Status s = quantizer_->Backward(grad_out, grad_in);
  if (!s.ok()) {
    Record(s, "backward");
    if (grad_in != &grad_out) *grad_in = grad_out;
  }
  SyncOut(/*values=*/false, /*grads=*/true);
}

}  // namespace quant
