#include "quant/backends/onednn_backend.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "quant/backends/im2col.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::backends {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;

// Max pools over fewer channels than this run a byte-max loop instead of oneDNN's
// pooling: its int8 kernel works on 64 channels per AVX-512 vector and took 0.85 ms
// of the cnn's 2.7 ms at batch 256 (16 channels); max pooling involves no rounding,
// so the result is the same.
constexpr int64_t kOnednnMaxPoolChannels = 64;

const char* DnnlStatusName(dnnl_status_t s) {
  switch (s) {
    case dnnl_success:
      return "dnnl_success";
    case dnnl_out_of_memory:
      return "dnnl_out_of_memory";
    case dnnl_invalid_arguments:
      return "dnnl_invalid_arguments";
    case dnnl_unimplemented:
      return "dnnl_unimplemented";
    case dnnl_iterator_ends:
      return "dnnl_iterator_ends";
    case dnnl_runtime_error:
      return "dnnl_runtime_error";
    case dnnl_not_required:
      return "dnnl_not_required";
  }
  return "unknown dnnl status";
}

absl::Status Failed(const std::string& where, const dnnl::error& e) {
  const std::string message =
      absl::StrCat("backend 'onednn': ", where, ": ", e.what(), " (", DnnlStatusName(e.status), ")");
  return e.status == dnnl_unimplemented ? absl::UnimplementedError(message) : absl::InternalError(message);
}

// A [H, W, C] activation as oneDNN's {N, C, H, W} in nhwc order, or a [C] vector as {N, C}.
memory::dims ActivationDims(const Shape& s, int64_t batch) {
  if (s.size() == 3) return {batch, s[2], s[0], s[1]};
  return {batch, Numel(s)};
}
tag ActivationTag(const Shape& s) { return s.size() == 3 ? tag::nhwc : tag::nc; }

// Max pooling over NHWC bytes: the max over the in-bounds window positions (padding
// never wins), as the model defines it. Exact in any implementation (no rounding).
// Sixteen channels at a time, the window's max kept in a register and stored once
// (the cnn's pool1 is 16 channels: 2.2x faster than copying the first position and
// maxing the others into memory); channels past the last group of 16 byte by byte.
template <bool S8>
void MaxPoolNhwc(const Pool2DOptions& p, const Shape& in, const Shape& out, int64_t batch, const uint8_t* src,
                 uint8_t* dst) {
  const int64_t H = in[0], W = in[1], C = in[2], OH = out[0], OW = out[1];
  const int64_t vec = C / 16 * 16;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t oy = 0; oy < OH; ++oy) {
      const int64_t y0 = std::max<int64_t>(0, oy * p.stride_h() - p.pad_top());
      const int64_t y1 = std::min<int64_t>(H, oy * p.stride_h() - p.pad_top() + p.kernel_h());
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t x0 = std::max<int64_t>(0, ox * p.stride_w() - p.pad_left());
        const int64_t x1 = std::min<int64_t>(W, ox * p.stride_w() - p.pad_left() + p.kernel_w());
        uint8_t* o = dst + ((b * OH + oy) * OW + ox) * C;
        if (y0 >= y1 || x0 >= x1) continue;  // no in-bounds position (the model builder rejects such pools)
        const uint8_t* first = src + ((b * H + y0) * W + x0) * C;
        for (int64_t c = 0; c < vec; c += 16) {
          __m128i m = _mm_loadu_si128(reinterpret_cast<const __m128i*>(first + c));
          for (int64_t y = y0; y < y1; ++y) {
            for (int64_t x = x0; x < x1; ++x) {
              const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + ((b * H + y) * W + x) * C + c));
              m = S8 ? _mm_max_epi8(m, v) : _mm_max_epu8(m, v);
            }
          }
          _mm_storeu_si128(reinterpret_cast<__m128i*>(o + c), m);
        }
        for (int64_t c = vec; c < C; ++c) {
          uint8_t m = first[c];
          for (int64_t y = y0; y < y1; ++y) {
            for (int64_t x = x0; x < x1; ++x) {
              const uint8_t v = src[((b * H + y) * W + x) * C + c];
              if (S8 ? static_cast<int8_t>(v) > static_cast<int8_t>(m) : v > m) m = v;
            }
          }
          o[c] = m;
        }
      }
    }
  }
}

}  // namespace

