// The contrib leaky_relu op: registered from outside quant/, built from YAML
// inside a graph model exactly as the driver would, trained through the
// graph's backward.
#include "contrib/leaky_relu_op/leaky_relu_op.h"

#include "gtest/gtest.h"
#include "quant/core/registry.h"
#include "quant/nn/loss.h"
#include "quant/nn/model.h"
#include "yaml-cpp/yaml.h"

namespace contrib {
namespace {

TEST(LeakyReluOp, RegisteredAsAnOp) {
  EXPECT_TRUE(quant::Registry<quant::nn::Layer>::Get().Contains("leaky_relu"));
}

TEST(LeakyReluOp, UsableInAYamlGraphWithItsOwnKeys) {
  quant::ParamReader p(YAML::Load(R"({name: graph, nodes: [
      {name: flat, op: flatten, inputs: [input]},
      {name: act, op: leaky_relu, negative_slope: 0.25},
      {name: fc, op: linear, out_features: 2}]})"),
                       "m.yaml", "model");
  auto m = quant::Registry<quant::nn::Model>::Get().CreateFrom(p, "name", "", "model");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(p.Finish().ok());
  ASSERT_TRUE((*m)->Build({1, 1, 2}, 2, 0).ok());
  quant::nn::Layer* act = (*m)->FindLayer("act");
  ASSERT_NE(act, nullptr);
  EXPECT_EQ(act->Describe(), "LeakyReLU(0.25)");
  quant::Tensor x({1, 1, 1, 2});
  x[0] = -2.0f;
  x[1] = 3.0f;
  (*m)->set_training(true);
  (*m)->Forward(x);
  EXPECT_FLOAT_EQ((*m)->value(quant::nn::Model::OutputOf((*m)->FindNode("act")))[0], -0.5f);
  EXPECT_FLOAT_EQ((*m)->value(quant::nn::Model::OutputOf((*m)->FindNode("act")))[1], 3.0f);
  // Its gradient reaches the layer before: dL/dx through slope 0.25 / 1.
  quant::Tensor dlogits({1, 2});
  dlogits[0] = 1.0f;
  dlogits[1] = 0.0f;
  (*m)->Backward(x, dlogits);
  quant::nn::Layer* fc = (*m)->FindLayer("fc");
  // dW[0][j] = dlogits[0] * act[j]
  EXPECT_FLOAT_EQ(fc->parameters()[0]->grad[0], -0.5f);
  EXPECT_FLOAT_EQ(fc->parameters()[0]->grad[1], 3.0f);
}

TEST(LeakyReluOp, BadSlopeIsAConfigError) {
  quant::ParamReader p(YAML::Load("{type: leaky_relu, negative_slope: 2}"), "m.yaml", "model.layers[0]");
  auto op = quant::Registry<quant::nn::Layer>::Get().CreateFrom(p, "type", "", "op");
  ASSERT_FALSE(op.ok());
  EXPECT_NE(op.status().message().find("m.yaml:1:"), std::string::npos) << op.status();
  EXPECT_NE(op.status().message().find("negative_slope"), std::string::npos) << op.status();
}

}  // namespace
}  // namespace contrib
