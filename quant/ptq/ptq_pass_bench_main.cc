// Time and peak memory of PTQ passes on a whole model, one thread, 1024 calibration images:
// the speed figures of docs/ptq.md ("adaround of the whole cnn in under 60 s, of resnet_mini in
// under 3 minutes; gptq of any model in under 10 s").
//
//   bazel run //quant/ptq:ptq_pass_bench -- --model=cnn --checkpoint=runs/cnn_fp32/model.pb \
//       --passes=gptq,adaround --bits=4 --repeats=1
//
// Each pass runs alone on a fresh copy of the BN-folded float net (W<bits>A8 per-channel, the
// sweeps' spec), on the first 1024 Fashion-MNIST training images in the calibration order of
// seed 0 (random images when the dataset is not installed: the time does not depend on the
// values). Prints one line per pass and repeat with the wall time, and the process's peak RSS
// after each pass (VmHWM: monotone, so a pass's own peak shows as the first rise to it).
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_split.h"
#include "quant/core/registry.h"
#include "quant/data/dataset.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/gemm.h"
#include "quant/nn/model.h"
#include "quant/ptq/converter.h"
#include "quant/ptq/ptq_method.h"
#include "quant/ptq/ptq_pass.h"
#include "quant/quantizers/quant_config.h"
#include "yaml-cpp/yaml.h"

ABSL_FLAG(std::string, model, "cnn", "model registry name (cnn, resnet_mini, mobilenet_mini, ...)");
ABSL_FLAG(std::string, checkpoint, "", "its fp32 checkpoint (model.pb); empty: the initial weights");
ABSL_FLAG(std::string, passes, "gptq,adaround", "comma-separated pass names, each with its defaults");
ABSL_FLAG(int, bits, 4, "weight bits (activations 8)");
ABSL_FLAG(int, images, 1024, "calibration images");
ABSL_FLAG(int, repeats, 1, "runs of each pass");

namespace quant::ptq {
namespace {

double PeakRssMiB() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

int Main() {
  nn::SetGemmThreads(1);
  const std::string name = absl::GetFlag(FLAGS_model);
  ParamReader mp(YAML::Load("{name: " + name + "}"), "<bench>", "model");
  auto model = Registry<nn::Model>::Get().CreateFrom(mp, "name", "", "model");
  if (!model.ok() || !(*model)->Build({1, 28, 28}, 10, 0).ok()) {
    std::fprintf(stderr, "cannot build model %s\n", name.c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_checkpoint).empty()) {
    if (absl::Status s = nn::LoadCheckpoint(absl::GetFlag(FLAGS_checkpoint), model->get()); !s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  (*model)->set_training(false);
  const int64_t n = absl::GetFlag(FLAGS_images);
  std::vector<float> calib;
  std::string source = "Fashion-MNIST";
  ParamReader dp(YAML::Load("{name: fashion_mnist}"), "<bench>", "dataset");
  auto ds = Registry<Dataset>::Get().CreateFrom(dp, "name", "", "dataset");
  if (ds.ok() && (*ds)->Load().ok()) {
    calib = CalibrationImages((*ds)->train(), n, 0);
  } else {
    source = "random images (Fashion-MNIST not installed)";
    std::mt19937 rng(0);
    std::normal_distribution<float> g(0, 1);
    calib.resize(n * 28 * 28);
    for (float& v : calib) v = g(rng);
  }
  ParamReader qp(YAML::Load("{weights: {quantizer: affine, bits: " + std::to_string(absl::GetFlag(FLAGS_bits)) +
                            ", symmetric: true, granularity: per_channel, observer: per_channel_minmax},"
                            " activations: {quantizer: affine, bits: 8, signed: true, observer: histogram,"
                            " calibration: percentile, percentile: 99.99}}"),
                 "<bench>", "quant");
  auto quant = QuantConfig::Read(qp);
  if (!quant.ok()) {
    std::fprintf(stderr, "%s\n", std::string(quant.status().message()).c_str());
    return 1;
  }
  auto base = ExtractFloatNet(**model);
  if (!base.ok()) {
    std::fprintf(stderr, "%s\n", std::string(base.status().message()).c_str());
    return 1;
  }
  std::printf("%s: %lld calibration images (%s), W%dA8 per-channel, 1 thread; peak RSS before the passes %.0f MiB\n",
              name.c_str(), static_cast<long long>(n), source.c_str(), absl::GetFlag(FLAGS_bits), PeakRssMiB());
  const std::vector<std::string> pass_names = absl::StrSplit(absl::GetFlag(FLAGS_passes), ',', absl::SkipEmpty());
  for (const std::string& pass_name : pass_names) {
    for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
      ParamReader pp(YAML::Load("{name: " + pass_name + "}"), "<bench>", "ptq.passes[0]");
      auto pass = Registry<PtqPass>::Get().CreateFrom(pp, "name", "", "PTQ pass");
      if (!pass.ok()) {
        std::fprintf(stderr, "%s\n", std::string(pass.status().message()).c_str());
        return 1;
      }
      FloatNet net = *base;
      std::vector<std::string> notes;
      PtqPassContext ctx{&net, quant->get(), calib.data(), n, &notes};
      const auto start = std::chrono::steady_clock::now();
      if (absl::Status s = (*pass)->Run(ctx); !s.ok()) {
        std::fprintf(stderr, "%s: %s\n", pass_name.c_str(), std::string(s.message()).c_str());
        return 1;
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("%s %s: %.1f s, peak RSS %.0f MiB\n", name.c_str(), pass_name.c_str(), seconds, PeakRssMiB());
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace quant::ptq

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return quant::ptq::Main();
}
