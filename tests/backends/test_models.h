// Small float graphs covering every op type and geometry, hand-built quantized
// tensors and ops, and the quantization variants the backend tests sweep.
// Header-only, tests only.
#ifndef TESTS_BACKENDS_TEST_MODELS_H_
#define TESTS_BACKENDS_TEST_MODELS_H_

#include <array>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "quant/backends/model_builder.h"

namespace quant::backends {

// Hand-built v2 models: an empty model, activation / weight / bias tensors, ops.
inline QuantizedModel EmptyModel() {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.set_source_model("test");
  return m;
}

inline int AddActivation(QuantizedModel* m, const std::string& name, const Shape& shape, DType dtype, float scale,
                         int32_t zero_point) {
  Tensor* t = m->add_tensors();
  t->set_name(name);
  for (int64_t d : shape) t->add_shape(static_cast<int32_t>(d));
  t->set_dtype(dtype);
  t->add_scale(scale);
  t->add_zero_point(zero_point);
  return m->tensors_size() - 1;
}

inline int AddWeights(QuantizedModel* m, const std::string& name, const Shape& shape, DType dtype,
                      const std::vector<float>& scales, const std::vector<int32_t>& zero_points,
                      const std::vector<int32_t>& values, int bits = 8) {
  Tensor* t = m->add_tensors();
  t->set_name(name);
  for (int64_t d : shape) t->add_shape(static_cast<int32_t>(d));
  t->set_dtype(dtype);
  t->set_bits(bits);
  for (float s : scales) t->add_scale(s);
  for (int32_t z : zero_points) t->add_zero_point(z);
  std::string bytes;
  for (int32_t v : values) bytes.push_back(static_cast<char>(static_cast<uint8_t>(v & 0xff)));
  t->set_data(bytes);
  return m->tensors_size() - 1;
}

inline int AddBias(QuantizedModel* m, const std::string& name, const std::vector<int32_t>& values) {
  Tensor* t = m->add_tensors();
  t->set_name(name);
  t->add_shape(static_cast<int32_t>(values.size()));
  t->set_dtype(INT32);
  for (int32_t v : values) t->add_int_data(v);
  return m->tensors_size() - 1;
}

inline Op* AddOp(QuantizedModel* m, const std::string& name, const std::vector<int>& inputs, int output,
                 int32_t output_min = -128, int32_t output_max = 127) {
  Op* op = m->add_ops();
  op->set_name(name);
  for (int t : inputs) op->add_inputs(t);
  op->add_outputs(output);
  op->set_output_min(output_min);
  op->set_output_max(output_max);
  return op;
}

// The model cut after its first op (the weighted op of a LayerModels() entry alone).
inline QuantizedModel FirstOpOnly(const QuantizedModel& model) {
  QuantizedModel m = model;
  while (m.ops_size() > 1) m.mutable_ops()->RemoveLast();
  m.clear_outputs();
  m.add_outputs(m.ops(0).outputs(0));
  return m;
}

// Float models, one per layer type/geometry (the v1 test set, as graphs).
inline std::vector<std::pair<std::string, QuantizedModel>> LayerModels() {
  std::vector<std::pair<std::string, QuantizedModel>> out;
  auto conv = [&](const std::string& name, Shape in, int oc, int groups, int kh, int kw, int stride,
                  std::array<int, 4> pads, Activation act) {
    GraphBuilder g("test", in);
    out.emplace_back(name, g.Finish(g.Conv2D("conv", g.input(), oc, groups, kh, kw, stride, pads, act)));
  };
  {
    GraphBuilder g("test", {37});
    out.emplace_back("fully_connected", g.Finish(g.FullyConnected("fc", g.input(), 19)));
  }
  conv("conv2d 3x3 pad 1", {9, 7, 6}, 10, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
  conv("conv2d 3x2 stride 2 asymmetric pad", {9, 7, 6}, 8, 1, 3, 2, 2, {0, 2, 1, 0}, RELU6);
  conv("conv2d groups 3", {8, 8, 6}, 9, 3, 3, 3, 1, {1, 1, 1, 1}, RELU);
  conv("conv2d depthwise x2", {8, 8, 6}, 12, 6, 3, 3, 2, {1, 1, 1, 1}, ACTIVATION_NONE);
  conv("conv2d 3x3 over 1 channel (a first layer)", {7, 6, 1}, 16, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
  conv("conv2d 3x3 over 1 channel, stride 2", {7, 6, 1}, 4, 1, 3, 3, 2, {0, 1, 1, 0}, ACTIVATION_NONE);
  conv("conv2d 3x3 over 16 channels (XNNPACK's own conv path)", {6, 6, 16}, 12, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
  conv("conv2d 1x1", {5, 5, 16}, 24, 1, 1, 1, 1, {0, 0, 0, 0}, ACTIVATION_NONE);
  {
    GraphBuilder g("test", {9, 9, 4});
    const int c = g.Conv2D("conv", g.input(), 5, 1, 1, 1, 1, {0, 0, 0, 0});
    out.emplace_back("max_pool2d 3x3 stride 2 pad 1", g.Finish(g.MaxPool2D("pool", c, 3, 2, 1)));
  }
  {
    GraphBuilder g("test", {4, 3, 5});
    const int c = g.Conv2D("conv", g.input(), 6, 1, 1, 1, 1, {0, 0, 0, 0}, RELU);
    out.emplace_back("flatten + fully_connected", g.Finish(g.FullyConnected("fc", g.Flatten("flatten", c), 7)));
  }
  return out;
}

// Graphs with the v2 ops: residual add, concat, depthwise conv, pools, lookup tables.
// Each quantized by QuantizeMinMax, every op output gets its own qparams, so the add
// and concat inputs have different scales and zero points.
inline std::vector<std::pair<std::string, QuantizedModel>> GraphModels() {
  std::vector<std::pair<std::string, QuantizedModel>> out;
  {
    GraphBuilder g("test", {6, 6, 8});
    const int c = g.Conv2D("conv", g.input(), 8, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
    out.emplace_back("residual add (input + conv)", g.Finish(g.Add("add", g.input(), c, RELU)));
  }
  {
    GraphBuilder g("test", {5, 5, 4});
    const int a = g.Conv2D("conv_a", g.input(), 6, 1, 1, 1, 1, {0, 0, 0, 0});
    const int b = g.Conv2D("conv_b", g.input(), 5, 1, 3, 3, 1, {1, 1, 1, 1}, RELU);
    const int cat = g.Concat("concat", {a, b, g.input()});
    out.emplace_back("concat of three scales", g.Finish(g.Conv2D("conv_c", cat, 7, 1, 1, 1, 1, {0, 0, 0, 0})));
  }
  {
    GraphBuilder g("test", {8, 8, 6});
    const int d = g.Conv2D("dw", g.input(), 12, 6, 3, 3, 1, {1, 1, 1, 1}, RELU6);
    out.emplace_back("depthwise conv x2 + pointwise",
                     g.Finish(g.Conv2D("pw", d, 5, 1, 1, 1, 1, {0, 0, 0, 0})));
  }
  {
    GraphBuilder g("test", {7, 5, 6});
    const int c = g.Conv2D("conv", g.input(), 9, 1, 1, 1, 1, {0, 0, 0, 0}, RELU);
    out.emplace_back("global average pool + fc", g.Finish(g.FullyConnected("fc", g.GlobalAveragePool("gap", c), 4)));
  }
  {
    GraphBuilder g("test", {8, 8, 4});
    const int c = g.Conv2D("conv", g.input(), 6, 1, 3, 3, 1, {1, 1, 1, 1});
    out.emplace_back("average pool 2x2", g.Finish(g.AveragePool2D("avg", c, 2, 2)));
  }
  for (auto [name, kind] : std::vector<std::pair<std::string, Op::OptionsCase>>{
           {"sigmoid", Op::kSigmoid}, {"tanh", Op::kTanh}, {"hardswish", Op::kHardswish}}) {
    GraphBuilder g("test", {30});
    const int fc = g.FullyConnected("fc", g.input(), 24);
    const int y = g.Lookup(name, kind, fc);
    out.emplace_back(absl::StrCat("fc + ", name), g.Finish(g.FullyConnected("fc2", y, 5)));
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
