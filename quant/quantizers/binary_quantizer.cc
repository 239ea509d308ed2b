#include "quant/quantizers/binary_quantizer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "quant/core/registry.h"

namespace quant {
namespace {

inline float Sign(float x) { return x >= 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x); }  // NaN stays

std::string ReadGranularity(ParamReader& p, const char* default_value) {
  return p.Choice("granularity", default_value, {"per_channel", "per_tensor"},
                  "scale groups: per_channel = slices along axis 0 (output channels of a "
                  "weight, samples of an activation), per_tensor = one scale");
}

double ReadClip(ParamReader& p) {
  return p.DoubleInRange("clip", 1.0, 1e-6, 1e6,
                         "the STE passes the gradient where |x| <= clip (hardtanh)");
}

}  // namespace

void SignQuantizerBase::Groups(const Tensor& x, bool per_channel, int64_t* groups, int64_t* size) {
  *groups = per_channel && x.rank() >= 1 && x.dim(0) > 0 ? x.dim(0) : 1;
  *size = *groups > 0 ? x.numel() / *groups : 0;
}

absl::Status SignQuantizerBase::Forward(const Tensor& x, Tensor* y) {
  if (y == &x) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(), ": Forward needs y != x"));
  }
  if (input_.shape() != x.shape()) input_.Resize(x.shape());
  std::copy(x.data(), x.data() + x.numel(), input_.data());
  if (y->shape() != x.shape()) y->Resize(x.shape());
  passed_through_ = !fake_quant_enabled_;
  if (passed_through_) {
    std::copy(x.data(), x.data() + x.numel(), y->data());
    return absl::OkStatus();
  }
  return Quantize(x, y);
}

absl::Status SignQuantizerBase::Backward(const Tensor& grad_y, Tensor* grad_x) {
  if (grad_y.shape() != input_.shape()) {
    return absl::FailedPreconditionError(absl::StrCat(
        Describe(), ": Backward() with gradient ", grad_y.ShapeString(), " after a Forward() of ",
        input_.ShapeString()));
  }
  if (grad_x->shape() != grad_y.shape()) grad_x->Resize(grad_y.shape());
  if (passed_through_) {
    std::copy(grad_y.data(), grad_y.data() + grad_y.numel(), grad_x->data());
    return absl::OkStatus();
  }
  Gradient(input_, grad_y, grad_x);
  return absl::OkStatus();
}

// ---- binary ----

absl::StatusOr<std::unique_ptr<Quantizer>> BinaryQuantizer::Create(ParamReader& p) {
  const double clip = ReadClip(p);
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(new BinaryQuantizer(static_cast<float>(clip)));
}

BinaryQuantizer::BinaryQuantizer(float clip) : clip_(clip) {
  spec_.bits = 1;
  spec_.is_signed = true;
  spec_.symmetric = true;
  spec_.quant_min = 0;
  spec_.quant_max = 1;
}

absl::Status BinaryQuantizer::Quantize(const Tensor& x, Tensor* y) {
  const float* in = x.data();
  float* out = y->data();
  for (int64_t i = 0; i < x.numel(); ++i) out[i] = Sign(in[i]);
  return absl::OkStatus();
}

void BinaryQuantizer::Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const {
  const float* in = x.data();
  const float* g = grad_y.data();
  float* gx = grad_x->data();
  for (int64_t i = 0; i < x.numel(); ++i) gx[i] = std::fabs(in[i]) <= clip_ ? g[i] : 0.0f;
}

absl::Status BinaryQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  q->resize(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) (*q)[i] = x[i] >= 0.0f ? 1 : 0;
  return absl::OkStatus();
}

std::string BinaryQuantizer::Describe() const {
  return absl::StrCat("binary sign {-1, +1}, hardtanh STE |x| <= ", clip_);
}

// ---- xnor ----

absl::StatusOr<std::unique_ptr<Quantizer>> XnorQuantizer::Create(ParamReader& p) {
  const double clip = ReadClip(p);
  const std::string granularity = ReadGranularity(p, "per_channel");
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(
      new XnorQuantizer(static_cast<float>(clip), granularity == "per_channel"));
}

XnorQuantizer::XnorQuantizer(float clip, bool per_channel) : clip_(clip), per_channel_(per_channel) {
  spec_.bits = 1;
  spec_.is_signed = true;
  spec_.symmetric = true;
  spec_.quant_min = 0;
  spec_.quant_max = 1;
  spec_.granularity = per_channel ? Granularity::kPerChannel : Granularity::kPerTensor;
  qparams_.granularity = spec_.granularity;
  qparams_.quant_min = 0;
  qparams_.quant_max = 1;
}

absl::Status XnorQuantizer::Quantize(const Tensor& x, Tensor* y) {
  int64_t groups, size;
  Groups(x, per_channel_, &groups, &size);
  qparams_.scale.assign(groups, 0.0f);
  qparams_.zero_point.assign(groups, 0);
  const float* in = x.data();
  float* out = y->data();
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* xs = in + gi * size;
    double sum = 0.0;
    for (int64_t i = 0; i < size; ++i) sum += std::fabs(xs[i]);
    const float alpha = size > 0 ? static_cast<float>(sum / size) : 0.0f;
    qparams_.scale[gi] = alpha;
    for (int64_t i = 0; i < size; ++i) out[gi * size + i] = alpha * Sign(xs[i]);
  }
  return absl::OkStatus();
}

