#include "quant/backends/backend.h"

#include <immintrin.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

// Checks one weighted op of a model against the rules for its kind.
absl::Status CheckWeighted(const QuantizedModel& m, int i, const BackendProfile& p, const std::string& where) {
  const Op& op = m.ops(i);
  const Tensor& w = m.tensors(WeightTensor(op));
  if (p.float_model) {
    if (w.float_data_size() == 0) {
      return absl::UnimplementedError(absl::StrCat(
          where, "rule: the float backends run the float model, and this op's weights have no float_data"));
    }
    return absl::OkStatus();
  }
  LayerQuantSpec spec;
  spec.layer = op.name();
  spec.kind = OpKind(op);
  spec.activation = m.tensors(op.inputs(0)).dtype();
  spec.weight = w.dtype();
  spec.per_channel = IsPerChannel(w);
  spec.bits = w.bits() == 0 ? 8 : w.bits();
  int first_nonzero = -1;
  for (int j = 0; j < w.zero_point_size() && first_nonzero < 0; ++j) {
    if (w.zero_point(j) != 0) first_nonzero = j;
  }
  spec.symmetric = first_nonzero < 0;
  absl::Status s = CheckSpecAt(spec, p, where);
  if (!s.ok() && !spec.symmetric && absl::StrContains(s.message(), "must be symmetric")) {
    return absl::UnimplementedError(absl::StrCat(s.message(), " (weights zero_point[", first_nonzero, "] is ",
                                                 w.zero_point(first_nonzero), ")"));
  }
  RETURN_IF_ERROR(s);
  if (p.max_requantization_scale > 0) {
    const double s_in = TensorScale(m.tensors(op.inputs(0)));
    const double s_out = TensorScale(m.tensors(op.outputs(0)));
    const int64_t O = m.tensors(WeightTensor(op)).shape(0);
    for (int64_t o = 0; o < O; ++o) {
      const double r = s_in * TensorScale(w, IsPerChannel(w) ? static_cast<int>(o) : 0) / s_out;
      if (r >= p.max_requantization_scale) {
        return absl::UnimplementedError(absl::StrCat(where, "rule: requantization scale s_in*s_w/s_out must be below ",
                                                     p.max_requantization_scale, ", output channel ", o, " has ", r));
      }
    }
  }
  return absl::OkStatus();
}

std::string SupportedOps(const BackendProfile& p) {
  std::vector<std::string> names;
  for (const BackendProfile::OpSupport& o : p.ops) names.push_back(o.kind);
  return absl::StrJoin(names, ", ");
}

