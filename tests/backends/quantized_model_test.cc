// QuantizedModel v2: validation errors name the op (index, name, kind) and the
// field; structure (unknown tensors, cycles, shapes) is checked apart from qparams;
// version 1 is refused naming the version; save/load is bit for bit,
// truncated/corrupted/foreign files are rejected, degenerate scales are caught with
// the op name.
#include "quant/backends/quantized_model.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "quant/backends/model_builder.h"

namespace quant::backends {
namespace {

using ::testing::HasSubstr;

QuantizedModel Cnn(bool per_channel = true) {
  QuantizedModel f = MakeFloatCnn(1);
  std::vector<float> calib = RandomImages(f, 8, 2);
  QuantizeOptions opt;
  opt.per_channel = per_channel;
  auto m = QuantizeMinMax(f, calib.data(), 8, opt);
  EXPECT_TRUE(m.ok()) << m.status();
  return *m;
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir ? dir : "/tmp") + "/" + name;
}

TEST(QuantizedModelTest, BuiltModelsValidateAndHaveExpectedShapes) {
  QuantizedModel m = Cnn();
  ASSERT_TRUE(ValidateQuantizedModel(m).ok()) << ValidateQuantizedModel(m);
  auto shapes = InferShapes(m);
  ASSERT_TRUE(shapes.ok());
  // Tensors: 0 input, 1-3 conv1 (weight, bias, out), 4 pool1, 5-7 conv2, 8 pool2, 9 flatten,
  // 10-12 fc1, 13-15 fc2.
  EXPECT_EQ((*shapes)[3], (Shape{28, 28, 16}));
  EXPECT_EQ((*shapes)[1], (Shape{16, 3, 3, 1}));
  EXPECT_EQ((*shapes)[8], (Shape{7, 7, 32}));
  EXPECT_EQ((*shapes)[9], (Shape{1568}));
  EXPECT_EQ((*shapes)[OutputTensor(m)], (Shape{10}));
  // Requantization is per output channel and normalised.
  const Requantization& rq = m.ops(0).conv2d().requant();
  ASSERT_EQ(rq.multiplier_size(), 16);
  for (int32_t mult : rq.multiplier()) EXPECT_GE(mult, 1 << 30);
}

TEST(QuantizedModelTest, SaveLoadRoundTripIsBitForBit) {
  QuantizedModel m = Cnn();
  const std::string path = TempPath("cnn.qmodel");
  ASSERT_TRUE(SaveQuantizedModel(m, path).ok());
  auto loaded = LoadQuantizedModel(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->SerializeAsString(), m.SerializeAsString());
  EXPECT_EQ(SerializeQuantizedModel(*loaded), SerializeQuantizedModel(m));
  EXPECT_EQ(loaded->tensors(10).data(), m.tensors(10).data());
  EXPECT_EQ(loaded->tensors(1).float_data(3), m.tensors(1).float_data(3));
}

TEST(QuantizedModelTest, RejectsTruncatedCorruptedAndForeignFiles) {
  const std::string bytes = SerializeQuantizedModel(Cnn());
  for (size_t cut : {size_t{0}, size_t{5}, size_t{19}, size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    auto r = ParseQuantizedModel(std::string_view(bytes).substr(0, cut), "f.qmodel");
    ASSERT_FALSE(r.ok()) << cut;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("f.qmodel"));
  }
  EXPECT_THAT(std::string(ParseQuantizedModel(bytes.substr(0, bytes.size() - 1)).status().message()),
              HasSubstr("truncated"));
  std::string flipped = bytes;
  flipped[bytes.size() / 2] ^= 0x10;
  EXPECT_THAT(std::string(ParseQuantizedModel(flipped).status().message()), HasSubstr("checksum"));
  EXPECT_THAT(std::string(ParseQuantizedModel("not a model at all").status().message()), HasSubstr("magic"));
  EXPECT_THAT(std::string(ParseQuantizedModel(bytes + "x").status().message()), HasSubstr("unexpected bytes"));
  // A file on disk cut short.
  const std::string path = TempPath("cut.qmodel");
  {
    std::ofstream f(path, std::ios::binary);
    f.write(bytes.data(), 100);
  }
  auto r = LoadQuantizedModel(path);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("truncated"));
  EXPECT_EQ(LoadQuantizedModel(TempPath("missing.qmodel")).status().code(), absl::StatusCode::kNotFound);
  // A valid model of another network.
  QuantizedModel cnn = Cnn();
  EXPECT_TRUE(CheckModelMatches(cnn, "cnn", {28, 28, 1}, 10).ok());
  EXPECT_THAT(std::string(CheckModelMatches(cnn, "mlp", {28, 28, 1}, 10).message()), HasSubstr("'cnn'"));
  EXPECT_THAT(std::string(CheckModelMatches(cnn, "cnn", {32, 32, 3}, 10).message()), HasSubstr("input_shape"));
  EXPECT_THAT(std::string(CheckModelMatches(cnn, "cnn", {28, 28, 1}, 100).message()), HasSubstr("10 outputs"));
}

