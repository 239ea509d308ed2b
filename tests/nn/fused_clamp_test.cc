// The executor's conv -> activation fusion in training (Model::Forward,
// Layer::SetOutputClamp): a conv whose only consumer is a ReLU, ReLU6 or
// Hardtanh computes the activation as its kernels store. Every conv path is
// covered (direct first layer, row panels, Winograd, pointwise, depthwise,
// grouped, im2col + GEMM for stride 2), and each model is trained for three
// steps next to a twin that does not fuse (keep_values turns fusion off):
// logits, every parameter gradient and every updated weight must be the same
// bits, and the fusion must really have happened (the conv's value is the
// activation's buffer).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/loss.h"
#include "quant/nn/model.h"
#include "quant/nn/panel_gemm.h"
#include "tests/nn/gradcheck.h"
#include "yaml-cpp/yaml.h"

namespace quant::nn {
namespace {

using testing::SameBits;

std::unique_ptr<Model> Built(const std::string& yaml, const Shape& sample, int classes) {
  ParamReader p(YAML::Load(yaml), "model.yaml", "model");
  auto m = CreateModel(p);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return nullptr;
  EXPECT_TRUE(p.Finish().ok());
  EXPECT_TRUE((*m)->Build(sample, classes, 7).ok());
  return std::move(m).value();
}

struct Case {
  const char* what;
  std::string yaml;
  Shape sample;
  int fused;  // how many conv -> activation pairs fuse
};

std::vector<Case> Cases() {
  return {
      {"cnn (direct conv1, row-panel conv2)", "{name: cnn}", {1, 28, 28}, 2},
      {"cnn with Winograd", "{name: cnn, winograd: true}", {1, 28, 28}, 2},
      {"graph: pointwise -> relu6, depthwise -> hardtanh, groups 2 -> relu, stride 2 -> relu",
       R"({name: graph, nodes: [
           {name: pw, op: conv2d, inputs: [input], out_channels: 8, kernel: 1},
           {name: a1, op: relu6},
           {name: dw, op: conv2d, out_channels: 8, groups: 8, padding: 1},
           {name: a2, op: hardtanh, min_val: -0.25, max_val: 0.5},
           {name: gc, op: conv2d, out_channels: 6, groups: 2, padding: 1},
           {name: a3, op: relu},
           {name: s2, op: conv2d, out_channels: 5, stride: 2, padding: 1},
           {name: a4, op: relu},
           {name: flat, op: flatten},
           {name: fc, op: linear, out_features: 3}]})",
       {3, 9, 9},
       4},
      {"graph: convs whose input and output shapes match (gradient buffers could be shared)",
       R"({name: graph, nodes: [
           {name: c0, op: conv2d, inputs: [input], out_channels: 4, padding: 1},
           {name: r0, op: relu},
           {name: c1, op: conv2d, out_channels: 4, padding: 1},
           {name: r1, op: relu},
           {name: c2, op: conv2d, out_channels: 4, padding: 1},
           {name: r2, op: relu6},
           {name: sum, op: add, inputs: [r2, r0]},
           {name: flat, op: flatten},
           {name: fc, op: linear, out_features: 3}]})",
       {4, 6, 6},
       3},
      {"graph: first-layer depthwise and grouped convs small enough for the direct path's test",
       R"({name: graph, nodes: [
           {name: dw, op: conv2d, inputs: [input], out_channels: 4, groups: 4, kernel: 2},
           {name: a1, op: relu},
           {name: flat, op: flatten},
           {name: fc, op: linear, out_features: 3},
           {name: gc, op: conv2d, inputs: [input], out_channels: 4, groups: 2, kernel: 2},
           {name: a2, op: relu6},
           {name: flat2, op: flatten},
           {name: fc2, op: linear, out_features: 3},
           {name: sum, op: add, inputs: [fc, fc2]}]})",
       {4, 6, 6},
       2},
      {"graph: a direct-path conv (4 channels, 2x2) that also needs an input gradient",
       R"({name: graph, nodes: [
           {name: c0, op: conv2d, inputs: [input], out_channels: 4, padding: 1},
           {name: r0, op: relu},
           {name: c1, op: conv2d, out_channels: 3, kernel: 2},
           {name: r1, op: relu6},
           {name: flat, op: flatten},
           {name: fc, op: linear, out_features: 3}]})",
       {4, 6, 6},
       2},
      {"graph: a conv read by its relu and by another node does not fuse",
       R"({name: graph, nodes: [
           {name: c, op: conv2d, inputs: [input], out_channels: 4, padding: 1},
           {name: r, op: relu},
           {name: sum, op: add, inputs: [c, r]},
           {name: flat, op: flatten},
           {name: fc, op: linear, out_features: 3}]})",
       {2, 6, 6},
       0},
  };
}

