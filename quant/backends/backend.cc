#include "quant/backends/backend.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

std::string Describe(const WeightSupport& w) {
  std::vector<std::string> g;
  if (w.per_tensor) g.push_back("per-tensor");
  if (w.per_channel) g.push_back("per-channel");
  return absl::StrCat(DTypeName(w.activation), " activations with ", DTypeName(w.weight), " weights (",
                      absl::StrJoin(g, "/"), w.weight_zero_point ? ", any weight zero point" : ", symmetric only",
                      w.note.empty() ? "" : absl::StrCat("; ", w.note), ")");
}

std::string DescribeAll(const std::vector<WeightSupport>& all) {
  if (all.empty()) return "none";
  std::vector<std::string> parts;
  for (const WeightSupport& w : all) parts.push_back(Describe(w));
  return absl::StrJoin(parts, "; ");
}

// The activation-dtype rule, shared by both checks.
absl::Status CheckActivation(DType act, const BackendProfile& p, const std::string& where) {
  if (p.float_model || std::find(p.activation_dtypes.begin(), p.activation_dtypes.end(), act) !=
                           p.activation_dtypes.end()) {
    return absl::OkStatus();
  }
  std::vector<std::string> names;
  for (DType d : p.activation_dtypes) names.push_back(DTypeName(d));
  return absl::UnimplementedError(absl::StrCat(where, "rule: ", DTypeName(act),
                                               " activations are not supported (supported: ",
                                               absl::StrJoin(names, ", "), ")"));
}

absl::Status CheckSpecAt(const LayerQuantSpec& spec, const BackendProfile& p, const std::string& where) {
  if (p.float_model) return absl::OkStatus();  // runs the float model: quantization is irrelevant
  RETURN_IF_ERROR(CheckActivation(spec.activation, p, where));
  const std::vector<WeightSupport>& rules = spec.kind == "conv2d" ? p.conv2d : p.fully_connected;
  auto fail = [&](const std::string& rule) {
    return absl::UnimplementedError(
        absl::StrCat(where, rule, "; supported for ", spec.kind, ": ", DescribeAll(rules)));
  };
  const WeightSupport* match = nullptr;
  for (const WeightSupport& w : rules) {
    if (w.activation == spec.activation && w.weight == spec.weight) match = &w;
  }
  if (match == nullptr) {
    return fail(absl::StrCat("rule: ", DTypeName(spec.weight), " weights with ", DTypeName(spec.activation),
                             " activations are not supported"));
  }
  if (spec.per_channel && !match->per_channel) {
    return fail(absl::StrCat("rule: per-channel weights are not supported with ", DTypeName(spec.activation),
                             " activations and ", DTypeName(spec.weight), " weights"));
  }
  if (!spec.per_channel && !match->per_tensor) {
    return fail("rule: per-tensor weights are not supported for this combination");
  }
  if (!match->weight_zero_point && !spec.symmetric) {
    return fail("rule: weights must be symmetric (zero point 0)");
  }
  if (spec.bits < p.min_weight_bits || spec.bits > p.max_weight_bits) {
    return fail(absl::StrCat("rule: weight bit width ", spec.bits, " is outside [", p.min_weight_bits, ", ",
                             p.max_weight_bits, "]"));
  }
  return absl::OkStatus();
}