// Each inconsistency is reported with the op label and the field.
TEST(QuantizedModelTest, InconsistentModelsNameOpAndField) {
  struct Case {
    std::function<void(QuantizedModel*)> edit;
    std::string expect;
  };
  const std::vector<Case> cases = {
      // Structure (InferShapes).
      {[](QuantizedModel* m) { m->mutable_tensors(10)->set_shape(1, 1000); },
       "op 5 'fc1' (fully_connected): inputs[1]: weights [128, 1000] do not fit an input of 1568 features"},
      {[](QuantizedModel* m) { m->mutable_ops(5)->set_inputs(0, 99); },
       "op 5 'fc1' (fully_connected): inputs[0]: unknown tensor index 99 (the model has 16 tensors)"},
      {[](QuantizedModel* m) { m->mutable_ops(1)->set_inputs(0, 7); },
       "op 1 'pool1' (max_pool2d): inputs[0]: tensor 7 'conv2' is used before any op produces it (a cycle, or ops "
       "out of topological order)"},
      {[](QuantizedModel* m) { m->mutable_ops(6)->set_outputs(0, 12); },
       "op 6 'fc2' (fully_connected): outputs[0]: tensor 12 'fc1' is already produced by op 5 'fc1'"},
      {[](QuantizedModel* m) { m->mutable_ops(1)->set_inputs(0, 2); },
       "op 1 'pool1' (max_pool2d): inputs[0]: tensor 2 'conv1.bias' is a constant; max_pool2d reads activations"},
      {[](QuantizedModel* m) { m->mutable_tensors(12)->set_shape(0, 100); },
       "op 5 'fc1' (fully_connected): outputs[0]: tensor 12 'fc1' declares shape [100] but the op produces [128]"},
      {[](QuantizedModel* m) { m->mutable_tensors(5)->set_shape(3, 8); },
       "op 2 'conv2' (conv2d): inputs[1]: weights [32, 3, 3, 8] expected [O, 3, 3, 16] (OHWI)"},
      {[](QuantizedModel* m) { m->mutable_ops(4)->mutable_max_pool2d(); },
       "op 4 'flatten' (max_pool2d): kernel_h/kernel_w: must be positive"},
      {[](QuantizedModel* m) { m->mutable_ops(4)->clear_options(); }, "op 4 'flatten' ((no op)): options:"},
      {[](QuantizedModel* m) { m->mutable_ops(6)->set_name("fc1"); }, "op 6 'fc1' (fully_connected): name: used"},
      {[](QuantizedModel* m) { m->add_outputs(3); }, "outputs: 2 model outputs; expected 1"},
      {[](QuantizedModel* m) { m->set_format_version(9); }, "format_version: 9"},
      {[](QuantizedModel* m) { m->set_format_version(1); },
       "format_version: 1: this is a version 1 QuantizedModel (a chain of layers); this build reads version 2"},
      // Quantization (ValidateQuantizedModel).
      {[](QuantizedModel* m) {
         auto* w = m->mutable_tensors(13)->mutable_data();
         w->resize(w->size() - 3);
       },
       "op 6 'fc2' (fully_connected): inputs[1] (weights).data: 1277 bytes; expected 1280"},
      {[](QuantizedModel* m) { m->mutable_tensors(6)->mutable_int_data()->RemoveLast(); },
       "op 2 'conv2' (conv2d): inputs[2] (bias).int_data: 31 values; expected 32"},
      {[](QuantizedModel* m) { m->mutable_ops(0)->mutable_conv2d()->mutable_requant()->set_multiplier(3, 12345); },
       "op 0 'conv1' (conv2d): requant[3]: multiplier 12345"},
      {[](QuantizedModel* m) { m->mutable_tensors(1)->set_scale(2, NAN); },
       "op 0 'conv1' (conv2d): inputs[1] (weights).scale[2]: nan is not a finite positive number"},
      {[](QuantizedModel* m) { m->mutable_tensors(4)->set_zero_point(0, 5); },
       "op 1 'pool1' (max_pool2d): outputs[0]: max_pool2d must keep its input's scale and zero point"},
      {[](QuantizedModel* m) { m->mutable_ops(3)->set_output_min(100); m->mutable_ops(3)->set_output_max(50); },
       "op 3 'pool2' (max_pool2d): output_min/output_max: empty clamp"},
      {[](QuantizedModel* m) { m->mutable_tensors(15)->set_dtype(UINT8); },
       "op 6 'fc2' (fully_connected): outputs[0] (tensor 15 'fc2'): uint8 differs from the model's activation dtype "
       "int8"},
      {[](QuantizedModel* m) { m->mutable_tensors(15)->add_scale(1.0f); },
       "op 6 'fc2' (fully_connected): outputs[0] (tensor 15 'fc2'): 2 scales and 1 zero points; activations are "
       "per-tensor"},
      {[](QuantizedModel* m) { m->mutable_tensors(10)->set_bits(4); },  // the int8 weights no longer fit 4 bits
       "op 5 'fc1' (fully_connected): inputs[1] (weights).data["},
      {[](QuantizedModel* m) { m->mutable_tensors(0)->set_scale(0, 0); },
       "inputs[0] (tensor 0 'input').scale: 0 is not a finite positive"},
  };
  for (const Case& c : cases) {
    QuantizedModel m = Cnn();
    c.edit(&m);
    absl::Status s = ValidateQuantizedModel(m);
    ASSERT_FALSE(s.ok()) << c.expect;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.expect));
    // The loader applies the same check.
    auto loaded = ParseQuantizedModel(SerializeQuantizedModel(m), "bad.qmodel");
    ASSERT_FALSE(loaded.ok());
    EXPECT_THAT(std::string(loaded.status().message()), HasSubstr(c.expect));
  }
}

