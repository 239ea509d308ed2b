// Grouped and depthwise Conv2d: forward and every gradient (dx, dW, db)
// against a plain double-precision reference convolution over groups
// {1, 2, C}, stride {1, 2}, padding {0, 1}, kernel {1, 3} and odd sizes (so
// every path runs: direct, row panels, im2col per image and in chunks, and the
// depthwise kernel); central finite differences on small shapes; depthwise with
// multiplier 2; the depthwise kernel against the per-group loop; PyTorch's
// initialisation; shape errors; and the `op:` registration.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "quant/core/params.h"
#include "quant/core/registry.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/init.h"
#include "tests/nn/gradcheck.h"
#include "yaml-cpp/yaml.h"

namespace quant::nn {
namespace {

using testing::GradCheck;
using testing::RandomTensor;

struct Geometry {
  int64_t batch, cin, h, w, cout, k, stride, pad, groups;
  int64_t out_h() const { return (h + 2 * pad - k) / stride + 1; }
  int64_t out_w() const { return (w + 2 * pad - k) / stride + 1; }
  std::string Describe() const {
    return "cin=" + std::to_string(cin) + " " + std::to_string(h) + "x" + std::to_string(w) +
           " cout=" + std::to_string(cout) + " k=" + std::to_string(k) +
           " stride=" + std::to_string(stride) + " pad=" + std::to_string(pad) +
           " groups=" + std::to_string(groups);
  }
};

// The plain definition, in double: y[n][co][oh][ow] = b[co] + sum over the
// group's input channels and the taps of w[co][ci][ki][kj] x[n][g*cg + ci][...],
// and the gradients of L = sum(dy * y).
struct Reference {
  std::vector<double> y, dx, dw, db;
};

Reference ReferenceConv(const Geometry& g, const Tensor& x, const Tensor& w, const Tensor* b,
                        const Tensor& dy) {
  const int64_t ho = g.out_h(), wo = g.out_w(), cg = g.cin / g.groups, og = g.cout / g.groups;
  Reference r;
  r.y.assign(g.batch * g.cout * ho * wo, 0.0);
  r.dx.assign(x.numel(), 0.0);
  r.dw.assign(w.numel(), 0.0);
  r.db.assign(g.cout, 0.0);
  for (int64_t n = 0; n < g.batch; ++n) {
    for (int64_t co = 0; co < g.cout; ++co) {
      const int64_t group = co / og;
      for (int64_t oh = 0; oh < ho; ++oh) {
        for (int64_t ow = 0; ow < wo; ++ow) {
          const int64_t yi = ((n * g.cout + co) * ho + oh) * wo + ow;
          double s = b != nullptr ? (*b)[co] : 0.0;
          const double d = dy[yi];
          r.db[co] += d;
          for (int64_t ci = 0; ci < cg; ++ci) {
            const int64_t c = group * cg + ci;
            for (int64_t ki = 0; ki < g.k; ++ki) {
              for (int64_t kj = 0; kj < g.k; ++kj) {
                const int64_t ih = oh * g.stride - g.pad + ki, iw = ow * g.stride - g.pad + kj;
                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                const int64_t xi = ((n * g.cin + c) * g.h + ih) * g.w + iw;
                const int64_t wi = ((co * cg + ci) * g.k + ki) * g.k + kj;
                s += static_cast<double>(w[wi]) * x[xi];
                r.dw[wi] += d * x[xi];
                r.dx[xi] += d * w[wi];
              }
            }
          }
          r.y[yi] = s;
        }
      }
    }
  }
  return r;
}

Conv2dOptions Options(const Geometry& g) {
  return {.in_channels = g.cin, .out_channels = g.cout, .kernel = g.k, .stride = g.stride,
          .padding = g.pad, .bias = true, .groups = g.groups};
}

// Max |a - b| / (1 + |b|) over the elements.
double MaxError(const Tensor& a, const std::vector<double>& b) {
  EXPECT_EQ(a.numel(), static_cast<int64_t>(b.size()));
  double e = 0;
  for (size_t i = 0; i < b.size(); ++i) e = std::max(e, std::fabs(a[i] - b[i]) / (1.0 + std::fabs(b[i])));
  return e;
}

// Forward and backward of a built layer against the reference (tolerances for
// float sums of up to a few thousand terms).
void ExpectMatchesReference(Conv2d& conv, const Geometry& g, uint64_t seed) {
  Rng rng(seed);
  conv.ResetParameters(rng);
  const Tensor x = RandomTensor({g.batch, g.cin, g.h, g.w}, seed + 1);
  const Tensor dy = RandomTensor({g.batch, g.cout, g.out_h(), g.out_w()}, seed + 2);
  Tensor y, dx;
  conv.Forward(x, &y);
  ASSERT_EQ(y.shape(), (Shape{g.batch, g.cout, g.out_h(), g.out_w()})) << g.Describe();
  conv.Backward(x, y, dy, &dx);
  const Reference r = ReferenceConv(g, x, conv.weight().value, &conv.bias().value, dy);
  EXPECT_LT(MaxError(y, r.y), 1e-5) << g.Describe();
  EXPECT_LT(MaxError(dx, r.dx), 1e-5) << g.Describe();
  EXPECT_LT(MaxError(conv.weight().grad, r.dw), 1e-5) << g.Describe();
  EXPECT_LT(MaxError(conv.bias().grad, r.db), 1e-5) << g.Describe();
  // Without dx (a first layer): the same parameter gradients.
  const Tensor dw = conv.weight().grad;
  conv.Backward(x, y, dy, nullptr);
  for (int64_t i = 0; i < dw.numel(); ++i) ASSERT_EQ(conv.weight().grad[i], dw[i]) << g.Describe();
}

TEST(Conv2dGroupsTest, ForwardAndGradientsMatchReference) {
  int cases = 0;
  for (int64_t groups_kind = 0; groups_kind < 3; ++groups_kind) {
    for (int64_t stride : {1, 2}) {
      for (int64_t pad : {0, 1}) {
        for (int64_t k : {1, 3}) {
          // Odd sizes; 9 and 11 wide rows reach the row-panel path, 13x11 the
          // per-image GEMM, 5x7 the chunked GEMM.
          for (const auto& [h, w] : std::vector<std::pair<int64_t, int64_t>>{{5, 7}, {9, 11}, {13, 11}}) {
            const int64_t cin = 6;
            const int64_t groups = groups_kind == 0 ? 1 : groups_kind == 1 ? 2 : cin;
            const int64_t cout = groups_kind == 2 ? cin : 10;
            const Geometry g{3, cin, h, w, cout, k, stride, pad, groups};
            Conv2d conv("conv", Options(g));
            absl::StatusOr<Shape> out = conv.Build({g.cin, g.h, g.w});
            ASSERT_TRUE(out.ok()) << out.status();
            ExpectMatchesReference(conv, g, 100 + cases);
            ++cases;
          }
        }
      }
    }
  }
  EXPECT_EQ(cases, 72);
}

TEST(Conv2dGroupsTest, DepthwiseMultiplierTwoAndOtherShapes) {
  for (const Geometry& g : {
           Geometry{2, 4, 7, 9, 8, 3, 1, 1, 4},      // multiplier 2
           Geometry{2, 4, 9, 8, 8, 3, 2, 1, 4},      // multiplier 2, stride 2, even width
           Geometry{2, 3, 6, 5, 9, 3, 2, 0, 3},      // multiplier 3
           Geometry{2, 5, 11, 13, 5, 5, 1, 2, 5},    // 5x5 taps (blocks of 9 + 9 + 7)
           Geometry{2, 5, 10, 12, 5, 5, 2, 2, 5},    // 5x5, stride 2
           Geometry{2, 3, 10, 11, 3, 3, 3, 1, 3},    // stride 3 (the scalar phase split)
           Geometry{2, 2, 6, 6, 2, 2, 2, 1, 2},      // even kernel, stride 2
           Geometry{1, 16, 14, 14, 16, 3, 1, 1, 16},  // mobilenet_mini shapes
           Geometry{1, 16, 14, 14, 16, 3, 2, 1, 16},
           Geometry{1, 8, 28, 28, 8, 3, 1, 1, 8},
           Geometry{1, 8, 7, 7, 8, 3, 1, 1, 8},
           Geometry{2, 12, 7, 9, 6, 3, 1, 1, 3},     // general groups, cout < cin
       }) {
    Conv2d conv("conv", Options(g));
    absl::StatusOr<Shape> out = conv.Build({g.cin, g.h, g.w});
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectMatchesReference(conv, g, 7);
  }
}

// 1x1 convolutions without padding (the pointwise kernel for stride 1, the
// subsampling im2col for stride 2): channel counts around the kernel's 6-row
// blocks, planes shorter than, equal to and not a multiple of its 16-column
// panels, odd batches, and mobilenet_mini's / resnet_mini's shapes.
TEST(Conv2dGroupsTest, PointwiseMatchesReference) {
  for (const Geometry& g : {
           Geometry{3, 5, 3, 5, 7, 1, 1, 0, 1},      // 15 pixels: one partial panel
           Geometry{3, 7, 4, 4, 9, 1, 1, 0, 1},      // 16 pixels: one full panel
           Geometry{5, 13, 7, 7, 8, 1, 1, 0, 1},     // 49: 3 panels + 1 column
           Geometry{1, 1, 5, 6, 3, 1, 1, 0, 1},      // one input channel
           Geometry{2, 17, 9, 11, 20, 1, 1, 0, 1},
           Geometry{3, 16, 14, 14, 16, 1, 1, 0, 1},  // mobilenet_mini ir1_project
           Geometry{2, 16, 14, 14, 64, 1, 1, 0, 1},  // ir2_expand
           Geometry{3, 96, 7, 7, 24, 1, 1, 0, 1},    // ir3_project
           Geometry{3, 32, 4, 4, 128, 1, 1, 0, 1},   // ir5_expand, head
           Geometry{3, 16, 14, 14, 32, 1, 2, 0, 1},  // resnet_mini s2b1_proj
           Geometry{3, 32, 7, 7, 64, 1, 2, 0, 1},    // s3b1_proj
           Geometry{2, 5, 8, 9, 7, 1, 3, 0, 1},      // stride 3
           Geometry{2, 6, 5, 5, 4, 1, 1, 1, 1},      // padded 1x1: the generic path
       }) {
    Conv2d conv("conv", Options(g));
    ASSERT_TRUE(conv.Build({g.cin, g.h, g.w}).ok());
    ExpectMatchesReference(conv, g, 11);
    // A second step with a different batch size reuses the buffers.
    Geometry g2 = g;
    g2.batch = g.batch + 2;
    ExpectMatchesReference(conv, g2, 12);
  }
}

// Stride > 1 with groups = 1: im2col and col2im through phase planes; and
// stride 1 on maps under 128 pixels that are not row panels (dx as one GEMM
// per backward chunk).
TEST(Conv2dGroupsTest, StridedAndSmallMapsMatchReference) {
  for (const Geometry& g : {
           Geometry{3, 32, 7, 7, 32, 3, 1, 1, 1},    // resnet_mini s2b1_conv2
           Geometry{3, 64, 4, 4, 64, 3, 1, 1, 1},    // s3b1_conv2
           Geometry{5, 3, 6, 5, 7, 3, 1, 1, 1},
           Geometry{4, 2, 7, 3, 5, 5, 1, 2, 1},
           Geometry{3, 16, 14, 14, 32, 3, 2, 1, 1},  // resnet_mini s2b1_conv1
           Geometry{3, 32, 7, 7, 64, 3, 2, 1, 1},    // s3b1_conv1
           Geometry{2, 1, 28, 28, 16, 3, 2, 1, 1},   // mobilenet_mini stem
           Geometry{3, 5, 9, 8, 7, 3, 3, 1, 1},      // stride 3
           Geometry{2, 4, 10, 11, 6, 5, 2, 2, 1},    // 5x5 taps
           Geometry{2, 3, 6, 7, 5, 2, 2, 0, 1},      // even kernel, no padding
           Geometry{2, 3, 5, 5, 4, 3, 2, 2, 1},      // padding 2: rows of zeros only
       }) {
    Conv2d conv("conv", Options(g));
    ASSERT_TRUE(conv.Build({g.cin, g.h, g.w}).ok());
    ExpectMatchesReference(conv, g, 13);
    Geometry g2 = g;
    g2.batch = g.batch + 3;
    ExpectMatchesReference(conv, g2, 14);
  }
}

TEST(Conv2dGroupsTest, GradientsMatchFiniteDifferences) {
  for (const Geometry& g : {
           Geometry{2, 4, 5, 6, 4, 3, 1, 1, 2},
           Geometry{2, 4, 7, 5, 6, 3, 2, 1, 2},
           Geometry{2, 3, 5, 5, 3, 3, 1, 1, 3},
           Geometry{2, 3, 7, 6, 6, 3, 2, 1, 3},  // depthwise, multiplier 2, stride 2
           Geometry{2, 2, 5, 5, 4, 1, 2, 0, 2},
           Geometry{3, 5, 3, 7, 7, 1, 1, 0, 1},  // pointwise kernel
           Geometry{2, 4, 5, 7, 6, 1, 2, 0, 1},  // 1x1 stride 2
           Geometry{2, 3, 7, 6, 4, 3, 2, 1, 1},  // 3x3 stride 2, groups 1
       }) {
    Conv2d conv("conv", Options(g));
    ASSERT_TRUE(conv.Build({g.cin, g.h, g.w}).ok());
    Rng rng(3);
    conv.ResetParameters(rng);
    EXPECT_EQ(GradCheck(conv, RandomTensor({g.batch, g.cin, g.h, g.w}, 4), 5), "") << conv.Describe();
  }
  Conv2d no_bias("conv", {.in_channels = 4, .out_channels = 4, .kernel = 3, .stride = 1,
                          .padding = 0, .bias = false, .groups = 4});
  ASSERT_TRUE(no_bias.Build({4, 6, 6}).ok());
  Rng rng(3);
  no_bias.ResetParameters(rng);
  EXPECT_EQ(no_bias.parameters().size(), 1u);
  EXPECT_EQ(GradCheck(no_bias, RandomTensor({2, 4, 6, 6}, 4), 5), "");
}

// w -> w^3: a non-linear weight hook, so that using the stored weight instead
// of the transformed one (or skipping the transform's backward) shows.
class Cube : public TensorTransform {
 public:
  std::string Describe() const override { return "cube"; }
  void Forward(const Tensor& in, Tensor* out, bool) override {
    EnsureShape(out, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*out)[i] = in[i] * in[i] * in[i];
  }
  void Backward(const Tensor& in, const Tensor& g, Tensor* grad_in) override {
    EnsureShape(grad_in, in.shape());
    for (int64_t i = 0; i < in.numel(); ++i) (*grad_in)[i] = 3 * in[i] * in[i] * g[i];
  }
};

TEST(Conv2dGroupsTest, WeightTransformIsUsedAndDifferentiated) {
  for (const Geometry& g : {Geometry{2, 4, 6, 5, 6, 3, 1, 1, 2}, Geometry{2, 4, 6, 5, 8, 3, 2, 1, 4}}) {
    Conv2d conv("conv", Options(g));
    ASSERT_TRUE(conv.Build({g.cin, g.h, g.w}).ok());
    Rng rng(3);
    conv.ResetParameters(rng);
    // Weights around 1 so that the cube matters.
    for (int64_t i = 0; i < conv.weight().value.numel(); ++i) conv.weight().value[i] += 0.8f;
    conv.set_weight_transform(std::make_shared<Cube>());
    EXPECT_EQ(GradCheck(conv, RandomTensor({g.batch, g.cin, g.h, g.w}, 4), 5), "") << conv.Describe();
  }
}

// The dedicated kernel and the per-group loop of groups = 1 layers compute
// the same function (up to float rounding).
TEST(Conv2dGroupsTest, DepthwiseKernelAgreesWithGroupLoop) {
  for (int64_t stride : {1, 2}) {
    const Conv2dOptions o{.in_channels = 24, .out_channels = 24, .kernel = 3, .stride = stride,
                          .padding = 1, .groups = 24};
    Conv2d fast("dw", o), loop("dw", o);
    loop.set_force_group_loop(true);
    ASSERT_TRUE(fast.Build({24, 14, 14}).ok());
    ASSERT_TRUE(loop.Build({24, 14, 14}).ok());
    Rng r1(5), r2(5);
    fast.ResetParameters(r1);
    loop.ResetParameters(r2);
    const Tensor x = RandomTensor({4, 24, 14, 14}, 6);
    Tensor y1, y2, dx1, dx2;
    fast.Forward(x, &y1);
    loop.Forward(x, &y2);
    const Tensor dy = RandomTensor(y1.shape(), 8);
    fast.Backward(x, y1, dy, &dx1);
    loop.Backward(x, y2, dy, &dx2);
    for (int64_t i = 0; i < y1.numel(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-5) << i;
    for (int64_t i = 0; i < dx1.numel(); ++i) ASSERT_NEAR(dx1[i], dx2[i], 1e-5) << i;
    for (int64_t i = 0; i < fast.weight().grad.numel(); ++i) {
      ASSERT_NEAR(fast.weight().grad[i], loop.weight().grad[i], 1e-4) << i;
    }
    for (int64_t i = 0; i < 24; ++i) ASSERT_NEAR(fast.bias().grad[i], loop.bias().grad[i], 1e-4);
  }
}

TEST(Conv2dGroupsTest, WeightShapeInitAndFlops) {
  Conv2d conv("conv", {.in_channels = 8, .out_channels = 16, .kernel = 3, .padding = 1, .groups = 4});
  ASSERT_TRUE(conv.Build({8, 10, 10}).ok());
  EXPECT_EQ(conv.weight().value.shape(), (Shape{16, 2, 3, 3}));
  EXPECT_EQ(conv.bias().value.shape(), (Shape{16}));
  EXPECT_EQ(conv.ForwardFlopsPerSample(), 2 * 16 * 100 * 2 * 9);
  EXPECT_EQ(conv.Describe(), "Conv2d(8, 16, kernel=3, stride=1, padding=1, groups=4)");
  // PyTorch: kaiming_uniform(a = sqrt(5)) with fan_in = Cin/groups * k * k,
  // bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)); weight drawn first, then bias.
  Rng rng(0);
  conv.ResetParameters(rng);
  Rng again(0);
  Tensor w(conv.weight().value.shape()), b(conv.bias().value.shape());
  FillUniform(&w, KaimingUniformBound(18), again);
  FillUniform(&b, KaimingUniformBound(18), again);
  for (int64_t i = 0; i < w.numel(); ++i) ASSERT_EQ(conv.weight().value[i], w[i]);
  for (int64_t i = 0; i < b.numel(); ++i) ASSERT_EQ(conv.bias().value[i], b[i]);
  EXPECT_FLOAT_EQ(KaimingUniformBound(18), 1.0f / std::sqrt(18.0f));
  // groups = 1: the draws of before groups existed (fan_in = Cin * k * k).
  Conv2d plain("conv", {.in_channels = 8, .out_channels = 16, .kernel = 3});
  ASSERT_TRUE(plain.Build({8, 10, 10}).ok());
  Rng r1(0), r2(0);
  plain.ResetParameters(r1);
  Tensor pw({16, 8, 3, 3});
  FillUniform(&pw, KaimingUniformBound(72), r2);
  for (int64_t i = 0; i < pw.numel(); ++i) ASSERT_EQ(plain.weight().value[i], pw[i]);
  EXPECT_EQ(plain.Describe(), "Conv2d(8, 16, kernel=3, stride=1, padding=0)");
}

TEST(Conv2dGroupsTest, ChannelsNotDivisibleByGroupsIsAnError) {
  Conv2d in("conv", {.in_channels = 6, .out_channels = 8, .groups = 4});
  absl::StatusOr<Shape> s = in.Build({6, 8, 8});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.status().message().find("in_channels (6)"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("groups (4)"), std::string::npos) << s.status();
  EXPECT_NE(s.status().message().find("[6, 8, 8]"), std::string::npos) << s.status();
  // in_channels inferred from the input.
  Conv2d out("conv", {.out_channels = 6, .groups = 4});
  s = out.Build({8, 5, 5});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("out_channels (6)"), std::string::npos) << s.status();
  Conv2d zero("conv", {.in_channels = 4, .out_channels = 4, .groups = 0});
  EXPECT_FALSE(zero.Build({4, 5, 5}).ok());
}

ParamReader Reader(const std::string& yaml) { return ParamReader(YAML::Load(yaml), "cfg.yaml", "graph.conv"); }

TEST(Conv2dGroupsTest, RegisteredAsOpAndCreatedFromYaml) {
  ASSERT_TRUE(Registry<Layer>::Get().Contains("conv2d"));
  ParamReader p = Reader("{out_channels: 16, groups: 8, kernel: 3, stride: 2, padding: 1, bias: false}");
  absl::StatusOr<std::unique_ptr<Layer>> layer = Registry<Layer>::Get().Create("conv2d", p);
  ASSERT_TRUE(layer.ok()) << layer.status();
  ASSERT_TRUE(p.Finish().ok()) << p.Finish();
  EXPECT_EQ((*layer)->type(), "conv2d");
  absl::StatusOr<Shape> out = (*layer)->Build({8, 9, 9});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, (Shape{16, 5, 5}));
  auto* conv = dynamic_cast<Conv2d*>(layer->get());
  ASSERT_NE(conv, nullptr);
  EXPECT_EQ(conv->options().groups, 8);
  EXPECT_TRUE(conv->depthwise());
  EXPECT_EQ(conv->weight().value.shape(), (Shape{16, 1, 3, 3}));
  EXPECT_EQ((*layer)->Describe(), "Conv2d(8, 16, kernel=3, stride=2, padding=1, groups=8, bias=false)");