// Checks one weighted layer of a model against the rules for its kind.
template <typename Op>
absl::Status CheckWeighted(const QuantizedModel& m, int i, const Op& op, const BackendProfile& p,
                           const std::string& where) {
  if (p.float_model) {
    if (op.float_weights_size() == 0) {
      return absl::UnimplementedError(absl::StrCat(
          where, "rule: the float backends run the float model, and this layer has no float_weights"));
    }
    return absl::OkStatus();
  }
  const WeightQuant& wq = op.weight_quant();
  LayerQuantSpec spec;
  spec.layer = m.layers(i).name();
  spec.kind = LayerKind(m.layers(i));
  spec.activation = m.input().dtype();
  spec.weight = wq.dtype();
  spec.per_channel = IsPerChannel(wq);
  spec.bits = wq.bits();
  int first_nonzero = -1;
  for (int j = 0; j < wq.zero_point_size() && first_nonzero < 0; ++j) {
    if (wq.zero_point(j) != 0) first_nonzero = j;
  }
  spec.symmetric = first_nonzero < 0;
  absl::Status s = CheckSpecAt(spec, p, where);
  if (!s.ok() && !spec.symmetric && absl::StrContains(s.message(), "must be symmetric")) {
    return absl::UnimplementedError(absl::StrCat(s.message(), " (weight_quant.zero_point[", first_nonzero,
                                                 "] is ", wq.zero_point(first_nonzero), ")"));
  }
  RETURN_IF_ERROR(s);
  if (p.max_requantization_scale > 0) {
    const double s_in = i == 0 ? m.input().scale() : m.layers(i - 1).output().scale();
    for (int o = 0; o < op.output_channels(); ++o) {
      const double r = s_in * WeightScale(wq, o) / m.layers(i).output().scale();
      if (r >= p.max_requantization_scale) {
        return absl::UnimplementedError(absl::StrCat(where, "rule: requantization scale s_in*s_w/s_out must be below ",
                                                     p.max_requantization_scale, ", output channel ", o, " has ", r));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

void SupportEveryDtype(const std::string& note, BackendProfile* profile) {
  for (DType a : {INT8, UINT8}) {
    for (DType w : {INT8, UINT8}) {
      const WeightSupport s{a, w, /*per_tensor=*/true, /*per_channel=*/true, /*weight_zero_point=*/true, note};
      profile->fully_connected.push_back(s);
      profile->conv2d.push_back(s);
    }
  }
}

absl::Status CheckLayerSpec(const LayerQuantSpec& spec, const BackendProfile& p) {
  return CheckSpecAt(spec, p, absl::StrCat("backend '", p.backend, "' cannot run layer '", spec.layer, "' (",
                                           spec.kind, "): "));
}

absl::Status CheckProfile(const QuantizedModel& m, const BackendProfile& p) {
  RETURN_IF_ERROR(CheckActivation(m.input().dtype(), p,
                                  absl::StrCat("backend '", p.backend, "' cannot run this model: ")));
  for (int i = 0; i < m.layers_size(); ++i) {
    const Layer& l = m.layers(i);
    const std::string where = absl::StrCat("backend '", p.backend, "' cannot run ", LayerLabel(m, i), ": ");
    if (l.has_fully_connected()) {
      RETURN_IF_ERROR(CheckWeighted(m, i, l.fully_connected(), p, where));
    } else if (l.has_conv2d()) {
      if (!p.grouped_conv && l.conv2d().groups() != 1) {
        return absl::UnimplementedError(absl::StrCat(where, "rule: grouped/depthwise convolution (groups ",
                                                     l.conv2d().groups(), ") is not supported"));
      }
      RETURN_IF_ERROR(CheckWeighted(m, i, l.conv2d(), p, where));
    } else if (l.has_max_pool2d() && !p.max_pool2d) {
      return absl::UnimplementedError(absl::StrCat(where, "rule: max_pool2d is not supported"));
    } else if (l.has_max_pool2d() && !p.max_pool2d_single_element &&
               l.max_pool2d().kernel_h() * l.max_pool2d().kernel_w() == 1) {
      return absl::UnimplementedError(
          absl::StrCat(where, "rule: a max_pool2d window of one element is not supported (drop the layer)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Backend::Prepare(const QuantizedModel& model) {
  prepared_ = false;
  RETURN_IF_ERROR(ValidateQuantizedModel(model));
  RETURN_IF_ERROR(CheckProfile(model, profile()));
  model_ = model;
  ASSIGN_OR_RETURN(shapes_, InferShapes(model_));
  RETURN_IF_ERROR(PrepareImpl());
  prepared_ = true;
  set_profiling(profiling_);
  return absl::OkStatus();
}

absl::Status Backend::Run(const float* input, int64_t batch, RunOutput* output) {
  if (!prepared_) {
    return absl::FailedPreconditionError(absl::StrCat("backend '", name(), "': Run before a successful Prepare"));
  }
  if (batch <= 0) return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': batch must be positive"));
  return RunImpl(input, batch, output);
}

absl::Status Backend::Run(const Tensor& input, RunOutput* output) {
  int64_t per_image = 1;
  for (int64_t d : shapes_.empty() ? Shape{} : shapes_[0]) per_image *= d;
  if (input.rank() < 1 || shapes_.empty() || input.numel() % per_image != 0 ||
      input.numel() / per_image != input.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': input ", input.ShapeString(),
                                                   " is not a batch of ", ShapeToString(shapes_.empty() ? Shape{} : shapes_[0]),
                                                   " images (NHWC)"));
  }
  return Run(input.data(), input.dim(0), output);
}

void Backend::FinishIntegerOutput(int64_t batch, RunOutput* output) const {
  output->shape = {batch};
  for (int64_t d : shapes_.back()) output->shape.push_back(d);
  const TensorQuant& q = model_.layers(model_.layers_size() - 1).output();
  output->dtype = q.dtype();
  output->logits.resize(output->quantized.size());
  for (size_t i = 0; i < output->quantized.size(); ++i) {
    output->logits[i] = q.scale() * static_cast<float>(output->quantized[i] - q.zero_point());
  }
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name) {
  ParamReader reader(YAML::Node(), "<defaults>", "backend");
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, Registry<Backend>::Get().Create(name, reader));
  RETURN_IF_ERROR(reader.Finish());
  return backend;
}

}  // namespace quant::backends
