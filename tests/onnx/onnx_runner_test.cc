// The ONNX reader and runner on bad input (truncated file, unknown op, opset
// out of range, attribute not implemented) and on hand-built graphs whose
// results are known.
#include "quant/onnx/onnx_runner.h"

#include <cstdio>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/onnx/onnx_tensor.h"

namespace quant {
namespace onnx_io {
namespace {

using ::testing::HasSubstr;

constexpr char kQLinearConv[] = "/usr/share/libonnx-testdata/data/node/test_qlinearconv/model.onnx";

onnx::ModelProto OneNode(const std::string& op, int opset) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  onnx::OperatorSetIdProto* o = m.add_opset_import();
  o->set_domain("");
  o->set_version(opset);
  onnx::GraphProto* g = m.mutable_graph();
  g->set_name("g");
  onnx::NodeProto* n = g->add_node();
  n->set_name("the_node");
  n->set_op_type(op);
  n->add_input("x");
  n->add_output("y");
  onnx::ValueInfoProto* in = g->add_input();
  in->set_name("x");
  in->mutable_type()->mutable_tensor_type()->set_elem_type(1);
  g->add_output()->set_name("y");
  return m;
}

OnnxTensor Floats(std::vector<int64_t> shape, std::vector<float> v) {
  OnnxTensor t = OnnxTensor::Zeros(DType::kFloat, std::move(shape));
  t.f = std::move(v);
  return t;
}

TEST(OnnxReaderTest, TruncatedFileIsAnErrorNamingIt) {
  std::ifstream in(kQLinearConv, std::ios::binary);
  ASSERT_TRUE(in.good()) << kQLinearConv << " missing: install libonnx-testdata";
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string path = ::testing::TempDir() + "/truncated.onnx";
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  absl::StatusOr<onnx::ModelProto> m = ReadModelFile(path);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(m.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(m.status().message()), HasSubstr("truncated"));
  EXPECT_EQ(ReadModelFile("/nonexistent/m.onnx").status().code(), absl::StatusCode::kNotFound);
  // The whole file reads.
  EXPECT_TRUE(ReadModelFile(kQLinearConv).ok());
}

TEST(OnnxRunnerTest, UnknownOpIsNamedWithItsNode) {
  OnnxRunner r(OneNode("FrobnicateLinear", 13), "m.onnx");
  EXPECT_EQ(r.Unsupported(), "node 'the_node' (FrobnicateLinear): op FrobnicateLinear");
  absl::StatusOr<std::vector<OnnxTensor>> out = r.Run({Floats({1}, {1.0f})});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("m.onnx: cannot run: node 'the_node'"));
}

TEST(OnnxRunnerTest, OpsetOutsideTheRangeIsNamed) {
  OnnxRunner r(OneNode("Relu", 18), "m.onnx");
  EXPECT_THAT(r.Unsupported(), HasSubstr("opset 18 (opsets 1 to 17 are implemented)"));
  OnnxRunner old(OneNode("Add", 6), "m.onnx");  // legacy broadcasting
  EXPECT_THAT(old.Unsupported(), HasSubstr("op Add at opset 6 (implemented from opset 7)"));
}

TEST(OnnxRunnerTest, UnimplementedAttributeIsNamed) {
  onnx::ModelProto m = OneNode("Relu", 13);
  onnx::AttributeProto* a = m.mutable_graph()->mutable_node(0)->add_attribute();
  a->set_name("alpha");
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(0.1f);
  OnnxRunner r(m, "m.onnx");
  EXPECT_EQ(r.Unsupported(), "node 'the_node' (Relu): op Relu: attribute alpha");
}

TEST(OnnxRunnerTest, RunsAGraphAndChecksInputCount) {
  OnnxRunner r(OneNode("Relu", 13), "m.onnx");
  ASSERT_EQ(r.Unsupported(), "");
  absl::StatusOr<std::vector<OnnxTensor>> out = r.Run({Floats({2, 2}, {-1.0f, 2.0f, -0.0f, 3.5f})});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ(out->size(), 1u);
  EXPECT_EQ((*out)[0].f, (std::vector<float>{0.0f, 2.0f, 0.0f, 3.5f}));
  EXPECT_EQ((*out)[0].shape, (std::vector<int64_t>{2, 2}));
  EXPECT_THAT(std::string(r.Run({}).status().message()), HasSubstr("the graph has 1 inputs, 0 were given"));
}

TEST(OnnxRunnerTest, QuantizeLinearRoundsHalfToEvenAndSaturates) {
  onnx::ModelProto m = OneNode("QuantizeLinear", 13);
  onnx::GraphProto* g = m.mutable_graph();
  g->mutable_node(0)->add_input("s");
  g->mutable_node(0)->add_input("z");
  OnnxTensor s = Floats({}, {0.5f});
  OnnxTensor z = OnnxTensor::Zeros(DType::kInt8, {});
  z.i[0] = 1;
  *g->add_initializer() = ToProto(s, "s");
  *g->add_initializer() = ToProto(z, "z");
  OnnxRunner r(m, "m.onnx");
  ASSERT_EQ(r.Unsupported(), "");
  // x / 0.5 = 0.5, 1.5, 2.5, -0.5, 1000 -> 0, 2, 2, -0 (half to even), saturated; + 1.
  absl::StatusOr<std::vector<OnnxTensor>> out = r.Run({Floats({5}, {0.25f, 0.75f, 1.25f, -0.25f, 1000.0f})});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].dtype, DType::kInt8);
  EXPECT_EQ((*out)[0].i, (std::vector<int64_t>{1, 3, 3, 1, 127}));
}

TEST(OnnxTensorTest, ProtoRoundTripIsExact) {
  OnnxTensor t = OnnxTensor::Zeros(DType::kInt32, {2, 3});
  t.i = {-2147483648LL, -1, 0, 1, 7, 2147483647LL};
  absl::StatusOr<OnnxTensor> back = FromProto(ToProto(t, "t"), "t");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->i, t.i);
  EXPECT_EQ(back->shape, t.shape);
  onnx::TensorProto bad = ToProto(t, "t");
  bad.add_dims(2);  // 12 elements claimed, 6 stored
  EXPECT_THAT(std::string(FromProto(bad, "tensor t").status().message()),
              HasSubstr("tensor t: shape [2, 3, 2] needs 12 values, the tensor holds 6"));
}

// Claimed sizes are checked against the stored data before any allocation (found by //fuzz:onnx_fuzzer:
// an int8 tensor claiming 25 G elements allocated them first), and dims whose product overflows are errors.
TEST(OnnxTensorTest, HugeClaimedShapesAreErrorsNotAllocations) {
  OnnxTensor t = OnnxTensor::Zeros(DType::kInt8, {4});
  onnx::TensorProto huge = ToProto(t, "t");
  huge.set_dims(0, int64_t{25} << 30);
  EXPECT_THAT(std::string(FromProto(huge, "tensor t").status().message()),
              HasSubstr("needs 26843545600 values, the tensor holds 4"));
  huge.set_dims(0, int64_t{1} << 31);
  huge.add_dims(int64_t{1} << 31);
  huge.add_dims(int64_t{1} << 31);
  EXPECT_THAT(std::string(FromProto(huge, "tensor t").status().message()), HasSubstr("more than 2^40 elements"));
}

}  // namespace
}  // namespace onnx_io
}  // namespace quant