// Structure is checked on its own: a float graph (no qparams) has shapes.
TEST(QuantizedModelTest, ShapeInferenceIsSeparateFromQuantization) {
  const QuantizedModel f = MakeFloatCnn(1);
  EXPECT_TRUE(InferShapes(f).ok());
  EXPECT_THAT(std::string(ValidateQuantizedModel(f).message()), HasSubstr("activation dtype float32"));
}

// A version 1 file (header version 1) and a version 1 payload are both refused, naming the version.
TEST(QuantizedModelTest, VersionOneIsRefusedNamingTheVersion) {
  std::string bytes = SerializeQuantizedModel(Cnn());
  bytes[8] = 1;  // the header's format version (little-endian uint32)
  auto r = ParseQuantizedModel(bytes, "old.qmodel");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("old.qmodel: format version 1: this is a version 1 QuantizedModel"));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("reads version 2"));
  // A v1-shaped proto: format_version 1 and the v1 fields (input_shape = 3, layers = 5) as
  // unknown fields of the v2 message.
  QuantizedModel v1;
  v1.set_format_version(1);
  std::string payload = v1.SerializeAsString();
  payload += std::string("\x18\x1c", 2);                    // field 3 (input_shape), varint 28
  payload += std::string("\x2a\x03\x0a\x01\x78", 5);     // field 5 (layers), a message with name "x"
  QuantizedModel parsed;
  ASSERT_TRUE(parsed.ParseFromString(payload));
  EXPECT_THAT(std::string(ValidateQuantizedModel(parsed).message()),
              HasSubstr("format_version: 1: this is a version 1 QuantizedModel (a chain of layers); this build reads "
                        "version 2"));
}

TEST(QuantizedModelTest, DegenerateCalibrationScaleIsCaughtWithOpName) {
  QuantizedModel m = Cnn();
  m.mutable_tensors(7)->set_scale(0, 0.0f);
  absl::Status s = ComputeRequantization(&m);
  EXPECT_THAT(std::string(s.message()), HasSubstr("op 2 'conv2' (conv2d): outputs[0] (tensor 7 'conv2').scale: 0"));
  m = Cnn();
  m.mutable_tensors(12)->set_scale(0, NAN);
  EXPECT_THAT(std::string(ComputeRequantization(&m).message()), HasSubstr("op 5 'fc1'"));
  m = Cnn();
  m.mutable_tensors(13)->set_scale(4, 0.0f);
  EXPECT_THAT(std::string(ComputeRequantization(&m).message()),
              HasSubstr("op 6 'fc2' (fully_connected): inputs[1] (tensor 13 'fc2.weight').scale[4]"));
}