absl::Status CheckKindAt(const std::string& kind, DType act, const BackendProfile& p, const std::string& where) {
  const BackendProfile::OpSupport* found = nullptr;
  for (const BackendProfile::OpSupport& o : p.ops) {
    if (o.kind == kind) found = &o;
  }
  if (found == nullptr) {
    return absl::UnimplementedError(absl::StrCat(where, "rule: ", kind, " is not supported by this backend; supported ops: ",
                                                 SupportedOps(p)));
  }
  if (!p.float_model && !found->activation_dtypes.empty() &&
      std::find(found->activation_dtypes.begin(), found->activation_dtypes.end(), act) ==
          found->activation_dtypes.end()) {
    std::vector<std::string> names;
    for (DType d : found->activation_dtypes) names.push_back(DTypeName(d));
    return absl::UnimplementedError(absl::StrCat(where, "rule: ", kind, " with ", DTypeName(act),
                                                 " activations is not supported (supported: ", absl::StrJoin(names, ", "),
                                                 found->note.empty() ? "" : absl::StrCat("; ", found->note), ")"));
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

const std::vector<std::string>& AllOpKinds() {
  static const std::vector<std::string>* kinds = new std::vector<std::string>{
      "fully_connected", "conv2d", "max_pool2d", "average_pool2d", "global_average_pool", "add",
      "concat",          "hardswish", "sigmoid", "tanh",           "flatten",             "reshape"};
  return *kinds;
}

void SupportEveryOp(const std::string& note, BackendProfile* profile) {
  for (const std::string& k : AllOpKinds()) profile->ops.push_back({k, {}, note});
}

absl::Status CheckLayerSpec(const LayerQuantSpec& spec, const BackendProfile& p) {
  return CheckSpecAt(spec, p, absl::StrCat("backend '", p.backend, "' cannot run layer '", spec.layer, "' (",
                                           spec.kind, "): "));
}

absl::Status CheckOpSpec(const std::string& op_name, const std::string& kind, DType activation,
                         const BackendProfile& p) {
  return CheckKindAt(kind, activation, p,
                     absl::StrCat("backend '", p.backend, "' cannot run op '", op_name, "' (", kind, "): "));
}

absl::Status CheckProfile(const QuantizedModel& m, const BackendProfile& p) {
  const DType act = m.tensors(InputTensor(m)).dtype();
  RETURN_IF_ERROR(CheckActivation(act, p, absl::StrCat("backend '", p.backend, "' cannot run this model: ")));
  for (int i = 0; i < m.ops_size(); ++i) {
    const Op& op = m.ops(i);
    const std::string where = absl::StrCat("backend '", p.backend, "' cannot run ", OpLabel(m, i), ": ");
    RETURN_IF_ERROR(CheckKindAt(OpKind(op), act, p, where));
    if (op.has_fully_connected()) {
      RETURN_IF_ERROR(CheckWeighted(m, i, p, where));
    } else if (op.has_conv2d()) {
      if (!p.grouped_conv && op.conv2d().groups() != 1) {
        return absl::UnimplementedError(absl::StrCat(where, "rule: grouped/depthwise convolution (groups ",
                                                     op.conv2d().groups(), ") is not supported"));
      }
      RETURN_IF_ERROR(CheckWeighted(m, i, p, where));
    } else if (op.has_max_pool2d() && !p.max_pool2d_single_element &&
               op.max_pool2d().kernel_h() * op.max_pool2d().kernel_w() == 1) {
      return absl::UnimplementedError(
          absl::StrCat(where, "rule: a max_pool2d window of one element is not supported (drop the op)"));
    } else if (p.fixed_sigmoid_tanh_output && (op.has_sigmoid() || op.has_tanh())) {
      const Tensor& y = m.tensors(op.outputs(0));
      const bool sig = op.has_sigmoid();
      const float want_scale = sig ? 1.0f / 256 : 1.0f / 128;
      const int32_t want_zp = sig ? DTypeMin(act) : (act == INT8 ? 0 : 128);
      if (TensorScale(y) != want_scale || TensorZeroPoint(y) != want_zp) {
        return absl::UnimplementedError(absl::StrCat(
            where, "rule: ", OpKind(op), " needs the output scale ", want_scale, " and zero point ", want_zp,
            " (TFLite's fixed ", OpKind(op), " output), got scale ", TensorScale(y), " zero point ", TensorZeroPoint(y)));
      }
    } else if (p.float_model && op.fused_activation() != ACTIVATION_NONE &&
               (op.has_flatten() || op.has_reshape() || op.has_concat() || op.has_sigmoid() || op.has_tanh() ||
                op.has_hardswish())) {
      return absl::UnimplementedError(absl::StrCat(where, "rule: a fused activation on ", OpKind(op)));
    }
  }
  return absl::OkStatus();
}

absl::Status Backend::Prepare(const QuantizedModel& model) {
  prepared_ = false;
  batch_ = -1;
  RETURN_IF_ERROR(ValidateQuantizedModel(model));
  RETURN_IF_ERROR(CheckProfile(model, profile()));
  model_ = model;
  ASSIGN_OR_RETURN(shapes_, InferShapes(model_));
  RETURN_IF_ERROR(PlanBuffers());
  RETURN_IF_ERROR(BeginPrepare());
  for (int i = 0; i < model_.ops_size(); ++i) RETURN_IF_ERROR(PrepareOp(i));
  prepared_ = true;
  set_profiling(profiling_);
  return absl::OkStatus();
}

absl::Status Backend::PlanBuffers() {
  const int T = model_.tensors_size();
  const int N = model_.ops_size();
  buffer_of_.assign(T, -1);
  buffer_elements_.clear();
  // Last op reading each tensor; the model output lives to the end.
  std::vector<int> last_use(T, -1);
  for (int i = 0; i < N; ++i) {
    for (int t : model_.ops(i).inputs()) last_use[t] = i;
  }
  last_use[OutputTensor(model_)] = N;
  std::vector<int> free_buffers;
  auto take = [&](int t) {
    const int64_t need = Numel(shapes_[t]);
    // Best fit: the smallest free buffer that is large enough, else the largest (grown).
    int best = -1;
    for (int k = 0; k < static_cast<int>(free_buffers.size()); ++k) {
      const int64_t have = buffer_elements_[free_buffers[k]];
      if (best < 0) {
        best = k;
        continue;
      }
      const int64_t cur = buffer_elements_[free_buffers[best]];
      const bool fits = have >= need, cur_fits = cur >= need;
      if ((fits && (!cur_fits || have < cur)) || (!fits && !cur_fits && have > cur)) best = k;
    }
    int b;
    if (best >= 0) {
      b = free_buffers[best];
      free_buffers.erase(free_buffers.begin() + best);
      buffer_elements_[b] = std::max(buffer_elements_[b], need);
    } else {
      b = static_cast<int>(buffer_elements_.size());
      buffer_elements_.push_back(need);
    }
    buffer_of_[t] = b;
  };
  take(InputTensor(model_));
  for (int i = 0; i < N; ++i) {
    const Op& op = model_.ops(i);
    take(op.outputs(0));  // never one of op i's inputs: they are freed only after op i
    if (keep_intermediates_) continue;
    for (int t : op.inputs()) {
      if (buffer_of_[t] >= 0 && last_use[t] == i &&
          std::find(free_buffers.begin(), free_buffers.end(), buffer_of_[t]) == free_buffers.end()) {
        free_buffers.push_back(buffer_of_[t]);
      }
    }
  }
  return absl::OkStatus();
}

std::string Backend::BufferPlanString() const {
  std::vector<std::vector<std::string>> holders(buffer_elements_.size());
  int activations = 0;
  for (int t = 0; t < model_.tensors_size(); ++t) {
    if (buffer_of_[t] < 0) continue;
    ++activations;
    holders[buffer_of_[t]].push_back(model_.tensors(t).name());
  }
  int64_t total = 0;
  std::vector<std::string> parts;
  for (size_t b = 0; b < holders.size(); ++b) {
    total += buffer_elements_[b];
    parts.push_back(absl::StrCat("b", b, " (", buffer_elements_[b], ") = ", absl::StrJoin(holders[b], ", ")));
  }
  return absl::StrCat(buffer_elements_.size(), " buffers (", total, " values/sample in all) for ", activations,
                      " activation tensors: ", absl::StrJoin(parts, "; "));
}

bool Backend::ReadTensor(int tensor, std::vector<int32_t>* values) const {
  if (!prepared_ || batch_ < 0 || tensor < 0 || tensor >= model_.tensors_size() || buffer_of_[tensor] < 0) return false;
  // Without keep_intermediates only the tensors whose buffer no later tensor shares are intact.
  for (int t = 0; t < model_.tensors_size() && !keep_intermediates_; ++t) {
    if (t != tensor && buffer_of_[t] == buffer_of_[tensor]) return false;
  }
  const int64_t n = batch_ * Numel(shapes_[tensor]);
  values->resize(n);
  return ReadBuffer(tensor, buffers_[buffer_of_[tensor]].data(), n, values->data());
}

absl::Status Backend::RunOpAlone(int op, const std::vector<std::vector<int32_t>>& inputs) {
  if (!prepared_ || batch_ <= 0 || !keep_intermediates_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "backend '", name(), "': RunOpAlone needs keep_intermediates and a Run before it"));
  }
  if (op < 0 || op >= model_.ops_size()) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': no op ", op));
  }
  size_t k = 0;
  for (int t : model_.ops(op).inputs()) {
    if (buffer_of_[t] < 0) continue;  // a constant (weights, bias)
    const int64_t n = batch_ * Numel(shapes_[t]);
    if (k >= inputs.size() || static_cast<int64_t>(inputs[k].size()) != n) {
      return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': RunOpAlone of op ", op, " '",
                                                     model_.ops(op).name(), "': input ", k, " needs ", n,
                                                     " values"));
    }
    if (!WriteBuffer(t, inputs[k].data(), n, buffers_[buffer_of_[t]].data())) {
      return absl::UnimplementedError(absl::StrCat("backend '", name(), "' cannot set integer tensors"));
    }
    ++k;
  }
  return RunOp(op, batch_);
}

