// Fuzzes LoadCheckpoint into a small built mlp (the loader checks every tensor of
// the file against the model before it changes anything).
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/fuzz_util.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/mlp.h"

namespace {

// The model the seed corpus was saved from (fuzz/make_seeds.cc): mlp hidden [8]
// on 1x4x4 samples, 3 classes.
std::unique_ptr<quant::nn::Model> SmallMlp() {
  auto model = std::make_unique<quant::nn::Mlp>(std::vector<int64_t>{8});
  if (!model->Build({1, 4, 4}, 3, 0).ok()) std::abort();
  return model;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<quant::nn::Model> model = SmallMlp();
  const std::string& path = quant::fuzz::ScratchPath(".pb");
  quant::fuzz::WriteScratch(path, data, size);
  quant::nn::LoadCheckpoint(path, model.get()).IgnoreError();
  return 0;
}