TEST(QuantizedModelTest, AnInt32AccumulatorThatCouldOverflowIsRefusedNamingTheLayer) {
  // A tiny input scale (a fixed observer's 1e-45) saturates conv2's int32 bias: bias + the weights'
  // products can then pass 2^31 - 1 in the integer kernels.
  QuantizedModel m = Cnn();
  ASSERT_TRUE(ValidateQuantizedModel(m).ok());
  backends::Tensor* bias = m.mutable_tensors(BiasTensor(m.ops(2)));
  bias->set_int_data(3, std::numeric_limits<int32_t>::max());
  absl::Status s = ValidateQuantizedModel(m);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("op 2 'conv2' (conv2d): accumulator: output channel 3 can reach |acc| = "));
  EXPECT_THAT(std::string(s.message()), HasSubstr("the int32 accumulator would overflow"));
  // Just under the limit passes: the bound is exact, not a margin.
  m = Cnn();
  const std::vector<int32_t> w = TensorValues(m.tensors(WeightTensor(m.ops(2))));
  const int64_t per = static_cast<int64_t>(w.size()) / 32, zx = TensorZeroPoint(m.tensors(m.ops(2).inputs(0)));
  const int64_t span = std::max<int64_t>(zx + 128, 127 - zx);
  int64_t sum = 0;
  for (int64_t j = 3 * per; j < 4 * per; ++j)
    sum += std::abs(w[j] - TensorZeroPoint(m.tensors(WeightTensor(m.ops(2))), 3));
  m.mutable_tensors(BiasTensor(m.ops(2)))->set_int_data(3, static_cast<int32_t>(INT32_MAX - 1 - sum * span));
  EXPECT_TRUE(ValidateQuantizedModel(m).ok()) << ValidateQuantizedModel(m);
  m.mutable_tensors(BiasTensor(m.ops(2)))->set_int_data(3, static_cast<int32_t>(INT32_MAX - sum * span));
  EXPECT_FALSE(ValidateQuantizedModel(m).ok());
}

TEST(QuantizedModelTest, IntegerSizeExcludesFloatWeights) {
  QuantizedModel m = Cnn();
  const int64_t bytes = IntegerModelBytes(m);
  // 144 + 4608 + 200704 + 1280 int8 weights plus biases and qparams; float copies excluded.
  EXPECT_GT(bytes, 206736);
  EXPECT_LT(bytes, 206736 + 8000);
  EXPECT_GT(static_cast<int64_t>(m.ByteSizeLong()), 4 * bytes);
}

TEST(QuantizedModelTest, PackedSizeShrinksWithTheWeightBits) {
  QuantizedModel m = Cnn();
  int64_t scales = 0, int32 = 0, int8 = 0;
  for (const Tensor& t : m.tensors()) {
    scales += t.scale_size() + t.zero_point_size();
    int32 += t.int_data_size();
    int8 += static_cast<int64_t>(t.data().size());
  }
  EXPECT_EQ(int8, 144 + 4608 + 200704 + 1280);
  EXPECT_EQ(PackedModelBytes(m), int8 + 4 * int32 + 4 * scales);
  // fc1 (200704 values) at 3 bits: 75264 bytes instead of 200704; the rest unchanged.
  for (Tensor& t : *m.mutable_tensors()) {
    if (t.data().size() == 200704) t.set_bits(3);
  }
  EXPECT_EQ(PackedModelBytes(m), int8 - 200704 + 75264 + 4 * int32 + 4 * scales);
  // An odd count rounds up to whole bytes: 144 values at 3 bits are 54 bytes, 1280 at 5 are 800.
  for (Tensor& t : *m.mutable_tensors()) {
    if (t.data().size() == 144) t.set_bits(3);
    if (t.data().size() == 1280) t.set_bits(5);
  }
  EXPECT_EQ(PackedModelBytes(m), int8 - 200704 + 75264 - 144 + 54 - 1280 + 800 + 4 * int32 + 4 * scales);
  // IntegerModelBytes (the protobuf, one byte a value) does not see the bits.
  EXPECT_LE(std::abs(IntegerModelBytes(m) - IntegerModelBytes(Cnn())), 16);
}

}  // namespace
}  // namespace quant::backends
