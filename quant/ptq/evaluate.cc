#include "quant/ptq/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "quant/core/status_macros.h"
#include "quant/ptq/ptq_method.h"

namespace quant::ptq {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
  return v[v.size() / 2];
}

int64_t Argmax(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

int64_t FloatModelBytes(const backends::QuantizedModel& m, int bytes_per_value) {
  int64_t values = 0;
  for (const backends::Tensor& t : m.tensors()) values += t.float_data_size();
  return values * bytes_per_value;
}

AgreementCounts Count(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  AgreementCounts c;
  c.compared = static_cast<int64_t>(std::min(a.size(), b.size()));
  for (int64_t i = 0; i < c.compared; ++i) {
    const int64_t d = std::abs(static_cast<int64_t>(a[i]) - b[i]);
    c.identical += d == 0;
    c.off_by_one += d == 1;
    c.larger += d > 1;
    c.max_abs_steps = std::max(c.max_abs_steps, d);
  }
  return c;
}

}  // namespace

absl::Status ComparePerOp(const backends::QuantizedModel& reference_model, const backends::QuantizedModel& model,
                          const std::string& name, const float* x, int64_t batch, BackendEvaluation* e) {
  ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> ref, backends::CreateBackend("reference"));
  ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> b, backends::CreateBackend(name));
  ref->set_keep_intermediates(true);
  b->set_keep_intermediates(true);
  RETURN_IF_ERROR(ref->Prepare(reference_model));
  RETURN_IF_ERROR(b->Prepare(model));
  backends::RunOutput unused;
  RETURN_IF_ERROR(ref->Run(x, batch, &unused));
  RETURN_IF_ERROR(b->Run(x, batch, &unused));
  std::vector<int32_t> qa, qb;
  std::vector<std::vector<int32_t>> inputs;
  for (int i = 0; i < model.ops_size(); ++i) {
    const backends::Op& op = model.ops(i);
    if (!ref->ReadTensor(op.outputs(0), &qa) || !b->ReadTensor(op.outputs(0), &qb)) continue;
    OpAgreement a{op.name(), backends::OpKind(op), Count(qa, qb), {}};
    // The same op alone on the reference's inputs (constants are not activations).
    inputs.clear();
    bool readable = true;
    for (int t : op.inputs()) {
      if (b->buffer_of(t) < 0) continue;
      inputs.emplace_back();
      readable = readable && ref->ReadTensor(t, &inputs.back());
    }
    if (readable && b->RunOpAlone(i, inputs).ok() && b->ReadTensor(op.outputs(0), &qb)) a.alone = Count(qa, qb);
    if (e->first_departure < 0 && a.counts.identical != a.counts.compared) {
      e->first_departure = static_cast<int>(e->per_op.size());
    }
    e->per_op.push_back(std::move(a));
  }
  return absl::OkStatus();
}

AgreementCounts CompareOutputs(const std::vector<int32_t>& ref_q, const std::vector<float>& ref_logits,
                               const std::vector<int32_t>& q, const std::vector<float>& logits, int64_t n,
                               bool integer) {
  AgreementCounts a;
  if (integer && q.size() == ref_q.size()) {
    a.compared = static_cast<int64_t>(q.size());
    for (size_t i = 0; i < q.size(); ++i) {
      const int64_t d = std::abs(static_cast<int64_t>(q[i]) - ref_q[i]);
      a.identical += d == 0;
      a.off_by_one += d == 1;
      a.larger += d > 1;
      a.max_abs_steps = std::max(a.max_abs_steps, d);
    }
  }
  if (n > 0 && logits.size() == ref_logits.size()) {
    const int64_t classes = static_cast<int64_t>(logits.size()) / n;
    int64_t same = 0;
    for (int64_t i = 0; i < n; ++i) {
      same += Argmax(logits.data() + i * classes, classes) == Argmax(ref_logits.data() + i * classes, classes);
    }
    a.top1_agreement = static_cast<double>(same) / n;
  }
  return a;
}

