// ONNX import (`model: {name: onnx, path: ...}`): graphs built here with the
// ONNX protobufs are imported and must give the logits of the ONNX runner
// (ONNX's semantics, tests/onnx/conformance_test.cc) within 1e-4; bad files
// are errors naming the file, the node, the op and the opset.
#include "quant/onnx/onnx_model.h"

#include <fstream>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/onnx/onnx_runner.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace onnx_io {
namespace {

using ::testing::HasSubstr;

// Builds ONNX graphs tersely.
class GraphBuilder {
 public:
  explicit GraphBuilder(int opset = 13) {
    m_.set_ir_version(8);
    m_.add_opset_import()->set_version(opset);
    g_ = m_.mutable_graph();
    g_->set_name("test");
  }
  void Input(const std::string& name, std::vector<int64_t> shape, const std::string& batch_param = "N") {
    onnx::ValueInfoProto* v = g_->add_input();
    v->set_name(name);
    onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
    t->set_elem_type(1);
    for (size_t d = 0; d < shape.size(); ++d) {
      if (d == 0 || shape[d] < 0) {
        t->mutable_shape()->add_dim()->set_dim_param(d == 0 ? batch_param : "height");
      } else {
        t->mutable_shape()->add_dim()->set_dim_value(shape[d]);
      }
    }
  }
  void Output(const std::string& name) { g_->add_output()->set_name(name); }
  // A random float initializer.
  void Weight(const std::string& name, std::vector<int64_t> shape, float scale = 0.3f) {
    OnnxTensor t = OnnxTensor::Zeros(DType::kFloat, shape);
    for (float& v : t.f) v = scale * std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng_);
    *g_->add_initializer() = ToProto(t, name);
  }
  void Positive(const std::string& name, int64_t n) {
    OnnxTensor t = OnnxTensor::Zeros(DType::kFloat, {n});
    for (float& v : t.f) v = std::uniform_real_distribution<float>(0.5f, 1.5f)(rng_);
    *g_->add_initializer() = ToProto(t, name);
  }
  void Scalar(const std::string& name, float v) {
    OnnxTensor t = OnnxTensor::Zeros(DType::kFloat, {});
    t.f[0] = v;
    *g_->add_initializer() = ToProto(t, name);
  }
  void Ints(const std::string& name, std::vector<int64_t> v) {
    OnnxTensor t = OnnxTensor::Zeros(DType::kInt64, {static_cast<int64_t>(v.size())});
    t.i = v;
    *g_->add_initializer() = ToProto(t, name);
  }
  onnx::NodeProto* Node(const std::string& op, std::vector<std::string> in, const std::string& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out + "_node");
    for (const std::string& i : in) n->add_input(i);
    n->add_output(out);
    return n;
  }
  static void SetInts(onnx::NodeProto* n, const std::string& name, std::vector<int64_t> v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }
  static void SetInt(onnx::NodeProto* n, const std::string& name, int64_t v) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  onnx::ModelProto& model() { return m_; }

 private:
  onnx::ModelProto m_;
  onnx::GraphProto* g_;
  std::mt19937 rng_{7};
};

// A residual CNN: conv-bn-relu, conv + skip add, relu, maxpool, GAP, flatten, Gemm.
onnx::ModelProto ResidualCnn() {
  GraphBuilder b;
  b.Input("x", {-1, 1, 8, 8});
  b.Weight("w1", {4, 1, 3, 3});
  b.Weight("b1", {4});
  GraphBuilder::SetInts(b.Node("Conv", {"x", "w1", "b1"}, "c1"), "pads", {1, 1, 1, 1});
  b.Positive("g", 4);
  b.Weight("beta", {4});
  b.Weight("mean", {4});
  b.Positive("var", 4);
  b.Node("BatchNormalization", {"c1", "g", "beta", "mean", "var"}, "bn1");
  b.Node("Relu", {"bn1"}, "r1");
  b.Weight("w2", {4, 2, 3, 3});
  onnx::NodeProto* c2 = b.Node("Conv", {"r1", "w2"}, "c2");
  GraphBuilder::SetInts(c2, "pads", {1, 1, 1, 1});
  GraphBuilder::SetInt(c2, "group", 2);
  b.Node("Add", {"c2", "r1"}, "sum");
  b.Scalar("zero", 0.0f);
  b.Scalar("six", 6.0f);
  b.Node("Clip", {"sum", "zero", "six"}, "r2");
  GraphBuilder::SetInts(b.Node("MaxPool", {"r2"}, "p"), "kernel_shape", {2, 2});
  GraphBuilder::SetInts(b.model().mutable_graph()->mutable_node(b.model().graph().node_size() - 1), "strides", {2, 2});
  b.Node("GlobalAveragePool", {"p"}, "gap");
  b.Node("Flatten", {"gap"}, "flat");
  b.Weight("wf", {3, 4});
  b.Weight("bf", {3});
  GraphBuilder::SetInt(b.Node("Gemm", {"flat", "wf", "bf"}, "logits"), "transB", 1);
  b.Output("logits");
  return b.model();
}

