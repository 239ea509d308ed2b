#include "quant/nn/layer_spec.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "quant/nn/batch_norm.h"
#include "quant/nn/conv2d.h"
#include "quant/nn/elementwise.h"
#include "quant/nn/linear.h"
#include "quant/nn/pooling.h"

namespace quant::nn {
namespace {

std::string Prefix(const std::string& type) {
  if (type == "linear") return "fc";
  if (type == "conv2d") return "conv";
  if (type == "batchnorm1d" || type == "batchnorm2d") return "bn";
  if (type == "maxpool2d" || type == "avgpool2d") return "pool";
  if (type == "relu6") return "relu6_";
  return type;  // relu, hardtanh, flatten, dropout
}

}  // namespace

const std::vector<std::string>& LayerTypes() {
  static const auto* types = new std::vector<std::string>{
      "linear", "conv2d", "maxpool2d", "avgpool2d", "relu", "relu6", "hardtanh",
      "flatten", "dropout", "batchnorm1d", "batchnorm2d"};
  return *types;
}

LayerSpec ReadLayerSpec(ParamReader& p) {
  LayerSpec s;
  s.type = p.Choice("type", "relu", LayerTypes(), "layer kind");
  s.name = p.String("name", "", "layer name for quantization overrides (default: conv1, fc2, ...)");
  const std::string& t = s.type;
  if (t == "linear") {
    s.in = p.Int("in_features", -1, "input width (default: inferred; checked when given)");
    s.out = p.IntInRange("out_features", 0, 1, 1 << 24, "output width");
    if (!p.Has("out_features")) p.Fail("out_features", "a linear layer needs out_features");
    s.bias = p.Bool("bias", true, "learn a bias");
  } else if (t == "conv2d") {
    s.in = p.Int("in_channels", -1, "input channels (default: inferred; checked when given)");
    s.out = p.IntInRange("out_channels", 0, 1, 1 << 20, "output channels");
    if (!p.Has("out_channels")) p.Fail("out_channels", "a conv2d layer needs out_channels");
    s.kernel = p.IntInRange("kernel", 3, 1, 1024, "square kernel size");
    s.stride = p.IntInRange("stride", 1, 1, 1024, "stride");
    s.padding = p.IntInRange("padding", 0, 0, 1024, "zero padding on each side");
    s.bias = p.Bool("bias", true, "learn a bias");
  } else if (t == "maxpool2d" || t == "avgpool2d") {
    s.kernel = p.IntInRange("kernel", 2, 1, 1024, "square window");
    s.stride = p.IntInRange("stride", 0, 0, 1024, "stride (0: the kernel size)");
  } else if (t == "hardtanh") {
    s.lo = p.Double("min_val", -1.0, "lower clip");
    s.hi = p.Double("max_val", 1.0, "upper clip");
    if (!(s.lo < s.hi)) p.Fail("max_val", "must be greater than min_val");
  } else if (t == "dropout") {
    s.p = p.DoubleInRange("p", 0.5, 0.0, 0.999, "probability of zeroing an element");
  } else if (t == "batchnorm1d" || t == "batchnorm2d") {
    s.in = p.Int("num_features", -1, "channels (default: inferred; checked when given)");
    s.momentum = p.DoubleInRange("momentum", 0.1, 0.0, 1.0, "running-statistics momentum (PyTorch's)");
    s.eps = p.DoubleInRange("eps", 1e-5, 0.0, 1.0, "added to the variance");
  }
  return s;
}

void AssignLayerNames(std::vector<LayerSpec>* specs) {
  std::map<std::string, int> counts;
  for (LayerSpec& s : *specs) {
    const std::string prefix = Prefix(s.type);
    const int n = ++counts[prefix];
    if (s.name.empty()) s.name = absl::StrCat(prefix, n);
  }
}

std::unique_ptr<Layer> MakeLayer(const LayerSpec& s) {
  const std::string& t = s.type;
  if (t == "linear") return std::make_unique<Linear>(s.name, s.in, s.out, s.bias);
  if (t == "conv2d") {
    return std::make_unique<Conv2d>(
        s.name, Conv2dOptions{.in_channels = s.in, .out_channels = s.out, .kernel = s.kernel,
                              .stride = s.stride > 0 ? s.stride : 1, .padding = s.padding,
                              .bias = s.bias});
  }
  if (t == "maxpool2d") return std::make_unique<Pool2d>(s.name, Pool2d::Kind::kMax, s.kernel, s.stride);
  if (t == "avgpool2d") return std::make_unique<Pool2d>(s.name, Pool2d::Kind::kAvg, s.kernel, s.stride);
  if (t == "relu") return std::make_unique<Clamp>(s.name, Clamp::Kind::kReLU);
  if (t == "relu6") return std::make_unique<Clamp>(s.name, Clamp::Kind::kReLU6);
  if (t == "hardtanh") {
    return std::make_unique<Clamp>(s.name, Clamp::Kind::kHardtanh, static_cast<float>(s.lo),
                                   static_cast<float>(s.hi));
  }
  if (t == "flatten") return std::make_unique<Flatten>(s.name);
  if (t == "dropout") return std::make_unique<Dropout>(s.name, static_cast<float>(s.p));
  if (t == "batchnorm1d" || t == "batchnorm2d") {
    return std::make_unique<BatchNorm>(s.name, t == "batchnorm2d", s.in,
                                       static_cast<float>(s.momentum), static_cast<float>(s.eps));
  }
  return nullptr;  // unreachable: ReadLayerSpec only accepts LayerTypes()
}

}  // namespace quant::nn
