// Small float models covering every layer type and geometry, and the
// quantization variants the backend tests sweep. Header-only, tests only.
#ifndef TESTS_BACKENDS_TEST_MODELS_H_
#define TESTS_BACKENDS_TEST_MODELS_H_

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "quant/backends/model_builder.h"

namespace quant::backends {

inline QuantizedModel Base(std::vector<int> shape) {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.set_source_model("test");
  for (int d : shape) m.add_input_shape(d);
  return m;
}

inline Conv2D* AddConv(QuantizedModel* m, const std::string& name, int in, int out, int groups, int kh, int kw, int stride,
                std::array<int, 4> pads, Activation act) {
  Layer* l = m->add_layers();
  l->set_name(name);
  l->set_fused_activation(act);
  Conv2D* c = l->mutable_conv2d();
  c->set_input_channels(in);
  c->set_output_channels(out);
  c->set_groups(groups);
  c->set_kernel_h(kh);
  c->set_kernel_w(kw);
  c->set_stride_h(stride);
  c->set_stride_w(stride);
  c->set_pad_top(pads[0]);
  c->set_pad_bottom(pads[1]);
  c->set_pad_left(pads[2]);
  c->set_pad_right(pads[3]);
  return c;
}

inline void AddPool(QuantizedModel* m, const std::string& name, int k, int stride, int pad) {
  Layer* l = m->add_layers();
  l->set_name(name);
  Pool2D* p = l->mutable_max_pool2d();
  p->set_kernel_h(k);
  p->set_kernel_w(k);
  p->set_stride_h(stride);
  p->set_stride_w(stride);
  p->set_pad_top(pad);
  p->set_pad_bottom(pad);
  p->set_pad_left(pad);
  p->set_pad_right(pad);
}

inline void AddFlatten(QuantizedModel* m) {
  Layer* l = m->add_layers();
  l->set_name("flatten");
  l->mutable_flatten();
}

inline void AddFc(QuantizedModel* m, const std::string& name, int in, int out, Activation act) {
  Layer* l = m->add_layers();
  l->set_name(name);
  l->set_fused_activation(act);
  l->mutable_fully_connected()->set_input_channels(in);
  l->mutable_fully_connected()->set_output_channels(out);
}

// Float models, one per layer type/geometry.
inline std::vector<std::pair<std::string, QuantizedModel>> LayerModels() {
  std::vector<std::pair<std::string, QuantizedModel>> out;
  {
    QuantizedModel m = Base({37});
    AddFc(&m, "fc", 37, 19, ACTIVATION_NONE);
    out.emplace_back("fully_connected", m);
  }
  {
    QuantizedModel m = Base({9, 7, 6});
    AddConv(&m, "conv", 6, 10, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
    out.emplace_back("conv2d 3x3 pad 1", m);
  }
  {
    QuantizedModel m = Base({9, 7, 6});
    AddConv(&m, "conv", 6, 8, 1, 3, 2, 2, {0, 2, 1, 0}, RELU6);
    out.emplace_back("conv2d 3x2 stride 2 asymmetric pad", m);
  }
  {
    QuantizedModel m = Base({8, 8, 6});
    AddConv(&m, "conv", 6, 9, 3, 3, 3, 1, {1, 1, 1, 1}, RELU);
    out.emplace_back("conv2d groups 3", m);
  }
  {
    QuantizedModel m = Base({8, 8, 6});
    AddConv(&m, "conv", 6, 12, 6, 3, 3, 2, {1, 1, 1, 1}, ACTIVATION_NONE);
    out.emplace_back("conv2d depthwise x2", m);
  }
  {
    QuantizedModel m = Base({7, 6, 1});
    AddConv(&m, "conv", 1, 16, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
    out.emplace_back("conv2d 3x3 over 1 channel (a first layer)", m);
  }
  {
    QuantizedModel m = Base({7, 6, 1});
    AddConv(&m, "conv", 1, 4, 1, 3, 3, 2, {0, 1, 1, 0}, ACTIVATION_NONE);
    out.emplace_back("conv2d 3x3 over 1 channel, stride 2", m);
  }
  {
    QuantizedModel m = Base({6, 6, 16});
    AddConv(&m, "conv", 16, 12, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
    out.emplace_back("conv2d 3x3 over 16 channels (XNNPACK's own conv path)", m);
  }
  {
    QuantizedModel m = Base({5, 5, 16});
    AddConv(&m, "conv", 16, 24, 1, 1, 1, 1, {0, 0, 0, 0}, ACTIVATION_NONE);
    out.emplace_back("conv2d 1x1", m);
  }
  {
    QuantizedModel m = Base({9, 9, 4});
    AddConv(&m, "conv", 4, 5, 1, 1, 1, 1, {0, 0, 0, 0}, ACTIVATION_NONE);
    AddPool(&m, "pool", 3, 2, 1);
    out.emplace_back("max_pool2d 3x3 stride 2 pad 1", m);
  }
  {
    QuantizedModel m = Base({4, 3, 5});
    AddConv(&m, "conv", 5, 6, 1, 1, 1, 1, {0, 0, 0, 0}, RELU);
    AddFlatten(&m);
    AddFc(&m, "fc", 72, 7, ACTIVATION_NONE);
    out.emplace_back("flatten + fully_connected", m);
  }
  return out;
}

struct Variant {
  std::string name;
  QuantizeOptions opt;
};

inline std::vector<Variant> Variants() {
  std::vector<Variant> v;
  for (DType act : {INT8, UINT8}) {
    for (DType w : {INT8, UINT8}) {
      for (bool pc : {false, true}) {
        for (bool sym : {true, false}) {
          for (int bits : {8, 4}) {
            QuantizeOptions o;
            o.activation_dtype = act;
            o.weight_dtype = w;
            o.per_channel = pc;
            o.symmetric_weights = sym;
            o.weight_bits = bits;
            v.push_back({absl::StrCat("act ", DTypeName(act), " w ", DTypeName(w), pc ? " per-channel" : " per-tensor",
                                      sym ? " symmetric" : " asymmetric", " ", bits, " bits"),
                         o});
          }
        }
      }
    }
  }
  return v;
}

}  // namespace quant::backends

#endif  // TESTS_BACKENDS_TEST_MODELS_H_