// Flatten of a conv output, then MatMul + bias Add (the way PyTorch exports Linear without Gemm).
onnx::ModelProto FlattenMatMul() {
  GraphBuilder b;
  b.Input("x", {-1, 1, 6, 6});
  b.Weight("w1", {2, 1, 3, 3});
  onnx::NodeProto* c = b.Node("Conv", {"x", "w1"}, "c1");
  GraphBuilder::SetInts(c, "strides", {1, 1});
  b.Node("Relu", {"c1"}, "r1");
  b.Ints("shape", {0, -1});
  b.Node("Reshape", {"r1", "shape"}, "flat");
  b.Weight("wm", {32, 5});
  b.Node("MatMul", {"flat", "wm"}, "mm");
  b.Weight("bias", {5});
  b.Node("Add", {"mm", "bias"}, "logits");
  b.Output("logits");
  return b.model();
}

// Mul by constants after a Conv (per channel) and after a MatMul + bias (scalar): folded.
onnx::ModelProto ConvMulMatMulMul() {
  GraphBuilder b;
  b.Input("x", {-1, 1, 6, 6});
  b.Weight("w1", {3, 1, 3, 3});
  b.Weight("b1", {3});
  b.Node("Conv", {"x", "w1", "b1"}, "c1");
  b.Weight("gamma", {3, 1, 1}, 2.0f);
  b.Node("Mul", {"c1", "gamma"}, "scaled");
  b.Node("Relu", {"scaled"}, "r1");
  b.Node("Flatten", {"r1"}, "flat");
  b.Weight("wm", {48, 4});
  b.Node("MatMul", {"flat", "wm"}, "mm");
  b.Weight("bias", {4});
  b.Node("Add", {"mm", "bias"}, "pre");
  b.Scalar("half", 0.5f);
  b.Node("Mul", {"half", "pre"}, "logits");
  b.Output("logits");
  return b.model();
}

void ExpectSameLogits(const onnx::ModelProto& proto, const nn::Shape& sample, int classes) {
  absl::StatusOr<std::unique_ptr<OnnxModel>> m = OnnxModel::FromProto(proto, "test.onnx");
  ASSERT_TRUE(m.ok()) << m.status();
  const absl::Status built = (*m)->Build(sample, classes, 0);
  ASSERT_TRUE(built.ok()) << built;
  (*m)->set_training(false);
  const int64_t batch = 5;
  OnnxTensor x = OnnxTensor::Zeros(DType::kFloat, {batch});
  for (int64_t d : sample) x.shape.push_back(d);
  x.f.assign(x.numel(), 0.0f);
  std::mt19937 rng(3);
  for (float& v : x.f) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
  Tensor xt(x.shape);
  std::copy(x.f.begin(), x.f.end(), xt.data());
  const Tensor& logits = (*m)->Forward(xt);
  OnnxRunner runner(proto, "test.onnx");
  ASSERT_EQ(runner.Unsupported(), "");
  absl::StatusOr<std::vector<OnnxTensor>> want = runner.Run({x});
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ((*want)[0].numel(), logits.numel());
  for (int64_t k = 0; k < logits.numel(); ++k) {
    EXPECT_NEAR(logits.data()[k], (*want)[0].f[k], 1e-4) << "logit " << k;
  }
}

TEST(OnnxModelTest, ResidualCnnGivesTheRunnersLogits) { ExpectSameLogits(ResidualCnn(), {1, 8, 8}, 3); }

TEST(OnnxModelTest, ReshapeAndMatMulPlusBiasGiveTheRunnersLogits) { ExpectSameLogits(FlattenMatMul(), {1, 6, 6}, 5); }

TEST(OnnxModelTest, MulByConstantsIsFoldedIntoTheLayerBefore) { ExpectSameLogits(ConvMulMatMulMul(), {1, 6, 6}, 4); }