absl::StatusOr<std::vector<BackendEvaluation>> EvaluateBackends(const backends::QuantizedModel& model,
                                                                const DataSplit& test,
                                                                const std::vector<int64_t>& chw,
                                                                const std::vector<std::string>& names,
                                                                const EvaluateOptions& options) {
  int64_t per = 1;
  for (int64_t d : chw) per *= d;
  const int64_t n = test.size();
  // The test set stays uint8 (DataSplit); each batch is normalised to float NHWC when it
  // is run (outside the timing): the whole split as float was 31 MiB of the quickstart's peak.
  constexpr int64_t kBatch = 256;
  // Runs the whole test set; returns int outputs + logits, and the time of the full batches.
  auto run_all = [&](backends::Backend& b, std::vector<int32_t>* q, std::vector<float>* logits,
                     std::vector<double>* full_batch_seconds) -> absl::Status {
    q->clear();
    logits->clear();
    backends::RunOutput out;
    for (int64_t start = 0; start < n; start += kBatch) {
      const int64_t bs = std::min(kBatch, n - start);
      const std::vector<float> x = test.Nhwc(start, bs);
      const auto t0 = Clock::now();
      RETURN_IF_ERROR(b.Run(x.data(), bs, &out));
      if (bs == kBatch) full_batch_seconds->push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      q->insert(q->end(), out.quantized.begin(), out.quantized.end());
      logits->insert(logits->end(), out.logits.begin(), out.logits.end());
    }
    return absl::OkStatus();
  };
  // The reference outputs, for the agreement of every backend.
  std::vector<int32_t> ref_q;
  std::vector<float> ref_logits;
  {
    ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> ref, backends::CreateBackend("reference"));
    RETURN_IF_ERROR(ref->Prepare(model));
    std::vector<double> unused;
    RETURN_IF_ERROR(run_all(*ref, &ref_q, &ref_logits, &unused));
  }
  std::vector<BackendEvaluation> results;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> b, backends::CreateBackend(name));
    RETURN_IF_ERROR(b->Prepare(model));
    BackendEvaluation e;
    e.backend = name;
    std::vector<int32_t> q;
    std::vector<float> logits;
    // Batch 256: the median time of the full batches (robust to other processes on the machine).
    std::vector<double> batch_seconds;
    for (int64_t r = 0; r < options.batch256_repeats; ++r) {
      RETURN_IF_ERROR(run_all(*b, &q, &logits, &batch_seconds));
    }
    e.test_accuracy = Top1Accuracy(logits, n, test.labels);
    const int64_t classes = n > 0 ? static_cast<int64_t>(logits.size()) / n : 0;
    for (int64_t i = 0; i < n; ++i) e.predictions.push_back(static_cast<int32_t>(Argmax(logits.data() + i * classes, classes)));
    e.integer_outputs = !b->profile().float_model;
    e.agreement = CompareOutputs(ref_q, ref_logits, q, logits, n, e.integer_outputs);
    const double m256 = Median(batch_seconds);
    e.images_per_s_batch256 = m256 > 0 ? kBatch / m256 : 0.0;
    // Batch 1: one image at a time, median per image (operators are set up for batch 1 once, untimed).
    backends::RunOutput out;
    const int64_t first = std::min(n, std::max<int64_t>(options.batch1_images, 1));
    const std::vector<float> x = test.Nhwc(0, first);
    RETURN_IF_ERROR(b->Run(x.data(), 1, &out));
    const auto start = Clock::now();
    std::vector<double> image_seconds;
    for (int64_t i = 0; i < options.batch1_images; ++i) {
      const auto t0 = Clock::now();
      RETURN_IF_ERROR(b->Run(x.data() + (i % first) * per, 1, &out));
      const auto t1 = Clock::now();
      image_seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
      if (std::chrono::duration<double>(t1 - start).count() > options.batch1_seconds) break;
    }
    const double m1 = Median(image_seconds);
    e.images_per_s_batch1 = m1 > 0 ? 1.0 / m1 : 0.0;
    // 64 images: every tensor is kept apart in two backends (int32 in the reference), and at
    // 256 images that raised the quickstart's peak RSS by ~80 MiB.
    constexpr int64_t kPerOpImages = 64;
    if (e.integer_outputs) {
      const std::vector<float> xp = test.Nhwc(0, std::min(kPerOpImages, n));
      RETURN_IF_ERROR(ComparePerOp(model, model, name, xp.data(), std::min(kPerOpImages, n), &e));
    }
    if (b->profile().float_model) {
      e.model_size_bytes = FloatModelBytes(model, name.size() > 4 && name.substr(name.size() - 4) == "_f16" ? 2 : 4);
    } else {
      e.model_size_bytes = backends::IntegerModelBytes(model);
    }
    results.push_back(e);
  }
  return results;
}

absl::Status ValidateBackendsFor(const FloatNet& net, const QuantConfig* quant,
                                 const std::vector<std::string>& names) {
  StaticQuantizers q;
  if (quant != nullptr) {
    ASSIGN_OR_RETURN(q, MakeStaticQuantizers(net, *quant));
  }
  const backends::DType act = quant == nullptr || q.is_signed ? backends::INT8 : backends::UINT8;
  for (const std::string& name : names) {
    ASSIGN_OR_RETURN(std::unique_ptr<backends::Backend> b, backends::CreateBackend(name));
    const backends::BackendProfile& p = b->profile();
    for (size_t k = 0; quant != nullptr && k < net.weighted.size(); ++k) {
      const WeightedLayer& w = net.weighted[k];
      const QuantSpec& ws = q.weights[k]->spec();
      backends::LayerQuantSpec spec;
      spec.layer = w.name;
      spec.kind = backends::OpKind(net.model.ops(w.index));
      spec.activation = act;
      spec.weight = ws.is_signed ? backends::INT8 : backends::UINT8;
      spec.per_channel = ws.granularity == Granularity::kPerChannel;
      spec.symmetric = ws.symmetric;
      spec.bits = ws.bits;
      RETURN_IF_ERROR(backends::CheckLayerSpec(spec, p));
    }
    // Every op kind (pools, add, concat, lookup tables, ...) and its per-kind rules.
    for (int i = 0; i < net.model.ops_size(); ++i) {
      const backends::Op& op = net.model.ops(i);
      RETURN_IF_ERROR(backends::CheckOpSpec(op.name(), backends::OpKind(op), act, p));
      const std::string label = absl::StrCat("backend '", name, "' cannot run op ", i, " '", op.name(), "' (",
                                             backends::OpKind(op), "): rule: ");
      if (op.has_max_pool2d() && !p.max_pool2d_single_element &&
          op.max_pool2d().kernel_h() * op.max_pool2d().kernel_w() == 1) {
        return absl::UnimplementedError(label + "a 1x1 max pool window is not supported");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace quant::ptq
