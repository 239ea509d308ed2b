// Writes the binary seed corpora of the fuzz targets with the project's own code:
//   make_seeds <dir>  ->  <dir>/checkpoint/mlp8.pb, <dir>/quantized_model/{graph,depthwise}.pb
//   (QuantizedModel payloads: the fuzzer adds the header and CRC) and .qlq (whole
//   files), <dir>/idx/{labels,images}.idx and images.idx.gz (3 items of 2x2),
//   <dir>/onnx/{graph,depthwise}.{qdq,qop}.onnx (the two graphs' ONNX exports; the float
//   ONNX seeds come from fuzz/make_onnx_seeds.py).
// The committed seeds in fuzz/corpus/ were made by this; re-run it after a format change.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "quant/backends/model_builder.h"
#include "quant/backends/quantized_model.h"
#include "quant/nn/checkpoint.h"
#include "quant/nn/mlp.h"
#include "quant/onnx/onnx_export.h"

namespace {

void Write(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string Idx(uint32_t magic, const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string out;
  auto be32 = [&out](uint32_t v) {
    for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  be32(magic);
  for (uint32_t d : dims) be32(d);
  out.append(data.begin(), data.end());
  return out;
}

int Fail(const std::string& what) {
  std::fprintf(stderr, "make_seeds: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) return Fail("usage: make_seeds <dir>");
  const std::string dir = argv[1];
  for (const char* sub : {"checkpoint", "quantized_model", "idx", "onnx"}) {
    std::filesystem::create_directories(dir + "/" + sub);
  }

  quant::nn::Mlp mlp({8});
  if (!mlp.Build({1, 4, 4}, 3, 0).ok()) return Fail("mlp build");
  if (!quant::nn::SaveCheckpoint(mlp, dir + "/checkpoint/mlp8.pb", {.seed = 0, .epochs = 1}).ok()) {
    return Fail("checkpoint");
  }

  // Small graphs (a few hundred bytes) covering every op kind the validator checks:
  // conv (grouped, depthwise), pools, add, concat, flatten, fully connected.
  using quant::backends::GraphBuilder;
  using quant::backends::QuantizedModel;
  std::vector<std::pair<std::string, QuantizedModel>> graphs;
  {
    GraphBuilder g("seed", {4, 4, 2});
    const int c = g.Conv2D("conv", g.input(), 2, 1, 3, 3, 1, {1, 1, 1, 1}, quant::backends::RELU);
    const int a = g.Add("add", g.input(), c);
    const int cat = g.Concat("concat", {a, g.input()});
    const int p = g.MaxPool2D("pool", cat, 2, 2);
    graphs.emplace_back("graph", g.Finish(g.FullyConnected("fc", g.Flatten("flatten", p), 3)));
  }
  {
    GraphBuilder g("seed", {5, 5, 2});
    const int d = g.Conv2D("dw", g.input(), 4, 2, 3, 3, 2, {1, 1, 1, 1}, quant::backends::RELU6);
    const int p = g.AveragePool2D("avg", d, 2, 1);
    graphs.emplace_back("depthwise", g.Finish(g.FullyConnected("fc", g.GlobalAveragePool("gap", p), 2)));
  }
  for (auto& [name, f] : graphs) {
    quant::backends::RandomizeFloatWeights(&f, 0);
    const std::vector<float> calib = quant::backends::RandomImages(f, 4, 1);
    auto q = quant::backends::QuantizeMinMax(f, calib.data(), 4, {.keep_float = false});
    if (!q.ok()) return Fail(std::string(q.status().message()));
    Write(dir + "/quantized_model/" + name + ".pb", q->SerializeAsString());
    Write(dir + "/quantized_model/" + name + ".qlq", quant::backends::SerializeQuantizedModel(*q));
    for (bool qop : {false, true}) {
      auto e = qop ? quant::onnx_io::ExportQOperator(*q) : quant::onnx_io::ExportQdq(*q);
      if (!e.ok()) return Fail(std::string(e.status().message()));
      Write(dir + "/onnx/" + name + (qop ? ".qop.onnx" : ".qdq.onnx"), e->SerializeAsString());
    }
  }

  Write(dir + "/idx/labels.idx", Idx(0x801, {3}, {0, 9, 4}));
  const std::string images = Idx(0x803, {3, 2, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 255});
  Write(dir + "/idx/images.idx", images);
  gzFile gz = gzopen((dir + "/idx/images.idx.gz").c_str(), "wb9");
  if (gz == nullptr || gzwrite(gz, images.data(), images.size()) != static_cast<int>(images.size())) {
    return Fail("gzip");
  }
  gzclose(gz);
  return 0;
}
