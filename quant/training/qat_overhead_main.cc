// QAT overhead: the time of a training step (forward, backward, SGD update)
// with `qat` fake quantizers over the same step in float, same model, same
// batch, one thread. Blocks of steps of the two models alternate, so that load
// from other processes on a shared machine hits both alike; the result is the
// ratio of the median block times. A third model runs QAT in integer-exact mode
// (train.integer_exact, integer_exact.h) in the same rotation.
//
//   bazel run //quant/training:qat_overhead -- [model] [spec...]
//   model: mlp | cnn | cnn_bn (default mlp); quantizer specs as YAML, default
//   the table's W8A8 (per-channel symmetric weights, affine activations, minmax).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "quant/core/registry.h"
#include "quant/nn/gemm.h"
#include "quant/nn/loss.h"
#include "quant/nn/model.h"
#include "quant/nn/optimizer.h"
#include "quant/nn/rng.h"
#include "quant/quantizers/quant_config.h"
#include "quant/training/qat_scheme.h"
#include "yaml-cpp/yaml.h"

namespace quant {
namespace {

std::unique_ptr<nn::Model> Build(const std::string& name) {
  ParamReader p(YAML::Load("{name: " + name + "}"), "<bench>", "model");
  auto m = nn::CreateModel(p);
  if (!m.ok() || !(*m)->Build({1, 28, 28}, 10, 0).ok()) std::exit(1);
  return std::move(m).value();
}

std::unique_ptr<nn::Optimizer> Sgd(nn::Model& m) {
  ParamReader p(YAML::Load("{name: sgd, lr: 0.005, momentum: 0.9}"), "<bench>", "optimizer");
  auto o = Registry<nn::Optimizer>::Get().CreateFrom(p, "name", "sgd", "optimizer");
  if (!o.ok()) std::exit(1);
  (*o)->Attach(m.Parameters());
  return std::move(o).value();
}

struct Trainer {
  std::unique_ptr<nn::Model> model;
  std::unique_ptr<nn::Optimizer> opt;
  nn::SoftmaxCrossEntropy loss;
  Tensor dlogits;
  void Step(const Tensor& x, const std::vector<int32_t>& y) {
    int64_t correct = 0;
    loss.Forward(model->Forward(x), y, &correct);
    loss.Backward(&dlogits);
    model->Backward(x, dlogits);
    opt->Step(0.005);
  }
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Main(int argc, char** argv) {
  const std::string model = argc > 1 ? argv[1] : "mlp";
  const std::string weights = argc > 2 ? argv[2]
      : "{quantizer: affine, bits: 8, symmetric: true, granularity: per_channel, observer: minmax}";
  const std::string acts = argc > 3 ? argv[3] : "{quantizer: affine, bits: 8, observer: minmax}";
  nn::SetGemmThreads(1);
  ParamReader qp(YAML::Load("{weights: " + weights + ", activations: " + acts + "}"), "<bench>", "quant");
  auto config = QuantConfig::Read(qp);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  Trainer fp32{Build(model)}, qat{Build(model)}, exact{Build(model)};
  auto hooks = InsertFakeQuant(*qat.model, **config);
  auto exact_hooks = InsertFakeQuant(*exact.model, **config, /*fold_bn=*/true, /*integer_exact=*/true);
  if (!hooks.ok() || !exact_hooks.ok()) return 1;
  for (Trainer* t : {&fp32, &qat, &exact}) {
    t->opt = Sgd(*t->model);
    t->model->set_training(true);
  }
  // A Fashion-MNIST-like batch: 128 images in [-0.8, 2.0] (normalised pixels).
  nn::Rng rng(1);
  Tensor x({128, 1, 28, 28});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = rng.Uniform(-0.8f, 2.0f);
  std::vector<int32_t> y(128);
  for (int i = 0; i < 128; ++i) y[i] = i % 10;
  const int block = model == "mlp" ? 40 : 4, blocks = model == "mlp" ? 15 : 9;
  for (int i = 0; i < 3; ++i) fp32.Step(x, y), qat.Step(x, y), exact.Step(x, y);  // warm-up
  std::vector<double> tf, tq, te;
  using Clock = std::chrono::steady_clock;
  for (int b = 0; b < blocks; ++b) {
    for (Trainer* t : {&fp32, &qat, &exact}) {
      const auto start = Clock::now();
      for (int s = 0; s < block; ++s) t->Step(x, y);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count() / block;
      (t == &fp32 ? tf : t == &qat ? tq : te).push_back(ms);
    }
  }
  if (!hooks->status().ok() || !exact_hooks->status().ok()) return 1;
  const double f = Median(tf), q = Median(tq), e = Median(te);
  std::printf("%s: fp32 step %.3f ms, qat step %.3f ms, qat integer-exact step %.3f ms (median of %d blocks of %d, "
              "1 thread): overhead %.3fx, integer-exact %.3fx (%.3fx of qat)\n",
              model.c_str(), f, q, e, blocks, block, q / f, e / f, e / q);
  return 0;
}

}  // namespace
}  // namespace quant

int main(int argc, char** argv) { return quant::Main(argc, argv); }
