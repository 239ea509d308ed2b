// `gemmlowp` is bit-identical to `reference` on every layer type (FC, conv with
// stride/padding/groups/depthwise, max pool with padding, flatten) and on whole
// mlp- and cnn-shaped models, per-tensor and per-channel, int8 and uint8
// activations and weights, symmetric and asymmetric, 8 and fewer bits.
#include "quant/backends/gemmlowp_backend.h"

#include <set>
#include <string>

#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"
#include "quant/core/registry.h"

namespace quant::backends {
namespace {

QuantizedModel Base(std::vector<int> shape) {
  QuantizedModel m;
  m.set_format_version(kQuantizedModelFormatVersion);
  m.set_source_model("test");
  for (int d : shape) m.add_input_shape(d);
  return m;
}

Conv2D* AddConv(QuantizedModel* m, const std::string& name, int in, int out, int groups, int kh, int kw, int stride,
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

void AddPool(QuantizedModel* m, const std::string& name, int k, int stride, int pad) {
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

void AddFlatten(QuantizedModel* m) {
  Layer* l = m->add_layers();
  l->set_name("flatten");
  l->mutable_flatten();
}

void AddFc(QuantizedModel* m, const std::string& name, int in, int out, Activation act) {
  Layer* l = m->add_layers();
  l->set_name(name);
  l->set_fused_activation(act);
  l->mutable_fully_connected()->set_input_channels(in);
  l->mutable_fully_connected()->set_output_channels(out);
}

// Float models, one per layer type/geometry.
std::vector<std::pair<std::string, QuantizedModel>> LayerModels() {
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

std::vector<Variant> Variants() {
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

// Runs both backends; returns the number of differing outputs (and checks sizes).
int64_t Differences(const QuantizedModel& m, int64_t batch, uint64_t seed, int64_t* total) {
  auto ref = CreateBackend("reference");
  auto gl = CreateBackend("gemmlowp");
  EXPECT_TRUE((*ref)->Prepare(m).ok());
  absl::Status s = (*gl)->Prepare(m);
  EXPECT_TRUE(s.ok()) << s;
  // Inputs a little outside the calibrated range, so clamps are exercised too.
  std::vector<float> x = RandomImages(m, batch, seed);
  for (float& v : x) v = v * 1.2f - 0.1f;
  RunOutput a, b;
  EXPECT_TRUE((*ref)->Run(x.data(), batch, &a).ok());
  EXPECT_TRUE((*gl)->Run(x.data(), batch, &b).ok());
  EXPECT_EQ(a.shape, b.shape);
  EXPECT_EQ(a.quantized.size(), b.quantized.size());
  int64_t diff = 0;
  for (size_t i = 0; i < a.quantized.size() && i < b.quantized.size(); ++i) diff += a.quantized[i] != b.quantized[i];
  *total = static_cast<int64_t>(a.quantized.size());
  // The comparison means something only if the outputs are not all clamped to one value.
  std::set<int32_t> distinct(a.quantized.begin(), a.quantized.end());
  EXPECT_GE(distinct.size(), 5u);
  return diff;
}

TEST(GemmlowpBackendTest, IsRegisteredAndUsesSimdKernels) {
  EXPECT_TRUE(Registry<Backend>::Get().Contains("gemmlowp"));
  EXPECT_STREQ(GemmlowpBackend::KernelPath(), "SSE4 64-bit");
}

TEST(GemmlowpBackendTest, BitIdenticalToReferenceOnEveryLayerType) {
  int cases = 0;
  for (const auto& [layer_name, f0] : LayerModels()) {
    QuantizedModel f = f0;
    RandomizeFloatWeights(&f, 17);
    std::vector<float> calib = RandomImages(f, 16, 18);
    for (const Variant& v : Variants()) {
      auto m = QuantizeMinMax(f, calib.data(), 16, v.opt);
      ASSERT_TRUE(m.ok()) << m.status();
      int64_t total = 0;
      const int64_t diff = Differences(*m, 5, 19, &total);
      EXPECT_EQ(diff, 0) << layer_name << ", " << v.name << ": " << diff << " of " << total << " differ";
      EXPECT_GT(total, 0);
      ++cases;
    }
  }
  EXPECT_EQ(cases, 8 * 32);
}

TEST(GemmlowpBackendTest, BitIdenticalToReferenceOnWholeModels) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? MakeFloatCnn(5) : MakeFloatMlp(5);
    std::vector<float> calib = RandomImages(f, 32, 6);
    for (bool pc : {false, true}) {
      for (DType act : {INT8, UINT8}) {
        QuantizeOptions o;
        o.per_channel = pc;
        o.activation_dtype = act;
        o.weight_dtype = act;
        o.symmetric_weights = act == INT8;
        auto m = QuantizeMinMax(f, calib.data(), 32, o);
        ASSERT_TRUE(m.ok());
        int64_t total = 0;
        EXPECT_EQ(Differences(*m, 64, 7, &total), 0)
            << (cnn ? "cnn" : "mlp") << (pc ? " per-channel " : " per-tensor ") << DTypeName(act);
        EXPECT_EQ(total, 640);
      }
    }
  }
}

}  // namespace
}  // namespace quant::backends