struct OnednnBackend::Impl {
  dnnl::engine engine;  // created at the first Prepare (it can throw)
  dnnl::stream stream;
  // One primitive and its arguments (concat has one reorder per input).
  struct Part {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> args;
  };
  struct Step {
    enum Kind { kPrimitive, kCopy, kLookup, kMaxPool } kind = kPrimitive;
    std::vector<Part> parts;
    bool clamp = false;                         // a clamp in C++ after the primitive / copy
    std::vector<int8_t> weights;                // OHWI (conv) or [out][in] (fc), as stored in the model
    std::vector<int32_t> bias;                  // one per output channel (zeros if the model has none)
    std::vector<float> output_scales;           // s_in * s_w[o] / s_out
    memory packed_weights;                      // in the layout the primitive chose (set up per batch size)
    std::vector<std::vector<uint8_t>> scratch;  // concat: requantized inputs before their slice copy
    std::unique_ptr<Im2col> im2col;             // a conv over few channels as im2col + matmul
    uint8_t table[256] = {};  // lookup ops: the model's table, indexed by the byte (uint8) or byte ^ 0x80 (int8)
    std::string implementation;
  };
  std::vector<Step> steps;
};

OnednnBackend::OnednnBackend() : impl_(new Impl) {}
OnednnBackend::~OnednnBackend() = default;

const BackendProfile& OnednnBackend::Profile() {
  static const BackendProfile* profile = [] {
    auto* p = new BackendProfile;
    p->backend = "onednn";
    const std::string note = "oneDNN s8 weights without a zero point (its convolutions take none)";
    p->fully_connected = {{INT8, INT8, true, true, false, note}, {UINT8, INT8, true, true, false, note}};
    p->conv2d = p->fully_connected;
    p->ops = {
        {"fully_connected", {}, "matmul u8/s8 x s8 -> s32, output scales, zero points"},
        {"conv2d", {}, "convolution_forward u8/s8 x s8 (groups: grouped and depthwise)"},
        {"max_pool2d", {}, "pooling_forward max (under 64 channels a byte-max loop: exact, and faster there)"},
        {"average_pool2d", {}, "pooling_forward avg + eltwise linear post-op"},
        {"global_average_pool", {}, "pooling_forward avg over H x W + eltwise linear post-op"},
        {"add", {}, "binary add with per-input scales + eltwise linear post-op"},
        {"concat",
         {},
         "reorders into each input's channel slice (requantized into scratch first if its qparams differ)"},
        {"hardswish", {}, "the model's lookup table (oneDNN has no int8 table op)"},
        {"sigmoid", {}, "the model's lookup table (oneDNN has no int8 table op)"},
        {"tanh", {}, "the model's lookup table (oneDNN has no int8 table op)"},
        {"flatten", {}, "a copy"},
        {"reshape", {}, "a copy"},
    };
    p->requantization =
        "oneDNN output scales: float(acc + bias) * float(s_in*s_w/s_out), clip, + zero point, round to nearest even";
    return p;
  }();
  return *profile;
}

absl::StatusOr<std::unique_ptr<Backend>> OnednnBackend::Create(ParamReader& params) {
  (void)params;
  return std::unique_ptr<Backend>(new OnednnBackend());
}

namespace {

struct IsaInfo {
  dnnl::cpu_isa isa;
  const char* name;
  bool vnni;
};
constexpr IsaInfo kIsas[] = {
    {dnnl::cpu_isa::avx512_core_amx, "avx512_core_amx", true},
    {dnnl::cpu_isa::avx512_core_bf16, "avx512_core_bf16", true},
    {dnnl::cpu_isa::avx512_core_vnni, "avx512_core_vnni", true},
    {dnnl::cpu_isa::avx2_vnni, "avx2_vnni", true},
    {dnnl::cpu_isa::avx512_core, "avx512_core", false},
    {dnnl::cpu_isa::avx2, "avx2", false},
};

const IsaInfo* EffectiveIsa() {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  for (const IsaInfo& i : kIsas) {
    if (i.isa == isa) return &i;
  }
  return nullptr;
}

}  // namespace