TEST(OnnxModelTest, ImportedModelIsTrainable) {
  absl::StatusOr<std::unique_ptr<OnnxModel>> m = OnnxModel::FromProto(ResidualCnn(), "test.onnx");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE((*m)->Build({1, 8, 8}, 3, 0).ok());
  // conv1 weight+bias, bn weight+bias, conv2 weight, linear weight+bias.
  EXPECT_EQ((*m)->Parameters().size(), 7u);
  int64_t n = 0;
  for (auto& [name, p] : (*m)->NamedParameters()) n += p->value.numel();
  EXPECT_EQ(n, 4 * 9 + 4 + 4 + 4 + 4 * 2 * 9 + 3 * 4 + 3);
}

std::string BuildError(const onnx::ModelProto& proto, const nn::Shape& sample, int classes = 3) {
  absl::StatusOr<std::unique_ptr<OnnxModel>> m = OnnxModel::FromProto(proto, "bad.onnx");
  if (!m.ok()) return std::string(m.status().message());
  const absl::Status s = (*m)->Build(sample, classes, 0);
  return s.ok() ? "" : std::string(s.message());
}

TEST(OnnxModelTest, UnknownOpIsNamedWithNodeAndOpset) {
  onnx::ModelProto m = ResidualCnn();
  m.mutable_graph()->mutable_node(2)->set_op_type("Softsign");
  EXPECT_THAT(BuildError(m, {1, 8, 8}),
              HasSubstr("bad.onnx: node 'r1_node' (Softsign, opset 13): op Softsign is not imported"));
}

TEST(OnnxModelTest, UnsupportedAttributeIsNamed) {
  onnx::ModelProto m = ResidualCnn();
  GraphBuilder::SetInts(m.mutable_graph()->mutable_node(0), "dilations", {2, 2});
  EXPECT_THAT(BuildError(m, {1, 8, 8}),
              HasSubstr("node 'c1_node' (Conv, opset 13): attribute dilations = [2, 2] (only 1 is imported)"));
}

TEST(OnnxModelTest, DynamicSpatialDimensionIsAnError) {
  GraphBuilder b;
  b.Input("x", {-1, 1, -1, 8});
  b.Node("Relu", {"x"}, "y");
  b.Output("y");
  EXPECT_THAT(
      BuildError(b.model(), {1, 8, 8}),
      HasSubstr(
          "bad.onnx: input 'x': dimension 2 is dynamic ('height') where a static size is needed (8 for this dataset)"));
}

TEST(OnnxModelTest, OpsetOutsideTheImportRangeIsAnError) {
  onnx::ModelProto m = ResidualCnn();
  m.mutable_opset_import(0)->set_version(9);
  EXPECT_THAT(BuildError(m, {1, 8, 8}), HasSubstr("bad.onnx: opset 9 is outside the opsets import reads (11 to 17)"));
}

TEST(OnnxModelTest, WrongSampleShapeAndClassCountAreErrors) {
  EXPECT_THAT(BuildError(ResidualCnn(), {1, 28, 28}),
              HasSubstr("input 'x': dimension 2 is 8, the dataset's sample shape is [1, 28, 28]"));
  EXPECT_THAT(BuildError(ResidualCnn(), {1, 8, 8}, 10), HasSubstr("expected [10]"));
}

TEST(OnnxModelTest, ConfigErrorsNameTheKeyAndTheFile) {
  const std::string path = ::testing::TempDir() + "/truncated_model.onnx";
  std::string bytes;
  ResidualCnn().SerializeToString(&bytes);
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 3);
  YAML::Node node = YAML::Load("{name: onnx, path: " + path + "}");
  ParamReader p(node, "x.yaml", "model");
  absl::StatusOr<std::unique_ptr<nn::Model>> m = Registry<nn::Model>::Get().CreateFrom(p, "name", "", "model");
  ASSERT_FALSE(m.ok());
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("model.path"));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr(path + ": not a valid ONNX model"));
  // The whole file imports through the registry.
  std::ofstream(path, std::ios::binary) << bytes;
  ParamReader ok(YAML::Load("{name: onnx, path: " + path + "}"), "x.yaml", "model");
  m = Registry<nn::Model>::Get().CreateFrom(ok, "name", "", "model");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE((*m)->Build({1, 8, 8}, 3, 0).ok());
}

TEST(OnnxModelTest, MulThatCannotBeFoldedIsAnError) {
  onnx::ModelProto m = ConvMulMatMulMul();
  // Mul of the ReLU's output by a constant: nothing to fold it into.
  m.mutable_graph()->mutable_node(1)->set_input(0, "x");
  EXPECT_THAT(BuildError(m, {1, 6, 6}, 4),
              HasSubstr("(Mul, opset 13): a Mul by a constant is imported only right after a Conv, Gemm or MatMul"));
}

}  // namespace
}  // namespace onnx_io
}  // namespace quant
