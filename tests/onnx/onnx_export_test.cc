// QDQ export of QuantizedModels: every exported file passes onnx::checker and
// ONNX's strict shape inference (inside ExportQdq), and the ONNX runner,
// executing it by ONNX's semantics (float requantization), reproduces the
// reference backend's integer outputs: identical where no rounding tie lies
// between gemmlowp's fixed point and ONNX's float, at most a few steps apart.
#include "quant/onnx/onnx_export.h"

#include <cmath>
#include <functional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "quant/backends/model_builder.h"
#include "quant/onnx/onnx_runner.h"
#include "tests/backends/backend_compare.h"
#include "tests/backends/test_models.h"

namespace quant {
namespace onnx_io {
namespace {

using backends::QuantizedModel;

// NHWC images (the backends' input) -> an NCHW OnnxTensor.
OnnxTensor ToNchw(const QuantizedModel& m, const std::vector<float>& x, int64_t batch) {
  const backends::Shape s = backends::TensorShape(m.tensors(backends::InputTensor(m)));
  OnnxTensor t = OnnxTensor::Zeros(onnx_io::DType::kFloat, {batch});
  if (s.size() == 3) {
    t.shape.insert(t.shape.end(), {s[2], s[0], s[1]});
  } else {
    t.shape.insert(t.shape.end(), s.begin(), s.end());
  }
  t.f.assign(t.numel(), 0.0f);
  const int64_t per = backends::Numel(s);
  for (int64_t b = 0; b < batch; ++b) {
    if (s.size() != 3) {
      std::copy(x.begin() + b * per, x.begin() + (b + 1) * per, t.f.begin() + b * per);
      continue;
    }
    for (int64_t h = 0; h < s[0]; ++h)
      for (int64_t w = 0; w < s[1]; ++w)
        for (int64_t c = 0; c < s[2]; ++c)
          t.f[b * per + (c * s[0] + h) * s[1] + w] = x[b * per + (h * s[1] + w) * s[2] + c];
  }
  return t;
}

// The exported model's outputs, as integers of the output tensor.
backends::Stats ExportAndCompare(const QuantizedModel& m, const std::string& what, bool qoperator = false) {
  backends::Stats s;
  absl::StatusOr<onnx::ModelProto> e = qoperator ? ExportQOperator(m) : ExportQdq(m);
  EXPECT_TRUE(e.ok()) << what << ": " << e.status();
  if (!e.ok()) return s;
  OnnxRunner runner(*e, what);
  EXPECT_EQ(runner.Unsupported(), "") << what;
  const int64_t batch = 7;
  const std::vector<float> x = backends::Inputs(m, batch, 5);
  const backends::RunOutput ref = backends::RunBackend("reference", m, x, batch);
  absl::StatusOr<std::vector<OnnxTensor>> got = runner.Run({ToNchw(m, x, batch)});
  EXPECT_TRUE(got.ok()) << what << ": " << got.status();
  if (!got.ok()) return s;
  const backends::Tensor& out = m.tensors(backends::OutputTensor(m));
  const float scale = backends::TensorScale(out);
  const int32_t zp = backends::TensorZeroPoint(out);
  // NCHW back to the backends' NHWC.
  const OnnxTensor& y = (*got)[0];
  std::vector<float> nhwc = y.f;
  if (y.shape.size() == 4) {
    const int64_t C = y.shape[1], H = y.shape[2], W = y.shape[3];
    for (int64_t b = 0; b < y.shape[0]; ++b)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t w = 0; w < W; ++w) nhwc[((b * H + h) * W + w) * C + c] = y.f[((b * C + c) * H + h) * W + w];
  }
  std::vector<int32_t> q;
  for (float v : nhwc) q.push_back(static_cast<int32_t>(std::lround(v / scale)) + zp);
  return backends::Compare(ref.quantized, q);
}

// The cnn with per-channel int8 weights and int8 activations.
absl::StatusOr<QuantizedModel> PerChannelCnn() {
  QuantizedModel f = backends::MakeFloatCnn(8);
  std::vector<float> calib = backends::RandomImages(f, 16, 9);
  backends::QuantizeOptions o;
  o.per_channel = true;
  return backends::QuantizeMinMax(f, calib.data(), 16, o);
}

TEST(OnnxExportTest, CnnAndMlpMatchTheReferenceBackend) {
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? backends::MakeFloatCnn(8) : backends::MakeFloatMlp(8);
    std::vector<float> calib = backends::RandomImages(f, 32, 9);
    for (backends::DType act : {backends::INT8, backends::UINT8}) {
      for (bool per_channel : {false, true}) {
        backends::QuantizeOptions o;
        o.activation_dtype = act;
        o.per_channel = per_channel;
        auto m = backends::QuantizeMinMax(f, calib.data(), 32, o);
        ASSERT_TRUE(m.ok());
        const std::string what =
            absl::StrCat(cnn ? "cnn " : "mlp ", backends::DTypeName(act), per_channel ? " per-channel" : " per-tensor");
        for (bool qop : {false, true}) {
          const backends::Stats s = ExportAndCompare(*m, what, qop);
          std::printf("onnx %s vs reference, %s: %s\n", qop ? "qoperator" : "qdq", what.c_str(), s.ToString().c_str());
          EXPECT_EQ(s.total, 7 * 10) << what;
          EXPECT_GE(s.identical, s.total * 9 / 10) << what << ": " << s.ToString();
          EXPECT_LE(s.max_steps, 2) << what << ": " << s.ToString();
        }
      }
    }
  }
}

TEST(OnnxExportTest, GraphOpsMatchTheReferenceBackend) {
  int graphs = 0;
  for (const auto& [name, f0] : backends::GraphModels()) {
    QuantizedModel f = f0;
    backends::RandomizeFloatWeights(&f, 51);
    const std::vector<float> calib = backends::RandomImages(f, 16, 52);
    backends::QuantizeOptions o;
    auto m = backends::QuantizeMinMax(f, calib.data(), 16, o);
    ASSERT_TRUE(m.ok()) << name;
    for (bool qop : {false, true}) {
      const backends::Stats s = ExportAndCompare(*m, name, qop);
      std::printf("onnx %s vs reference, %s: %s\n", qop ? "qoperator" : "qdq", name.c_str(), s.ToString().c_str());
      EXPECT_GT(s.total, 0) << name;
      EXPECT_LE(s.max_steps, 2) << name << ": " << s.ToString();
    }
    ++graphs;
  }
  EXPECT_GE(graphs, 5);
}

TEST(OnnxExportTest, LayoutIsWhatOnnxRuntimesQdqOptimiserExpects) {
  absl::StatusOr<QuantizedModel> m = PerChannelCnn();
  ASSERT_TRUE(m.ok());
  absl::StatusOr<onnx::ModelProto> e = ExportQdq(*m);
  ASSERT_TRUE(e.ok()) << e.status();
  std::map<std::string, const onnx::NodeProto*> producer;
  for (const onnx::NodeProto& n : e->graph().node()) producer[n.output(0)] = &n;
  int weighted = 0;
  for (const onnx::NodeProto& n : e->graph().node()) {
    if (n.op_type() != "Conv" && n.op_type() != "Gemm") continue;
    ++weighted;
    // Every input of a Conv/Gemm is a DequantizeLinear's output; the weight's reads an initializer.
    for (const std::string& in : n.input()) {
      ASSERT_TRUE(producer.count(in)) << n.name() << " reads " << in;
      EXPECT_EQ(producer[in]->op_type(), "DequantizeLinear") << n.name() << " input " << in;
    }
    const onnx::NodeProto* wdq = producer[n.input(1)];
    bool axis0 = false;
    for (const onnx::AttributeProto& a : wdq->attribute()) axis0 = axis0 || (a.name() == "axis" && a.i() == 0);
    EXPECT_TRUE(axis0) << n.name() << ": per-channel weights dequantize along axis 0";
  }
  EXPECT_EQ(weighted, 4);  // 2 convs + 2 fully connected
  const nlohmann::json enc = nlohmann::json::parse(EncodingsJson(*m));
  int listed = 0;
  for (const backends::Tensor& t : m->tensors()) {
    if (t.scale_size() == 0) continue;
    ASSERT_TRUE(enc["tensors"].contains(t.name())) << t.name();
    EXPECT_EQ(enc["tensors"][t.name()]["scale"].size(), static_cast<size_t>(t.scale_size())) << t.name();
    ++listed;
  }
  EXPECT_EQ(static_cast<int>(enc["tensors"].size()), listed);
  EXPECT_GT(listed, 8);
}

TEST(OnnxExportTest, QOperatorFormCarriesIntegersBetweenOps) {
  absl::StatusOr<QuantizedModel> m = PerChannelCnn();
  ASSERT_TRUE(m.ok());
  absl::StatusOr<onnx::ModelProto> e = ExportQOperator(*m);
  ASSERT_TRUE(e.ok()) << e.status();
  std::map<std::string, int> ops;
  for (const onnx::NodeProto& n : e->graph().node()) ++ops[n.op_type()];
  EXPECT_EQ(ops["QLinearConv"], 2);
  EXPECT_EQ(ops["MatMulInteger"], 2);
  EXPECT_EQ(ops["Conv"], 0);
  EXPECT_EQ(ops["Gemm"], 0);
  EXPECT_EQ(ops["MaxPool"], 2);  // on the integers
}

void ExpectRoundTrip(const QuantizedModel& m, const std::string& model, bool qoperator) {
  const std::string what = absl::StrCat(model, qoperator ? " (QOperator)" : " (QDQ)");
  absl::StatusOr<onnx::ModelProto> e = qoperator ? ExportQOperator(m) : ExportQdq(m);
  ASSERT_TRUE(e.ok()) << what << ": " << e.status();
  std::string bytes;
  ASSERT_TRUE(e->SerializeToString(&bytes));
  onnx::ModelProto reread;
  ASSERT_TRUE(reread.ParseFromString(bytes));
  absl::StatusOr<QuantizedModel> back = ImportQuantized(reread, what);
  ASSERT_TRUE(back.ok()) << what << ": " << back.status();
  std::string diff;
  EXPECT_TRUE(SameIntegerModel(m, *back, &diff)) << what << ":\n" << diff;
  // The comparison can fail: a changed multiplier is a difference.
  QuantizedModel changed = *back;
  changed.mutable_ops(0)->set_output_max(changed.ops(0).output_max() - 1);
  EXPECT_FALSE(SameIntegerModel(m, changed, &diff)) << what;
}

// Both forms.
void ExpectRoundTrip(const QuantizedModel& m, const std::string& model) {
  for (bool qoperator : {false, true}) ExpectRoundTrip(m, model, qoperator);
}

TEST(OnnxExportTest, QdqAndQOperatorExportsReadBackToTheSameIntegerModel) {
  int models = 0;
  for (bool cnn : {false, true}) {
    QuantizedModel f = cnn ? backends::MakeFloatCnn(8) : backends::MakeFloatMlp(8);
    std::vector<float> calib = backends::RandomImages(f, 16, 9);
    for (backends::DType act : {backends::INT8, backends::UINT8}) {
      for (bool per_channel : {false, true}) {
        backends::QuantizeOptions o;
        o.activation_dtype = act;
        o.per_channel = per_channel;
        auto m = backends::QuantizeMinMax(f, calib.data(), 16, o);
        ASSERT_TRUE(m.ok());
        ExpectRoundTrip(*m, absl::StrCat(cnn ? "cnn " : "mlp ", backends::DTypeName(act),
                                         per_channel ? " per-channel" : " per-tensor"));
        ++models;
      }
    }
  }
  for (const auto& [name, f0] : backends::GraphModels()) {
    QuantizedModel f = f0;
    backends::RandomizeFloatWeights(&f, 51);
    const std::vector<float> calib = backends::RandomImages(f, 16, 52);
    auto m = backends::QuantizeMinMax(f, calib.data(), 16, backends::QuantizeOptions());
    ASSERT_TRUE(m.ok());
    ExpectRoundTrip(*m, name);
    ++models;
  }
  EXPECT_GE(models, 16);
}

// The QOperator reader checks the scales the form repeats instead of trusting them.
TEST(OnnxExportTest, QOperatorReadBackRejectsInconsistentScales) {
  absl::StatusOr<QuantizedModel> m = PerChannelCnn();
  ASSERT_TRUE(m.ok());
  absl::StatusOr<onnx::ModelProto> e = ExportQOperator(*m);
  ASSERT_TRUE(e.ok()) << e.status();
  ASSERT_TRUE(ImportQuantized(*e, "good.onnx").ok());
  // An accumulator's DequantizeLinear scale one float step away from s_x * s_w[0].
  auto nudged = [&](const std::string& suffix) {
    onnx::ModelProto bad = *e;
    for (onnx::TensorProto& t : *bad.mutable_graph()->mutable_initializer()) {
      if (t.name().size() < suffix.size() || t.name().compare(t.name().size() - suffix.size(), suffix.size(), suffix))
        continue;
      absl::StatusOr<OnnxTensor> v = FromProto(t, t.name());
      EXPECT_TRUE(v.ok());
      v->f[0] = std::nextafter(v->f[0], 1.0f);
      t = ToProto(*v, t.name());
      break;
    }
    return bad;
  };
  absl::StatusOr<QuantizedModel> acc = ImportQuantized(nudged("_acc_scale"), "acc.onnx");
  ASSERT_FALSE(acc.ok());
  EXPECT_THAT(acc.status().message(), ::testing::HasSubstr("acc.onnx: node '"));
  EXPECT_THAT(acc.status().message(), ::testing::HasSubstr("the input's scale times the weight's"));
  // QLinearConv given an x_scale that is not the one its input was quantized with.
  onnx::ModelProto conv = *e;
  for (onnx::NodeProto& n : *conv.mutable_graph()->mutable_node()) {
    if (n.op_type() != "QLinearConv") continue;
    OnnxTensor half = OnnxTensor::Zeros(onnx_io::DType::kFloat, {});
    half.f = {0.5f};
    *conv.mutable_graph()->add_initializer() = ToProto(half, "other_scale");
    n.set_input(1, "other_scale");
    break;
  }
  absl::StatusOr<QuantizedModel> x = ImportQuantized(conv, "conv.onnx");
  ASSERT_FALSE(x.ok());
  EXPECT_THAT(x.status().message(), ::testing::HasSubstr("differ from the ones it was quantized with"));
}

// Malformed quantized files (what //fuzz:onnx_fuzzer found, among others) are errors naming the node.
TEST(OnnxExportTest, MalformedQuantizedModelsAreErrorsNamingTheNode) {
  absl::StatusOr<QuantizedModel> m = PerChannelCnn();
  ASSERT_TRUE(m.ok());
  absl::StatusOr<onnx::ModelProto> qdq = ExportQdq(*m);
  absl::StatusOr<onnx::ModelProto> qop = ExportQOperator(*m);
  ASSERT_TRUE(qdq.ok() && qop.ok());
  auto node = [](onnx::ModelProto* model, const std::string& op) -> onnx::NodeProto* {
    for (onnx::NodeProto& n : *model->mutable_graph()->mutable_node())
      if (n.op_type() == op) return &n;
    return nullptr;
  };
  auto initializer = [](onnx::ModelProto* model, const std::string& name) -> onnx::TensorProto* {
    for (onnx::TensorProto& t : *model->mutable_graph()->mutable_initializer())
      if (t.name() == name) return &t;
    return nullptr;
  };
  // Rewrites an initializer through OnnxTensor (the export stores raw_data).
  auto edit = [](onnx::TensorProto* t, const std::function<void(OnnxTensor*)>& f) {
    absl::StatusOr<OnnxTensor> v = FromProto(*t, t->name());
    ASSERT_TRUE(v.ok()) << v.status();
    f(&*v);
    *t = ToProto(*v, t->name());
  };
  auto expect_error = [](const onnx::ModelProto& bad, const std::string& what, const std::string& message) {
    absl::StatusOr<QuantizedModel> r = ImportQuantized(bad, "bad.onnx");
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr("bad.onnx: ")) << what;
    EXPECT_THAT(r.status().message(), ::testing::HasSubstr(message)) << what << ": " << r.status();
  };
  {  // a QuantizeLinear without its zero point
    onnx::ModelProto bad = *qdq;
    node(&bad, "QuantizeLinear")->mutable_input()->RemoveLast();
    expect_error(bad, "arity", "(QuantizeLinear): 3 inputs and an output expected");
  }
  {  // a weight scale stored as integers
    onnx::ModelProto bad = *qdq;
    const std::string scale = node(&bad, "Conv")->input(1);  // "<w>_dq"
    onnx::TensorProto* t = initializer(&bad, scale.substr(0, scale.size() - 3) + "_scale");
    ASSERT_NE(t, nullptr);
    edit(t, [](OnnxTensor* v) {
      v->i.assign(v->f.size(), 1);
      v->f.clear();
      v->dtype = onnx_io::DType::kInt32;
    });
    expect_error(bad, "int scale", "with a float scale and a zero point of its type");
  }
  {  // stride 0
    onnx::ModelProto bad = *qdq;
    for (onnx::AttributeProto& a : *node(&bad, "Conv")->mutable_attribute())
      if (a.name() == "strides") a.set_ints(0, 0);
    expect_error(bad, "stride", "strides >= 1");
  }
  {  // a window larger than the padded input
    onnx::ModelProto bad = *qdq;
    for (onnx::AttributeProto& a : *node(&bad, "MaxPool")->mutable_attribute())
      if (a.name() == "kernel_shape") a.set_ints(0, 1000);
    expect_error(bad, "window", "window needs an [H, W, C] input at least that large");
  }
  {  // a MatMulInteger weight of the wrong width for its input
    onnx::ModelProto bad = *qop;
    onnx::TensorProto* w = initializer(&bad, node(&bad, "MatMulInteger")->input(1));
    ASSERT_NE(w, nullptr);
    edit(w, [](OnnxTensor* v) {
      v->shape[0] /= 2;
      v->i.resize(v->numel());
    });
    expect_error(bad, "columns", "columns for an input of");
  }
  {  // a QLinearConv bias of the wrong length
    onnx::ModelProto bad = *qop;
    onnx::TensorProto* b = initializer(&bad, node(&bad, "QLinearConv")->input(8));
    ASSERT_NE(b, nullptr);
    edit(b, [](OnnxTensor* v) {
      v->shape[0] += 1;
      v->i.push_back(0);
    });
    expect_error(bad, "bias", "an int32 bias initializer");
  }
}

TEST(OnnxExportTest, LowBitWeightsStateTheirRangeInMetadata) {
  QuantizedModel f = backends::MakeFloatMlp(8);
  std::vector<float> calib = backends::RandomImages(f, 16, 9);
  backends::QuantizeOptions o;
  o.weight_bits = 4;
  auto m = backends::QuantizeMinMax(f, calib.data(), 16, o);
  ASSERT_TRUE(m.ok());
  absl::StatusOr<onnx::ModelProto> e = ExportQdq(*m);
  ASSERT_TRUE(e.ok()) << e.status();
  int found = 0;
  for (const onnx::StringStringEntryProto& p : e->metadata_props()) {
    if (p.key().rfind("quantlab.bits.", 0) == 0) {
      EXPECT_THAT(p.value(), ::testing::HasSubstr("4 bits: values in [-8, 7] of int8"));
      ++found;
    }
  }
  EXPECT_EQ(found, 3);  // three fully connected weights
}

}  // namespace
}  // namespace onnx_io
}  // namespace quant