std::string OnednnBackend::Isa() {
  const IsaInfo* i = EffectiveIsa();
  return i != nullptr ? i->name : "other";
}

bool OnednnBackend::HasVnni() {
  const IsaInfo* i = EffectiveIsa();
  return i != nullptr && i->vnni;
}

std::string OnednnBackend::ImplementationOf(int op) const {
  return op >= 0 && op < static_cast<int>(impl_->steps.size()) ? impl_->steps[op].implementation : "";
}

absl::Status OnednnBackend::CanRunHere() const {
  // Without VNNI, oneDNN 2.6's x86 int8 kernels multiply u8 x s8 pairs into saturating
  // int16 (vpmaddubsw) or halve the weights to avoid it: results that are not the model's.
  // Probed with ONEDNN_MAX_CPU_ISA=AVX2 / AVX512_CORE: a 1x1 conv gave 1048544 for 2061420.
  if (!HasVnni()) {
    return absl::UnimplementedError(
        absl::StrCat("backend 'onednn' needs a CPU with VNNI (AVX512_VNNI or AVX_VNNI) for exact int8 results; oneDNN "
                     "dispatches to '",
                     Isa(), "' here, where its int8 kernels saturate or rescale the products"));
  }
  return absl::OkStatus();
}

absl::Status OnednnBackend::BeginPrepare() {
  const absl::Status here = CanRunHere();
  if (!here.ok()) return here;
  // One thread per experiment, like every backend (the Debian build runs on OpenMP).
  omp_set_num_threads(1);
  if (!impl_->engine) {
    try {
      impl_->engine = dnnl::engine(dnnl::engine::kind::cpu, 0);
      impl_->stream = dnnl::stream(impl_->engine);
    } catch (const dnnl::error& e) {
      return Failed("creating the CPU engine", e);
    }
  }
  s8_ = model().tensors(InputTensor(model())).dtype() == INT8;
  impl_->steps.clear();
  impl_->steps.resize(model().ops_size());
  return absl::OkStatus();
}

