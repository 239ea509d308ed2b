#include "quant/quantizers/format_cast_quantizer.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

constexpr char kFormatHelp[] =
    "number format: a name (bf16, fp16, fp8_e4m3, posit16, mxfp4_e2m1, ...) or a map "
    "{name: ..., <the format's own keys: rounding, seed, overflow, ...>}";

}  // namespace

absl::StatusOr<std::unique_ptr<Quantizer>> FormatCastQuantizer::Create(ParamReader& p) {
  if (p.describing()) {
    p.RequiredString("format", kFormatHelp);
    return absl::InvalidArgumentError("describing");  // only the declarations matter
  }
  // The raw value decides the form (a const node: operator[] must not insert).
  const YAML::Node& node = p.node();
  const YAML::Node raw = node.IsMap() ? node["format"] : YAML::Node(YAML::NodeType::Undefined);
  auto& registry = Registry<NumberFormat>::Get();
  std::string name;
  absl::StatusOr<std::unique_ptr<NumberFormat>> format = absl::UnknownError("unset");
  if (raw.IsDefined() && raw.IsMap()) {
    ParamReader& sub = p.Map("format", kFormatHelp);
    name = sub.String("name", "", "format name");
    format = registry.CreateFrom(sub, "name", "", "format name");
    if (!format.ok()) return format.status();
  } else {
    name = p.RequiredString("format", kFormatHelp);
    if (!p.status().ok()) return p.status();
    if (!registry.Contains(name)) {
      // The registry's own message (did you mean, registered names), located at the key.
      ParamReader none(YAML::Node(YAML::NodeType::Undefined), p.file(), p.KeyPath("format"));
      p.Fail("format", std::string(registry.Create(name, none).status().message()));
      return p.status();
    }
    ParamReader defaults(YAML::Node(YAML::NodeType::Undefined), p.file(), p.KeyPath("format"));
    format = registry.Create(name, defaults);
    if (format.ok() && !defaults.status().ok()) format = defaults.status();
    if (!format.ok()) {
      p.Fail("format", std::string(format.status().message()));
      return p.status();
    }
  }
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(new FormatCastQuantizer(name, std::move(format).value()));
}

FormatCastQuantizer::FormatCastQuantizer(std::string format_name,
                                         std::unique_ptr<NumberFormat> format)
    : format_name_(std::move(format_name)), format_(std::move(format)) {
  const FormatProperties& props = format_->properties();
  spec_.bits = props.bits;
  spec_.is_signed = true;
  // Block formats and Flexpoint scale to the data: every finite value fits.
  clip_ = props.block_size != 1 ? std::numeric_limits<float>::infinity()
                                : static_cast<float>(props.largest);
}

absl::Status FormatCastQuantizer::Forward(const Tensor& x, Tensor* y) {
  if (y != &x) {
    if (y->shape() != x.shape()) y->Resize(x.shape());
  }
  const int64_t n = x.numel();
  mask_.resize(n);
  const float* in = x.data();
  for (int64_t i = 0; i < n; ++i) mask_[i] = std::fabs(in[i]) <= clip_;  // false for NaN
  if (!fake_quant_enabled_) {
    if (y != &x) std::copy(in, in + n, y->data());
    return absl::OkStatus();
  }
  const int block = format_->properties().block_size;
  const int64_t row = (block > 1 && x.rank() > 0) ? x.dim(-1) : n;
  float* out = y->data();
  for (int64_t start = 0; start < n; start += std::max<int64_t>(row, 1)) {
    const int64_t len = std::min<int64_t>(row, n - start);
    format_->RoundSpan(absl::MakeConstSpan(in + start, len), absl::MakeSpan(out + start, len));
  }
  return absl::OkStatus();
}

absl::Status FormatCastQuantizer::Backward(const Tensor& grad_y, Tensor* grad_x) {
  if (static_cast<int64_t>(mask_.size()) != grad_y.numel()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "format_cast: Backward() with ", grad_y.numel(), " gradients after a Forward() of ",
        mask_.size(), " values"));
  }
  if (grad_x != &grad_y && grad_x->shape() != grad_y.shape()) grad_x->Resize(grad_y.shape());
  const float* g = grad_y.data();
  float* gx = grad_x->data();
  for (int64_t i = 0; i < grad_y.numel(); ++i) gx[i] = mask_[i] ? g[i] : 0.0f;
  return absl::OkStatus();
}

absl::Status FormatCastQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  const FormatProperties& props = format_->properties();
  if (props.bits > 31 || props.block_size != 1) {
    return absl::UnimplementedError(absl::StrCat(
        "format_cast: integer codes of ", props.name,
        props.bits > 31 ? " (wider than 31 bits)" : " (a block format: its shared scale is not "
                                                   "part of the element pattern)"));
  }
  q->resize(x.numel());
  // Encode may advance the format's stochastic generator (the format is owned, not shared).
  for (int64_t i = 0; i < x.numel(); ++i) (*q)[i] = static_cast<int32_t>(format_->Encode(x[i]));
  return absl::OkStatus();
}

std::string FormatCastQuantizer::Describe() const {
  const FormatProperties& props = format_->properties();
  return absl::StrCat("format_cast ", props.name, " (", props.bits, "-bit, rounding ",
                      RoundingModeName(format_->options().rounding), ", overflow ",
                      format_->options().overflow == OverflowMode::kSaturate ? "saturate" : "format",
                      ")");
}

QUANTLAB_REGISTER(Quantizer, "format_cast", FormatCastQuantizer::Create,
                  "fake quantization through a number format (format: bf16 | {name: ..., ...}), "
                  "clipped straight-through gradient");

}  // namespace quant