// Convs fused with the Clamp after them in the last Forward: the conv's value
// is then clamped (with random weights and inputs a raw conv output always
// has values outside the clamp's range).
int FusedPairs(Model& m) {
  int fused = 0;
  for (int i = 0; i + 1 < m.num_layers(); ++i) {
    const std::vector<int>& next = m.consumers(Model::OutputOf(i));
    if (m.layer(i).type() != "conv2d" || next.size() != 1) continue;
    const auto* c = dynamic_cast<const Clamp*>(&m.layer(next[0]));
    if (c == nullptr) continue;
    const Tensor& v = m.value(Model::OutputOf(i));
    bool inside = true;
    for (int64_t e = 0; e < v.numel(); ++e) inside = inside && !(v[e] < c->lo() || v[e] > c->hi());
    fused += inside;
  }
  return fused;
}

// A stand-in for QAT's fake quantization: a grid of 1/8 in [-1, 1] with a
// straight-through gradient inside it.
class Grid : public TensorTransform {
 public:
  std::string Describe() const override { return "grid"; }
  void Forward(const Tensor& in, Tensor* out, bool training) override {
    EnsureShape(out, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*out)[i] = std::nearbyint(std::clamp(in[i], -1.0f, 1.0f) * 8) / 8;
  }
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override {
    EnsureShape(grad_in, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*grad_in)[i] = std::fabs(in[i]) <= 1.0f ? grad_out[i] * 0.5f : 0.0f;
  }
};

TEST(FusedClampTest, TrainingGivesTheBitsOfTheUnfusedGraph) {
  for (const Case& c : Cases()) {
    for (bool hooked : {false, true}) {
      SCOPED_TRACE(std::string(c.what) + (hooked ? ", a transform on every activation" : ""));
      std::unique_ptr<Model> fused = Built(c.yaml, c.sample, 3), plain = Built(c.yaml, c.sample, 3);
      ASSERT_NE(fused, nullptr);
      ASSERT_NE(plain, nullptr);
      plain->set_keep_values(true);  // every raw value asked for: no fusion
      if (hooked) {
        for (Model* m : {fused.get(), plain.get()}) {
          for (int i = 0; i < m->num_layers(); ++i) {
            if (dynamic_cast<Clamp*>(&m->layer(i)) != nullptr)
              m->layer(i).set_output_transform(std::make_shared<Grid>());
          }
        }
      }
      Shape batch_shape = {5};
      batch_shape.insert(batch_shape.end(), c.sample.begin(), c.sample.end());
      const std::vector<int32_t> labels = {0, 2, 1, 1, 0};
      for (int step = 0; step < 3; ++step) {
        Tensor x = testing::RandomTensor(batch_shape, 11 + step);
        if (step == 2) x[3] = std::nanf("");  // a NaN takes the same way through both
        SoftmaxCrossEntropy loss_f, loss_p;
        Tensor dl_f, dl_p;
        const Tensor& lf = fused->Forward(x);
        const Tensor& lp = plain->Forward(x);
        ASSERT_TRUE(SameBits(lf, lp)) << "logits, step " << step;
        loss_f.Forward(lf, labels, nullptr);
        loss_p.Forward(lp, labels, nullptr);
        loss_f.Backward(&dl_f);
        loss_p.Backward(&dl_p);
        EXPECT_EQ(FusedPairs(*fused), c.fused);
        EXPECT_EQ(FusedPairs(*plain), 0);
        fused->Backward(x, dl_f);
        plain->Backward(x, dl_p);
        const auto pf = fused->NamedParameters(), pp = plain->NamedParameters();
        ASSERT_EQ(pf.size(), pp.size());
        for (size_t k = 0; k < pf.size(); ++k) {
          ASSERT_TRUE(SameBits(pf[k].second->grad, pp[k].second->grad)) << pf[k].first << ", step " << step;
          for (Parameter* p : {pf[k].second, pp[k].second}) {
            for (int64_t e = 0; e < p->value.numel(); ++e) p->value[e] -= 0.05f * p->grad[e];
          }
        }
      }
    }
  }
}

// An output transform that copies (a stand-in for QAT's fake quantization).
class Identity : public TensorTransform {
 public:
  std::string Describe() const override { return "identity"; }
  void Forward(const Tensor& in, Tensor* out, bool training) override { *out = in; }
  void Backward(const Tensor& in, const Tensor& grad_out, Tensor* grad_in) override { *grad_in = grad_out; }
};