void XnorQuantizer::Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const {
  int64_t groups, size;
  Groups(x, per_channel_, &groups, &size);
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* xs = x.data() + gi * size;
    const float* g = grad_y.data() + gi * size;
    float* gx = grad_x->data() + gi * size;
    const float alpha = qparams_.scale[gi];
    // d alpha / d x_j = sign(x_j) / n, so every element also gets sign(x_j)/n
    // times sum_i g_i sign(x_i).
    double through_alpha = 0.0;
    for (int64_t i = 0; i < size; ++i) through_alpha += static_cast<double>(g[i]) * Sign(xs[i]);
    const float shared = size > 0 ? static_cast<float>(through_alpha / size) : 0.0f;
    for (int64_t i = 0; i < size; ++i) {
      if (std::isnan(xs[i])) {
        gx[i] = 0.0f;
        continue;
      }
      const float ste = std::fabs(xs[i]) <= clip_ ? alpha * g[i] : 0.0f;
      gx[i] = ste + Sign(xs[i]) * shared;
    }
  }
}

absl::Status XnorQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  q->resize(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) (*q)[i] = x[i] >= 0.0f ? 1 : 0;
  return absl::OkStatus();
}

std::string XnorQuantizer::Describe() const {
  return absl::StrCat("xnor alpha*sign, alpha = mean |x| ",
                      per_channel_ ? "per slice of axis 0" : "per tensor", ", STE |x| <= ", clip_);
}

// ---- ternary ----

absl::StatusOr<std::unique_ptr<Quantizer>> TernaryQuantizer::Create(ParamReader& p) {
  const double threshold = p.DoubleInRange(
      "threshold", 0.7, 0.0, 10.0, "delta = threshold * mean |x| (TWN's 0.7)");
  const std::string granularity = ReadGranularity(p, "per_tensor");
  if (!p.status().ok()) return p.status();
  return std::unique_ptr<Quantizer>(
      new TernaryQuantizer(static_cast<float>(threshold), granularity == "per_channel"));
}

TernaryQuantizer::TernaryQuantizer(float threshold, bool per_channel)
    : threshold_(threshold), per_channel_(per_channel) {
  spec_.bits = 2;
  spec_.is_signed = true;
  spec_.symmetric = true;
  spec_.narrow_range = true;
  spec_.quant_min = -1;
  spec_.quant_max = 1;
  spec_.granularity = per_channel ? Granularity::kPerChannel : Granularity::kPerTensor;
  qparams_.granularity = spec_.granularity;
  qparams_.quant_min = -1;
  qparams_.quant_max = 1;
}

absl::Status TernaryQuantizer::Quantize(const Tensor& x, Tensor* y) {
  int64_t groups, size;
  Groups(x, per_channel_, &groups, &size);
  qparams_.scale.assign(groups, 0.0f);
  qparams_.zero_point.assign(groups, 0);
  deltas_.assign(groups, 0.0f);
  const float* in = x.data();
  float* out = y->data();
  for (int64_t gi = 0; gi < groups; ++gi) {
    const float* xs = in + gi * size;
    double sum = 0.0;
    for (int64_t i = 0; i < size; ++i) sum += std::fabs(xs[i]);
    const float delta = size > 0 ? threshold_ * static_cast<float>(sum / size) : 0.0f;
    double kept = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < size; ++i) {
      if (std::fabs(xs[i]) > delta) {
        kept += std::fabs(xs[i]);
        ++count;
      }
    }
    const float alpha = count > 0 ? static_cast<float>(kept / count) : 0.0f;
    deltas_[gi] = delta;
    qparams_.scale[gi] = alpha;
    for (int64_t i = 0; i < size; ++i) {
      const float v = xs[i];
      out[gi * size + i] = std::isnan(v) ? v : (std::fabs(v) > delta ? alpha * Sign(v) : 0.0f);
    }
  }
  return absl::OkStatus();
}

void TernaryQuantizer::Gradient(const Tensor& x, const Tensor& grad_y, Tensor* grad_x) const {
  const float* in = x.data();
  const float* g = grad_y.data();
  float* gx = grad_x->data();
  for (int64_t i = 0; i < x.numel(); ++i) gx[i] = std::isnan(in[i]) ? 0.0f : g[i];
}

absl::Status TernaryQuantizer::QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const {
  if (deltas_.empty()) {
    return absl::FailedPreconditionError("ternary: QuantizeToInt() before a Forward() set delta");
  }
  int64_t groups, size;
  Groups(x, per_channel_, &groups, &size);
  if (groups != static_cast<int64_t>(deltas_.size())) {
    return absl::InvalidArgumentError(absl::StrCat("ternary: ", groups, " groups, but delta has ",
                                                   deltas_.size()));
  }
  q->resize(x.numel());
  for (int64_t i = 0; i < x.numel(); ++i) {
    const float d = deltas_[size > 0 ? i / size : 0];
    (*q)[i] = x[i] > d ? 1 : (x[i] < -d ? -1 : 0);
  }
  return absl::OkStatus();
}

std::string TernaryQuantizer::Describe() const {
  return absl::StrCat("ternary (TWN) delta = ", threshold_, " * mean |x|, ",
                      per_channel_ ? "per slice of axis 0" : "per tensor", ", plain STE");
}

QUANTLAB_REGISTER(Quantizer, "binary", BinaryQuantizer::Create,
                  "sign(x) in {-1,+1} with the hardtanh-clipped STE (BinaryNet)");
QUANTLAB_REGISTER(Quantizer, "xnor", XnorQuantizer::Create,
                  "mean|x| * sign(x) per output channel / sample (XNOR-Net)");
QUANTLAB_REGISTER(Quantizer, "ternary", TernaryQuantizer::Create,
                  "TWN ternary: delta = 0.7 mean|x|, scale = mean |x| above delta");

}  // namespace quant