absl::Status Backend::AllocateFor(int64_t batch) {
  buffers_.resize(buffer_elements_.size());
  // 64 bytes of slack: XNNPACK may read up to XNN_EXTRA_BYTES (16) past an input.
  for (size_t b = 0; b < buffers_.size(); ++b) {
    buffers_[b].assign(static_cast<size_t>(buffer_elements_[b] * batch) * ElementBytes() + 64, 0);
  }
  batch_ = batch;
  return SetUpBatch(batch);
}

absl::Status Backend::Run(const float* input, int64_t batch, RunOutput* output) {
  if (!prepared_) {
    return absl::FailedPreconditionError(absl::StrCat("backend '", name(), "': Run before a successful Prepare"));
  }
  if (batch <= 0) return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': batch must be positive"));
  if (batch != batch_) {
    absl::Status s = AllocateFor(batch);
    if (!s.ok()) {
      batch_ = -1;
      return s;
    }
  }
  auto t = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(RunInput(input, batch, Buffer(InputTensor(model_))));
  if (profiling_) Lap(0, &t);
  for (int i = 0; i < model_.ops_size(); ++i) {
    RETURN_IF_ERROR(RunOp(i, batch));
    if (profiling_ && i + 1 < model_.ops_size()) Lap(i + 1, &t);
  }
  WriteOutput(Buffer(OutputTensor(model_)), batch, output);
  if (profiling_) Lap(model_.ops_size(), &t);
  return absl::OkStatus();
}