absl::Status OnednnBackend::PrepareOp(int i) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  Impl::Step& st = impl_->steps[i];
  const DType dtype = m.tensors(l.inputs(0)).dtype();
  switch (l.options_case()) {
    case Op::kFullyConnected:
    case Op::kConv2D: {
      const Tensor& w = m.tensors(WeightTensor(l));
      const Tensor& x = m.tensors(l.inputs(0));
      const Tensor& y = m.tensors(l.outputs(0));
      const int64_t out_c = w.shape(0);
      st.weights.assign(w.data().begin(), w.data().end());
      st.bias.assign(out_c, 0);
      if (BiasTensor(l) >= 0) {
        const auto& b = m.tensors(BiasTensor(l)).int_data();
        std::copy(b.begin(), b.end(), st.bias.begin());
      }
      if (l.has_conv2d() && l.conv2d().groups() == 1 && shapes()[l.inputs(0)][2] < kIm2colBelowChannels) {
        // oneDNN's VNNI convolutions reduce over input channels 4 at a time across 16+
        // lanes: one channel wastes most of it (measured 51 GOP/s on the cnn's conv1).
        st.im2col =
            std::make_unique<Im2col>(l.conv2d(), shapes()[l.inputs(0)], shapes()[l.outputs(0)], TensorZeroPoint(x));
      }
      const int channels = IsPerChannel(w) ? static_cast<int>(out_c) : 1;
      st.output_scales.resize(channels);
      for (int o = 0; o < channels; ++o) {
        st.output_scales[o] = static_cast<float>(static_cast<double>(TensorScale(x)) * TensorScale(w, o) /
                                                 static_cast<double>(TensorScale(y)));
      }
      break;
    }
    case Op::kHardswish:
    case Op::kSigmoid:
    case Op::kTanh: {
      st.kind = Impl::Step::kLookup;
      st.clamp = ClampIsNarrower(l, dtype);
      const LookupTableOptions& t = l.has_hardswish() ? l.hardswish() : (l.has_sigmoid() ? l.sigmoid() : l.tanh());
      // table(k) is for q = qmin + k; an int8 byte b holds q = b - 256 * (b >= 128), so k = b ^ 0x80.
      const int flip = dtype == INT8 ? 0x80 : 0;
      for (int b = 0; b < 256; ++b) st.table[b] = static_cast<uint8_t>(t.table(b ^ flip));
      return absl::OkStatus();
    }
    case Op::kFlatten:
    case Op::kReshape:
      st.kind = Impl::Step::kCopy;
      st.clamp = ClampIsNarrower(l, dtype);
      return absl::OkStatus();
    case Op::kMaxPool2D:
      st.clamp = ClampIsNarrower(l, dtype);
      if (shapes()[l.outputs(0)][2] < kOnednnMaxPoolChannels) {
        st.kind = Impl::Step::kMaxPool;
        return absl::OkStatus();
      }
      break;
    case Op::kConcat:
      st.clamp = ClampIsNarrower(l, dtype);
      break;
    case Op::kAveragePool2D:
    case Op::kGlobalAveragePool:
    case Op::kAdd:
      break;
    default:
      return absl::UnimplementedError(absl::StrCat("backend 'onednn' cannot run ", OpLabel(m, i), ": rule: ", OpKind(l),
                                                   " has no oneDNN primitive"));
  }
  // Creating the primitive descriptors now (batch 1, nothing bound) turns an attribute
  // oneDNN does not implement into an error at Prepare, naming the op.
  return Build(i, 0);
}

