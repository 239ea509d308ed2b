// QuantizedModel: validation errors name the layer and the field, save/load is
// bit for bit, truncated/corrupted/foreign files are rejected, degenerate scales
// are caught with the layer name.
#include "quant/backends/quantized_model.h"

#include <cmath>
#include <cstdio>
#include <fstream>
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
  EXPECT_EQ((*shapes)[1], (Shape{28, 28, 16}));
  EXPECT_EQ((*shapes)[4], (Shape{7, 7, 32}));
  EXPECT_EQ((*shapes)[5], (Shape{1568}));
  EXPECT_EQ(shapes->back(), (Shape{10}));
  // Requantization is per output channel and normalised.
  const Requantization& rq = m.layers(0).conv2d().requant();
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
  EXPECT_EQ(loaded->layers(5).fully_connected().weights(), m.layers(5).fully_connected().weights());
  EXPECT_EQ(loaded->layers(0).conv2d().float_weights(3), m.layers(0).conv2d().float_weights(3));
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

// Each inconsistency is reported with the layer label and the field.
TEST(QuantizedModelTest, InconsistentModelsNameLayerAndField) {
  struct Case {
    std::function<void(QuantizedModel*)> edit;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {[](QuantizedModel* m) { m->mutable_layers(5)->mutable_fully_connected()->set_input_channels(1000); },
       "layer 5 'fc1' (fully_connected): input_channels: 1000 but the input has 1568 features"},
      {[](QuantizedModel* m) {
         auto* w = m->mutable_layers(6)->mutable_fully_connected()->mutable_weights();
         w->resize(w->size() - 3);
       },
       "layer 6 'fc2' (fully_connected): weights: 1277 bytes; expected 1280"},
      {[](QuantizedModel* m) { m->mutable_layers(2)->mutable_conv2d()->mutable_bias()->RemoveLast(); },
       "layer 2 'conv2' (conv2d): bias: 31 values; expected 32"},
      {[](QuantizedModel* m) { m->mutable_layers(2)->mutable_conv2d()->set_input_channels(8); },
       "layer 2 'conv2' (conv2d): input_channels: 8 but the input has 16 channels"},
      {[](QuantizedModel* m) { m->mutable_layers(0)->mutable_conv2d()->mutable_requant()->set_multiplier(3, 12345); },
       "layer 0 'conv1' (conv2d): requant[3]: multiplier 12345"},
      {[](QuantizedModel* m) { m->mutable_layers(0)->mutable_conv2d()->mutable_weight_quant()->set_scale(2, NAN); },
       "layer 0 'conv1' (conv2d): weight_quant.scale[2]: nan is not a finite positive number"},
      {[](QuantizedModel* m) { m->mutable_layers(1)->mutable_output()->set_zero_point(5); },
       "layer 1 'pool1' (max_pool2d): output: max_pool2d must keep its input's scale and zero point"},
      {[](QuantizedModel* m) { m->mutable_layers(3)->set_output_min(100); m->mutable_layers(3)->set_output_max(50); },
       "layer 3 'pool2' (max_pool2d): output_min/output_max: empty clamp"},
      {[](QuantizedModel* m) { m->mutable_layers(6)->mutable_output()->set_dtype(UINT8); },
       "layer 6 'fc2' (fully_connected): output.dtype: uint8 differs from the model's activation dtype int8"},
      {[](QuantizedModel* m) {
         auto* fc = m->mutable_layers(5)->mutable_fully_connected();
         fc->mutable_weight_quant()->set_bits(4);  // the int8 weights no longer fit 4 bits
       },
       "layer 5 'fc1' (fully_connected): weights["},
      {[](QuantizedModel* m) { m->mutable_layers(4)->mutable_max_pool2d(); },
       "layer 4 'flatten' (max_pool2d): kernel_h/kernel_w: must be positive"},
      {[](QuantizedModel* m) { m->mutable_layers(4)->clear_op(); }, "layer 4 'flatten' ((no op)): op:"},
      {[](QuantizedModel* m) { m->mutable_layers(6)->set_name("fc1"); }, "layer 6 'fc1' (fully_connected): name: used"},
      {[](QuantizedModel* m) { m->set_format_version(9); }, "format_version: 9"},
      {[](QuantizedModel* m) { m->mutable_input()->set_scale(0); }, "input.scale: 0 is not a finite positive"},
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

TEST(QuantizedModelTest, DegenerateCalibrationScaleIsCaughtWithLayerName) {
  QuantizedModel m = Cnn();
  m.mutable_layers(2)->mutable_output()->set_scale(0.0f);
  absl::Status s = ComputeRequantization(&m);
  EXPECT_THAT(std::string(s.message()), HasSubstr("layer 2 'conv2' (conv2d): output.scale: 0"));
  m = Cnn();
  m.mutable_layers(5)->mutable_output()->set_scale(NAN);
  EXPECT_THAT(std::string(ComputeRequantization(&m).message()), HasSubstr("layer 5 'fc1'"));
  m = Cnn();
  m.mutable_layers(6)->mutable_fully_connected()->mutable_weight_quant()->set_scale(4, 0.0f);
  EXPECT_THAT(std::string(ComputeRequantization(&m).message()),
              HasSubstr("layer 6 'fc2' (fully_connected): weight_quant.scale[4]"));
}

TEST(QuantizedModelTest, IntegerSizeExcludesFloatWeights) {
  QuantizedModel m = Cnn();
  const int64_t bytes = IntegerModelBytes(m);
  // 144 + 4608 + 200704 + 1280 int8 weights plus biases and qparams; float copies excluded.
  EXPECT_GT(bytes, 206736);
  EXPECT_LT(bytes, 206736 + 8000);
  EXPECT_GT(static_cast<int64_t>(m.ByteSizeLong()), 4 * bytes);
}

}  // namespace
}  // namespace quant::backends