TEST(FusedClampTest, EvalModeAndConvHooksDoNotFuse) {
  std::unique_ptr<Model> m = Built("{name: cnn}", {1, 28, 28}, 10);
  ASSERT_NE(m, nullptr);
  const Tensor x = testing::RandomTensor({2, 1, 28, 28}, 3);
  m->Forward(x);
  EXPECT_EQ(FusedPairs(*m), 2);
  // A hook on the activation (where QAT places them) still fuses; one on the
  // conv (a value inside the pair) keeps the two apart.
  m->FindLayer("relu1")->set_output_transform(std::make_shared<Identity>());
  m->Forward(x);
  EXPECT_EQ(FusedPairs(*m), 2);
  m->FindLayer("conv2")->set_output_transform(std::make_shared<Identity>());
  m->Forward(x);
  EXPECT_EQ(FusedPairs(*m), 1);
  m->FindLayer("relu1")->set_output_transform(nullptr);
  m->FindLayer("conv2")->set_output_transform(nullptr);
  m->Forward(x);
  EXPECT_EQ(FusedPairs(*m), 2);
  m->set_training(false);
  m->set_keep_values(true);
  m->Forward(x);
  EXPECT_EQ(FusedPairs(*m), 0);
}

// Each Conv2d path with SetOutputClamp against the same layer without it
// followed by Clamp::Forward, including NaN and values on both bounds.
TEST(FusedClampTest, EveryConvPathClampsLikeTheClampLayer) {
  using Layer = testing::ConvLayerCase;
  for (const Layer& l : {
           Layer{"direct (1 channel)", {.in_channels = 1, .out_channels = 4, .kernel = 3, .padding = 1}, 10, false},
           Layer{"row panels", {.in_channels = 4, .out_channels = 9, .kernel = 3, .padding = 1}, 12, false},
           Layer{"winograd", {.in_channels = 4, .out_channels = 9, .kernel = 3, .padding = 1}, 12, true},
           Layer{"pointwise", {.in_channels = 6, .out_channels = 10, .kernel = 1}, 7, false},
           Layer{"depthwise", {.in_channels = 6, .out_channels = 6, .kernel = 3, .padding = 1, .groups = 6}, 8, false},
           Layer{"groups 2", {.in_channels = 6, .out_channels = 4, .kernel = 3, .padding = 1, .groups = 2}, 8, false},
           Layer{"stride 2 (im2col + GEMM)",
                 {.in_channels = 3, .out_channels = 5, .kernel = 3, .stride = 2, .padding = 1},
                 11,
                 false},
       }) {
    for (PanelIsa isa : {PanelIsa::kAvx2, PanelIsa::kAvx512}) {
      if (!SetPanelIsa(isa)) continue;  // no AVX-512 here
      SCOPED_TRACE(std::string(l.what) + (isa == PanelIsa::kAvx2 ? ", AVX2 kernel" : ", AVX-512 kernel"));
      Conv2d conv("c", l.o);
      conv.set_winograd(l.winograd);
      ASSERT_TRUE(conv.Build({l.o.in_channels, l.hw, l.hw}).ok());
      conv.weight().value = testing::RandomTensor(conv.weight().value.shape(), 2);
      Tensor x = testing::RandomTensor({3, l.o.in_channels, l.hw, l.hw}, 4);
      x[5] = std::nanf("");
      for (auto [lo, hi] : {std::pair<float, float>{0.0f, INFINITY}, {0.0f, 6.0f}, {-0.3f, 0.2f}}) {
        Tensor raw, want, got;
        conv.Forward(x, &raw);
        Clamp clamp("a", Clamp::Kind::kHardtanh, lo, hi);
        clamp.Forward(raw, &want);
        ASSERT_TRUE(conv.SetOutputClamp(true, lo, hi));
        conv.Forward(x, &got);
        ASSERT_TRUE(conv.SetOutputClamp(false, 0.0f, 0.0f));
        EXPECT_TRUE(SameBits(got, want)) << "[" << lo << ", " << hi << "]";
        int nan = 0, at_bound = 0;
        for (int64_t i = 0; i < got.numel(); ++i) nan += std::isnan(got[i]), at_bound += got[i] == lo || got[i] == hi;
        EXPECT_GT(nan, 0);
        EXPECT_GT(at_bound, 0);
      }
    }
  }
  SetPanelIsa(BestPanelIsa());
}

}  // namespace
}  // namespace quant::nn