  ParamReader defaults = Reader("{out_channels: 4}");
  layer = Registry<Layer>::Get().Create("conv2d", defaults);
  ASSERT_TRUE(layer.ok()) << layer.status();
  EXPECT_EQ(dynamic_cast<Conv2d*>(layer->get())->options().groups, 1);
  EXPECT_EQ(dynamic_cast<Conv2d*>(layer->get())->options().kernel, 3);
}

TEST(Conv2dGroupsTest, YamlErrorsNameTheKey) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  for (const Case& c : {Case{"{kernel: 3}", "graph.conv.out_channels: a conv2d layer needs out_channels"},
                        Case{"{out_channels: 0}", "expected an integer in [1, 1048576], got 0"},
                        Case{"{out_channels: 4, groups: 8}", "must be at most out_channels (4)"},
                        Case{"{out_channels: 6, groups: 4}", "out_channels (6) must be divisible by groups (4)"},
                        Case{"{in_channels: 6, out_channels: 8, groups: 4}",
                             "in_channels (6) must be divisible by groups (4)"},
                        Case{"{out_channels: 4, groups: 0}", "groups"},
                        Case{"{out_channels: 4, stride: 0}", "stride"}}) {
    ParamReader p = Reader(c.yaml);
    absl::StatusOr<std::unique_ptr<Layer>> layer = Registry<Layer>::Get().Create("conv2d", p);
    ASSERT_FALSE(layer.ok()) << c.yaml;
    EXPECT_NE(layer.status().message().find(c.message), std::string::npos) << layer.status();
    EXPECT_NE(layer.status().message().find("cfg.yaml"), std::string::npos) << layer.status();
  }
  // `run --list` describes the op's parameters.
  bool listed = false;
  for (const PluginDescription& d : Registry<Layer>::Get().Describe()) {
    if (d.name != "conv2d") continue;
    listed = true;
    std::vector<std::string> keys;
    for (const ParamInfo& i : d.params) keys.push_back(i.key);
    EXPECT_EQ(keys, (std::vector<std::string>{"in_channels", "out_channels", "kernel", "stride",
                                              "padding", "bias", "groups"}));
  }
  EXPECT_TRUE(listed);
}

}  // namespace
}  // namespace quant::nn