// batch 0: primitive descriptors only (a check at Prepare); otherwise the primitives
// and their memory objects on the executor's buffers for that batch size.
absl::Status OnednnBackend::Build(int i, int64_t batch) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  Impl::Step& st = impl_->steps[i];
  if (st.kind != Impl::Step::kPrimitive) return absl::OkStatus();
  const bool bind = batch > 0;
  const int64_t n = bind ? batch : 1;
  const memory::data_type dt = s8_ ? memory::data_type::s8 : memory::data_type::u8;
  const dnnl::engine& engine = impl_->engine;
  auto md = [&](int tensor) {
    const Shape& s = shapes()[tensor];
    return memory::desc(ActivationDims(s, n), dt, ActivationTag(s));
  };
  auto mem = [&](int tensor, const memory::desc& d) { return memory(d, engine, Buffer(tensor)); };
  const int in = l.inputs(0), out = l.outputs(0);
  const Tensor& xt = m.tensors(in);
  const Tensor& yt = m.tensors(out);
  const int32_t zp_in = TensorZeroPoint(xt), zp_out = TensorZeroPoint(yt);
  const float s_in = TensorScale(xt), s_out = TensorScale(yt);
  const Shape& is = shapes()[in];
  const Shape& os = shapes()[out];
  const bool narrower = ClampIsNarrower(l, xt.dtype());
  std::string call;
  st.parts.clear();
  try {
    switch (l.options_case()) {
      case Op::kFullyConnected:
      case Op::kConv2D: {
        const Tensor& w = m.tensors(WeightTensor(l));
        const int64_t out_c = w.shape(0);
        dnnl::primitive_attr attr;
        attr.set_output_scales(st.output_scales.size() > 1 ? 1 << 1 : 0, st.output_scales);
        if (zp_in != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {zp_in});
        if (zp_out != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {zp_out});
        if (narrower) {
          // Post-ops act before the destination zero point is added: the clamp in those units.
          dnnl::post_ops ops;
          ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, static_cast<float>(l.output_min() - zp_out),
                             static_cast<float>(l.output_max() - zp_out));
          attr.set_post_ops(ops);
        }
        memory::desc user_w, bias_md, src_md, dst_md;
        memory::desc chosen_w;
        if (l.has_fully_connected() || st.im2col) {
          call = "matmul";
          // im2col: one row per output pixel, the patch matrix as the source.
          const int64_t k = st.im2col ? st.im2col->patch_size() : Numel(is);
          const int64_t rows = st.im2col ? n * st.im2col->pixels() : n;
          src_md = memory::desc({rows, k}, dt, tag::ab);
          dst_md = memory::desc({rows, out_c}, dt, tag::ab);
          user_w = memory::desc({k, out_c}, memory::data_type::s8, tag::ba);  // stored [out][in]
          bias_md = memory::desc({1, out_c}, memory::data_type::s32, tag::ab);
          const memory::desc any_w({k, out_c}, memory::data_type::s8, tag::any);
          dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, any_w, bias_md, dst_md), attr, engine);
          chosen_w = pd.weights_desc();
          st.implementation = pd.impl_info_str();
          if (bind) st.parts.push_back({dnnl::matmul(pd), {}});
        } else {
          call = "convolution_forward";
          const Conv2DOptions& c = l.conv2d();
          const int64_t g = c.groups(), in_c = is[2];
          memory::dims wdims;
          if (g == 1) {
            wdims = {out_c, in_c, c.kernel_h(), c.kernel_w()};
            user_w = memory::desc(wdims, memory::data_type::s8, tag::ohwi);
          } else {
            wdims = {g, out_c / g, in_c / g, c.kernel_h(), c.kernel_w()};
            user_w = memory::desc(wdims, memory::data_type::s8, tag::gohwi);
          }
          src_md = md(in);
          dst_md = md(out);
          bias_md = memory::desc({out_c}, memory::data_type::s32, tag::x);
          const memory::desc any_w(wdims, memory::data_type::s8, tag::any);
          dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
                                            src_md, any_w, bias_md, dst_md, {c.stride_h(), c.stride_w()},
                                            {c.pad_top(), c.pad_left()}, {c.pad_bottom(), c.pad_right()});
          dnnl::convolution_forward::primitive_desc pd(d, attr, engine);
          chosen_w = pd.weights_desc();
          st.implementation = pd.impl_info_str();
          if (bind) st.parts.push_back({dnnl::convolution_forward(pd), {}});
        }
        if (!bind) break;
        memory user(user_w, engine, st.weights.data());
        if (chosen_w == user_w) {
          st.packed_weights = user;
        } else if (!st.packed_weights || st.packed_weights.get_desc() != chosen_w) {
          // Packed once per layout: a new batch size usually keeps the primitive's layout.
          call = "reorder of the weights";
          st.packed_weights = memory(chosen_w, engine);
          dnnl::reorder(user, st.packed_weights).execute(impl_->stream, user, st.packed_weights);
          impl_->stream.wait();
        }
        void* src = Buffer(in);
        if (st.im2col) {
          st.im2col->Reserve(n);
          src = st.im2col->patches();
        }
        st.parts[0].args = {{DNNL_ARG_SRC, memory(src_md, engine, src)},
                            {DNNL_ARG_WEIGHTS, st.packed_weights},
                            {DNNL_ARG_BIAS, memory(bias_md, engine, st.bias.data())},
                            {DNNL_ARG_DST, memory(dst_md, engine, Buffer(out))}};
        break;
      }
      case Op::kMaxPool2D:
      case Op::kAveragePool2D:
      case Op::kGlobalAveragePool: {
        call = "pooling_forward";
        memory::dims kernel, strides, pad_l{0, 0}, pad_r{0, 0};
        memory::desc dst_md = md(out);
        dnnl::primitive_attr attr;
        dnnl::algorithm alg = dnnl::algorithm::pooling_avg_exclude_padding;
        if (l.has_global_average_pool()) {
          kernel = strides = {is[0], is[1]};
          dst_md = memory::desc({n, is[2], 1, 1}, dt, tag::nhwc);  // the same bytes as [C]
        } else {
          const Pool2DOptions& p = l.has_max_pool2d() ? l.max_pool2d() : l.average_pool2d();
          kernel = {p.kernel_h(), p.kernel_w()};
          strides = {p.stride_h(), p.stride_w()};
          pad_l = {p.pad_top(), p.pad_left()};
          pad_r = {p.pad_bottom(), p.pad_right()};
          if (l.has_max_pool2d()) alg = dnnl::algorithm::pooling_max;
        }
        if (alg != dnnl::algorithm::pooling_max) {
          // mean in float, then out = mean * s_in/s_out + (zp_out - zp_in * s_in/s_out), clamped.
          const double a = static_cast<double>(s_in) / s_out;
          dnnl::post_ops ops;
          ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, static_cast<float>(a),
                             static_cast<float>(zp_out - zp_in * a));
          if (narrower) {
            ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, static_cast<float>(l.output_min()),
                               static_cast<float>(l.output_max()));
          }
          attr.set_post_ops(ops);
        }
        dnnl::pooling_forward::primitive_desc pd(
            dnnl::pooling_forward::desc(dnnl::prop_kind::forward_inference, alg, md(in), dst_md, strides, kernel, pad_l,
                                        pad_r),
            attr, engine);
        st.implementation = pd.impl_info_str();
        if (bind) {
          st.parts.push_back(
              {dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, mem(in, md(in))}, {DNNL_ARG_DST, mem(out, dst_md)}}});
        }
        break;
      }
      case Op::kAdd: {
        call = "binary";
        const Tensor& x2 = m.tensors(l.inputs(1));
        const memory::desc flat({n, Numel(os)}, dt, tag::ab);
        const double a1 = static_cast<double>(s_in) / s_out, a2 = static_cast<double>(TensorScale(x2)) / s_out;
        dnnl::primitive_attr attr;
        attr.set_scales(DNNL_ARG_SRC_0, 0, {static_cast<float>(a1)});
        attr.set_scales(DNNL_ARG_SRC_1, 0, {static_cast<float>(a2)});
        dnnl::post_ops ops;
        ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_linear, 1.0f,
                           static_cast<float>(zp_out - zp_in * a1 - TensorZeroPoint(x2) * a2));
        if (narrower) {
          ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, static_cast<float>(l.output_min()),
                             static_cast<float>(l.output_max()));
        }
        attr.set_post_ops(ops);
        dnnl::binary::primitive_desc pd(dnnl::binary::desc(dnnl::algorithm::binary_add, flat, flat, flat), attr,
                                        engine);
        st.implementation = pd.impl_info_str();
        if (bind) {
          st.parts.push_back({dnnl::binary(pd),
                              {{DNNL_ARG_SRC_0, mem(in, flat)},
                               {DNNL_ARG_SRC_1, mem(l.inputs(1), flat)},
                               {DNNL_ARG_DST, mem(out, flat)}}});
        }
        break;
      }
      case Op::kConcat: {
        // An input with the output's qparams is one plain reorder into its channel slice.
        // Any other is requantized by a reorder (output scale, zero points) into a dense
        // scratch buffer first: oneDNN 2.6's reorder drops the zero points when the
        // destination is a strided slice (measured: the offsets vanish), while scales alone
        // and dense destinations are right.
        call = "reorder into a channel slice";
        const memory::desc dst_md = md(out);
        int64_t offset = 0;
        st.scratch.resize(l.inputs_size());
        for (int k = 0; k < l.inputs_size(); ++k) {
          const int t = l.inputs(k);
          const Tensor& xk = m.tensors(t);
          const memory::desc src_md = md(t);
          memory::dims dims = src_md.dims();
          memory::dims offsets(dims.size(), 0);
          offsets[1] = offset;
          offset += dims[1];
          const memory::desc slice = dst_md.submemory_desc(dims, offsets);
          const bool same = TensorScale(xk) == s_out && TensorZeroPoint(xk) == zp_out;
          memory from = bind ? mem(t, src_md) : memory();
          if (!same) {
            dnnl::primitive_attr attr;
            attr.set_output_scales(0, {static_cast<float>(static_cast<double>(TensorScale(xk)) / s_out)});
            if (TensorZeroPoint(xk) != 0) attr.set_zero_points(DNNL_ARG_SRC, 0, {TensorZeroPoint(xk)});
            if (zp_out != 0) attr.set_zero_points(DNNL_ARG_DST, 0, {zp_out});
            dnnl::reorder::primitive_desc pd(engine, src_md, engine, src_md, attr);
            st.implementation = pd.impl_info_str();
            if (bind) {
              st.scratch[k].resize(static_cast<size_t>(n * Numel(shapes()[t])));
              memory dense(src_md, engine, st.scratch[k].data());
              st.parts.push_back({dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, dense}}});
              from = dense;
            }
          }
          dnnl::reorder::primitive_desc pd(engine, src_md, engine, slice);
          if (same) st.implementation = pd.impl_info_str();
          if (bind) st.parts.push_back({dnnl::reorder(pd), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, mem(out, slice)}}});
        }
        break;
      }
      default:
        break;
    }
  } catch (const dnnl::error& e) {
    return Failed(absl::StrCat(OpLabel(m, i), ": ", call), e);
  }
  return absl::OkStatus();
}

