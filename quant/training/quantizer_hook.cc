#include "quant/training/quantizer_hook.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quant {

QuantizerHook::QuantizerHook(std::unique_ptr<Quantizer> quantizer, std::string where,
                             std::shared_ptr<absl::Status> error)
    : quantizer_(std::move(quantizer)), where_(std::move(where)), error_(std::move(error)) {}

std::string QuantizerHook::Describe() const { return quantizer_->Describe(); }

void QuantizerHook::Record(const absl::Status& s) {
  if (error_->ok()) *error_ = absl::Status(s.code(), absl::StrCat(where_, ": ", s.message()));
}

void QuantizerHook::Forward(const Tensor& in, Tensor* out, bool training) {
  if (error_->ok()) {
    quantizer_->set_observer_enabled(training);
    absl::Status s = quantizer_->Forward(in, out);
    if (s.ok()) return;
    Record(s);
  }
  if (out->shape() != in.shape()) out->Resize(in.shape());
  std::copy(in.data(), in.data() + in.numel(), out->data());
}

void QuantizerHook::Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) {
  if (error_->ok()) {
    absl::Status s = quantizer_->Backward(grad_out, grad_in);
    if (s.ok()) return;
    Record(s);
  }
  if (grad_in->shape() != grad_out.shape()) grad_in->Resize(grad_out.shape());
  std::copy(grad_out.data(), grad_out.data() + grad_out.numel(), grad_in->data());
}

}  // namespace quant