absl::Status Backend::Run(const ::quant::Tensor& input, RunOutput* output) {
  const int64_t per_image = prepared_ ? Numel(input_shape()) : 1;
  if (!prepared_ || input.rank() < 1 || input.numel() % per_image != 0 || input.numel() / per_image != input.dim(0)) {
    return absl::InvalidArgumentError(absl::StrCat("backend '", name(), "': input ", input.ShapeString(),
                                                   " is not a batch of ",
                                                   ShapeToString(prepared_ ? input_shape() : Shape{}), " images (NHWC)"));
  }
  return Run(input.data(), input.dim(0), output);
}

void Backend::QuantizeInputInt32(const float* input, int64_t count, int32_t* out) const {
  const Tensor& q = model_.tensors(InputTensor(model_));
  const float inv_scale = 1.0f / TensorScale(q);
  const int32_t zp = TensorZeroPoint(q), qmin = DTypeMin(q.dtype()), qmax = DTypeMax(q.dtype());
  for (int64_t i = 0; i < count; ++i) out[i] = QuantizeInputValue(input[i], inv_scale, zp, qmin, qmax);
}

void Backend::QuantizeInputBytes(const float* input, int64_t count, uint8_t* out) const {
  const Tensor& q = model_.tensors(InputTensor(model_));
  const float inv_scale = 1.0f / TensorScale(q);
  const int32_t zp = TensorZeroPoint(q), qmin = DTypeMin(q.dtype()), qmax = DTypeMax(q.dtype());
  const bool s8 = q.dtype() == INT8;
  int64_t i = 0;
#ifdef __AVX2__
  // The same float steps as QuantizeInputValue, 32 values at a time: multiply,
  // round half to even, + zero point, clamp (exact: small integers in float), narrow.
  const __m256 inv = _mm256_set1_ps(inv_scale), zpf = _mm256_set1_ps(static_cast<float>(zp));
  const __m256 lo = _mm256_set1_ps(static_cast<float>(qmin)), hi = _mm256_set1_ps(static_cast<float>(qmax));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undoes the per-lane packing
  auto quantize8 = [&](const float* x) {
    __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x), inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    r = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, zpf), lo), hi);
    return _mm256_cvtps_epi32(r);
  };
  for (; i + 32 <= count; i += 32) {
    const __m256i a = _mm256_packs_epi32(quantize8(input + i), quantize8(input + i + 8));
    const __m256i b = _mm256_packs_epi32(quantize8(input + i + 16), quantize8(input + i + 24));
    const __m256i bytes = s8 ? _mm256_packs_epi16(a, b) : _mm256_packus_epi16(a, b);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
#endif
  for (; i < count; ++i) out[i] = static_cast<uint8_t>(QuantizeInputValue(input[i], inv_scale, zp, qmin, qmax));
}

void Backend::WidenBytes(const void* data, int64_t count, bool s8, int32_t* out) {
  const uint8_t* o = static_cast<const uint8_t*>(data);
  for (int64_t j = 0; j < count; ++j) out[j] = s8 ? static_cast<int8_t>(o[j]) : o[j];
}

void Backend::NarrowToBytes(const int32_t* values, int64_t count, bool s8, void* data) {
  uint8_t* o = static_cast<uint8_t*>(data);
  for (int64_t j = 0; j < count; ++j) {
    o[j] = s8 ? static_cast<uint8_t>(static_cast<int8_t>(values[j])) : static_cast<uint8_t>(values[j]);
  }
}

bool Backend::ClampIsNarrower(const Op& l, DType dtype) {
  return l.output_min() > DTypeMin(dtype) || l.output_max() < DTypeMax(dtype);
}

void Backend::ClampBytes(void* data, int64_t count, bool s8, int32_t lo, int32_t hi) {
  uint8_t* o = static_cast<uint8_t*>(data);
  for (int64_t j = 0; j < count; ++j) {
    const int32_t v = s8 ? static_cast<int8_t>(o[j]) : o[j];
    o[j] = static_cast<uint8_t>(std::min(std::max(v, lo), hi));
  }
}

void Backend::FinishIntegerOutput(const int32_t* q, int64_t batch, RunOutput* output) const {
  output->shape = {batch};
  for (int64_t d : output_shape()) output->shape.push_back(d);
  const Tensor& t = model_.tensors(OutputTensor(model_));
  output->dtype = t.dtype();
  const size_t n = static_cast<size_t>(batch * Numel(output_shape()));
  output->quantized.assign(q, q + n);
  output->logits.resize(n);
  const float s = TensorScale(t);
  const int32_t zp = TensorZeroPoint(t);
  for (size_t i = 0; i < n; ++i) output->logits[i] = s * static_cast<float>(q[i] - zp);
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name) {
  ParamReader reader(YAML::Node(), "<defaults>", "backend");
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, Registry<Backend>::Get().Create(name, reader));
  RETURN_IF_ERROR(reader.Finish());
  return backend;
}

}  // namespace quant::backends