absl::Status OnednnBackend::SetUpBatch(int64_t batch) {
  for (int i = 0; i < model().ops_size(); ++i) RETURN_IF_ERROR(Build(i, batch));
  return absl::OkStatus();
}

absl::Status OnednnBackend::RunInput(const float* input, int64_t batch, void* out) {
  QuantizeInputBytes(input, batch * Numel(input_shape()), static_cast<uint8_t*>(out));
  return absl::OkStatus();
}

absl::Status OnednnBackend::RunOp(int i, int64_t batch) {
  const QuantizedModel& m = model();
  const Op& l = m.ops(i);
  Impl::Step& st = impl_->steps[i];
  const uint8_t* in = Data<uint8_t>(l.inputs(0));
  uint8_t* out = Data<uint8_t>(l.outputs(0));
  const size_t count = static_cast<size_t>(batch * Numel(shapes()[l.outputs(0)]));
  switch (st.kind) {
    case Impl::Step::kCopy:
      std::memcpy(out, in, count);
      break;
    case Impl::Step::kLookup:
      for (size_t j = 0; j < count; ++j) out[j] = st.table[in[j]];
      break;
    case Impl::Step::kMaxPool:
      if (s8_) {
        MaxPoolNhwc<true>(l.max_pool2d(), shapes()[l.inputs(0)], shapes()[l.outputs(0)], batch, in, out);
      } else {
        MaxPoolNhwc<false>(l.max_pool2d(), shapes()[l.inputs(0)], shapes()[l.outputs(0)], batch, in, out);
      }
      break;
    case Impl::Step::kPrimitive:
      if (st.im2col) st.im2col->Run(in, batch);
      try {
        for (Impl::Part& p : st.parts) p.primitive.execute(impl_->stream, p.args);
        impl_->stream.wait();
      } catch (const dnnl::error& e) {
        return Failed(absl::StrCat(OpLabel(m, i), ": execute"), e);
      }
      break;
  }
  if (st.clamp) ClampBytes(out, static_cast<int64_t>(count), s8_, l.output_min(), l.output_max());
  return absl::OkStatus();
}

void OnednnBackend::WriteOutput(const void* out, int64_t batch, RunOutput* output) {
  const int64_t count = batch * Numel(output_shape());
  q_.resize(static_cast<size_t>(count));
  WidenBytes(out, count, s8_, q_.data());
  FinishIntegerOutput(q_.data(), batch, output);
}

bool OnednnBackend::ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const {
  (void)tensor;
  WidenBytes(data, count, s8_, out);
  return true;
}

bool OnednnBackend::WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const {
  (void)tensor;
  NarrowToBytes(values, count, s8_, data);
  return true;
}

QUANTLAB_REGISTER(Backend, "onednn", OnednnBackend::Create,
                  "oneDNN 2.6 int8 primitives (VNNI): convolution, matmul, pooling, binary add, reorders for concat");

}  // namespace quant::backends
