#include "quant/ptq/static_ptq.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "quant/backends/fake_quant_backend.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"

namespace quant::ptq {

absl::StatusOr<std::unique_ptr<PtqMethod>> StaticPtq::Create(ParamReader& p) {
  const int64_t batches = p.IntInRange("calibration_batches", 8, 1, 100000,
                                       "training batches the observers see before the qparams freeze");
  const int64_t batch = p.IntInRange("batch_size", 128, 1, 65536, "calibration batch size");
  if (absl::Status s = p.status(); !s.ok()) return s;
  ASSIGN_OR_RETURN(std::vector<std::unique_ptr<PtqPass>> passes, ReadPasses(p));
  return std::unique_ptr<PtqMethod>(new StaticPtq(batches, batch, std::move(passes)));
}

std::string StaticPtq::Describe() const {
  std::string passes;
  for (const std::unique_ptr<PtqPass>& pass : passes_) absl::StrAppend(&passes, passes.empty() ? "" : ", ", pass->Describe());
  return absl::StrCat("static PTQ: ", passes.empty() ? "" : absl::StrCat("passes [", passes, "], then "), "calibrate on ",
                      calibration_batches_, " x ", batch_size_, " training images, convert to an integer model");
}

absl::Status StaticPtq::Check(nn::Model& model, const QuantConfig& quant) const {
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(model));
  return MakeStaticQuantizers(net, quant).status();
}

absl::StatusOr<PtqResult> StaticPtq::Apply(const PtqContext& ctx) {
  PtqResult r;
  r.method = "static";
  ASSIGN_OR_RETURN(FloatNet net, ExtractFloatNet(*ctx.model));
  ASSIGN_OR_RETURN(StaticQuantizers q, MakeStaticQuantizers(net, *ctx.quant));
  const std::vector<float> calib =
      CalibrationImages(ctx.dataset->train(), calibration_batches_ * batch_size_, ctx.seed);
  int64_t per = 1;
  for (int64_t d : net.nn_input_shape) per *= d;
  const int64_t n = static_cast<int64_t>(calib.size()) / per;
  PassLog log = net.log;
  double before_passes = -1;
  if (!passes_.empty()) {
    ASSIGN_OR_RETURN(before_passes, FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
    log.push_back(absl::StrFormat("float net before the passes: %.4f test accuracy", before_passes));
  }
  for (const std::unique_ptr<PtqPass>& pass : passes_) {
    PtqPassContext pc{&net, ctx.quant, calib.data(), n, &log, ctx.seed, ctx.log, ctx.name};
    const auto start = std::chrono::steady_clock::now();
    if (absl::Status s = pass->Run(pc); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("ptq pass ", pass->Describe(), ": ", s.message()));
    }
    log.push_back(absl::StrFormat("(%s took %.2f s)", pass->Describe(), std::chrono::duration<double>(
                                                                           std::chrono::steady_clock::now() - start)
                                                                           .count()));
  }
  ASSIGN_OR_RETURN(r.model, QuantizeStatic(net, q, calib.data(), n, batch_size_, &log));
  r.has_integer_model = true;
  r.model_bytes = backends::IntegerModelBytes(r.model);
  ASSIGN_OR_RETURN(r.float_test_accuracy,
                   FloatNetAccuracy(net.model, ctx.dataset->test(), net.nn_input_shape, 256));
  if (before_passes >= 0) {
    // The float model is the one before the passes (gptq/adaround leave quantized weights in the float net).
    r.notes.push_back(absl::StrFormat("float net after the passes (weights as the passes left them, float "
                                      "activations): %.4f test accuracy", r.float_test_accuracy));
    r.float_test_accuracy = before_passes;
  }
  // The fake-quant simulation of the converted model on the test set.
  backends::FakeQuantBackend sim;
  RETURN_IF_ERROR(sim.Prepare(r.model));
  const DataSplit& test = ctx.dataset->test();
  std::vector<float> logits;
  int64_t correct = 0;
  backends::RunOutput out;
  for (int64_t start = 0; start < test.size(); start += 256) {
    const int64_t b = std::min<int64_t>(256, test.size() - start);
    std::vector<float> x = test.Nhwc(start, b);
    RETURN_IF_ERROR(sim.Run(x.data(), b, &out));
    std::vector<int32_t> labels(test.labels.begin() + start, test.labels.begin() + start + b);
    correct += static_cast<int64_t>(Top1Accuracy(out.logits, b, labels) * b + 0.5);
  }
  r.test_accuracy = test.size() ? static_cast<double>(correct) / test.size() : 0.0;
  r.float_model = net.model;
  r.notes.push_back(absl::StrCat("calibrated on ", n, " training images"));
  for (const std::string& line : log) {
    r.notes.push_back(line);
    if (ctx.log != nullptr) std::fprintf(ctx.log, "%s: ptq pass %s\n", ctx.name.c_str(), line.c_str());
  }
  for (size_t k = 0; k < net.weighted.size(); ++k) {
    const std::unique_ptr<Quantizer>& a = q.activations[net.weighted[k].index];
    r.notes.push_back(absl::StrCat(net.weighted[k].name, ": weights ", q.weights[k]->Describe(), "; activations ",
                                   a != nullptr ? a->Describe() : std::string("(input's)")));
  }
  return r;
}

QUANTLAB_REGISTER(PtqMethod, "static", StaticPtq::Create,
                  "observers + calibration on training batches, frozen, converted to an integer model");

}  // namespace quant::ptq
