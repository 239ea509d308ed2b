#include "quant/analysis/sensitivity.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/backends/float_kernels.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/ptq/ptq_pass.h"
#include "quant/quantizers/quant_config.h"

namespace quant::analysis {

const char* TargetName(Target t) {
  switch (t) {
    case Target::kWeights:
      return "weights";
    case Target::kActivations:
      return "activations";
    case Target::kBoth:
      return "both";
  }
  return "?";
}

void SensitivityTable::Add(const std::string& layer, int b, Target target, const std::string& metric, double value) {
  entries.push_back({layer, b, TargetName(target), metric, value});
}

void SensitivityTable::AddIndependent(const std::string& layer, const std::string& metric, double value) {
  entries.push_back({layer, 0, "", metric, value});
}

std::optional<double> SensitivityTable::Find(const std::string& layer, int b, const std::string& target,
                                             const std::string& metric) const {
  for (const SensitivityEntry& e : entries) {
    if (e.layer == layer && e.bits == b && e.target == target && e.metric == metric) return e.value;
  }
  return std::nullopt;
}

std::vector<std::string> SensitivityTable::Metrics() const {
  std::vector<std::string> out;
  for (const SensitivityEntry& e : entries) {
    if (std::find(out.begin(), out.end(), e.metric) == out.end()) out.push_back(e.metric);
  }
  return out;
}

std::string SensitivityTable::Markdown() const {
  // Columns: every (metric, target) that has a value at some bit width; bit-independent
  // metrics get their own small table.
  std::vector<std::pair<std::string, std::string>> columns, independent;
  for (const SensitivityEntry& e : entries) {
    auto& list = e.bits == 0 ? independent : columns;
    const std::pair<std::string, std::string> key(e.metric, e.target);
    if (std::find(list.begin(), list.end(), key) == list.end()) list.push_back(key);
  }
  std::string out;
  if (!columns.empty()) {
    absl::StrAppend(&out, "| layer | bits |");
    for (const auto& [metric, target] : columns) absl::StrAppend(&out, " ", metric, " (", target, ") |");
    absl::StrAppend(&out, "\n|---|---:|");
    for (size_t i = 0; i < columns.size(); ++i) absl::StrAppend(&out, "---:|");
    absl::StrAppend(&out, "\n");
    for (const std::string& layer : layers) {
      for (int b : bits) {
        absl::StrAppend(&out, "| ", layer, " | ", b, " |");
        for (const auto& [metric, target] : columns) {
          const std::optional<double> v = Find(layer, b, target, metric);
          absl::StrAppend(&out, " ", v.has_value() ? absl::StrFormat("%.4g", *v) : std::string("-"), " |");
        }
        absl::StrAppend(&out, "\n");
      }
    }
  }
  if (!independent.empty()) {
    absl::StrAppend(&out, "\n| layer |");
    for (const auto& c : independent) absl::StrAppend(&out, " ", c.first, " |");
    absl::StrAppend(&out, "\n|---|");
    for (size_t i = 0; i < independent.size(); ++i) absl::StrAppend(&out, "---:|");
    absl::StrAppend(&out, "\n");
    for (const std::string& layer : layers) {
      absl::StrAppend(&out, "| ", layer, " |");
      for (const auto& [metric, target] : independent) {
        const std::optional<double> v = Find(layer, 0, target, metric);
        absl::StrAppend(&out, " ", v.has_value() ? absl::StrFormat("%.4g", *v) : std::string("-"), " |");
      }
      absl::StrAppend(&out, "\n");
    }
  }
  return out;
}

YAML::Node QuantSectionAtBits(const YAML::Node& quant, int bits, bool activations) {
  YAML::Node out = YAML::Clone(quant);
  std::vector<const char*> keys = {"weights"};
  if (activations) keys.push_back("activations");
  for (const char* key : keys) {
    if (out[key].IsMap()) out[key]["bits"] = bits;
  }
  YAML::Node overrides = out["overrides"];
  if (overrides.IsSequence()) {
    for (size_t i = 0; i < overrides.size(); ++i) {
      YAML::Node o = overrides[i];
      for (const char* key : keys) {
        if (o[key].IsMap() && o[key]["bits"].IsDefined()) o[key].remove("bits");
      }
    }
  }
  return out;
}

absl::StatusOr<SensitivityContext> PrepareSensitivity(nn::Model& model, const YAML::Node& quant,
                                                      const std::string& file, const Dataset& dataset,
                                                      const PrepareOptions& options) {
  SensitivityContext ctx;
  ctx.model = &model;
  ctx.bits = options.bits;
  ctx.batch_size = options.batch_size;
  ctx.seed = options.seed;
  ctx.log = options.log;
  ctx.name = options.name;
  model.set_training(false);
  ASSIGN_OR_RETURN(ctx.net, ptq::ExtractFloatNet(model));

  // CalibrationImages' seeded order: its first images calibrate, the next ones evaluate.
  const DataSplit& train = dataset.train();
  const int64_t n_cal = std::min(options.calibration_images, train.size());
  const int64_t n_eval = std::min(options.images, train.size() - n_cal);
  if (n_eval <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("analysis: the training split has ", train.size(),
                                                   " images; none is left after ", n_cal, " calibration images"));
  }
  BatchIterator it(train, n_cal + n_eval, /*shuffle=*/true, options.seed ^ 0x9e3779b97f4a7c15ull);
  it.StartEpoch(0);
  Tensor images;
  std::vector<int32_t> labels;
  it.Next(&images, &labels);
  const int64_t per = images.numel() / images.dim(0);
  std::vector<int64_t> shape = images.shape();
  shape[0] = n_eval;
  ctx.nchw = Tensor(shape);
  std::copy(images.data() + n_cal * per, images.data() + (n_cal + n_eval) * per, ctx.nchw.data());
  ctx.labels.assign(labels.begin() + n_cal, labels.end());
  ctx.images = n_eval;
  ctx.nhwc = ptq::ToNhwc(ctx.nchw);
  ctx.calibration = ptq::ToNhwc(images.data(), n_cal, ctx.net.nn_input_shape);
  ctx.calibration_images = n_cal;
  const std::vector<float>& calibration = ctx.calibration;

  for (int b : options.bits) {
    const YAML::Node section = QuantSectionAtBits(quant, b);
    ParamReader reader(section, file, "quant");
    auto config = QuantConfig::Read(reader);
    if (!config.ok()) return config.status();
    RETURN_IF_ERROR(reader.Finish());
    ptq::FloatNet net = ctx.net;
    std::vector<std::string> pass_notes;
    for (ptq::PtqPass* pass : options.passes) {
      ptq::PtqPassContext pc{&net,         config->get(), calibration.data(), n_cal, &pass_notes,
                             options.seed, nullptr,       options.name};
      if (absl::Status s = pass->Run(pc); !s.ok()) {
        return absl::Status(s.code(),
                            absl::StrCat("analysis at ", b, " bits: ptq pass ", pass->Describe(), ": ", s.message()));
      }
    }
    auto q = ptq::MakeStaticQuantizers(net, **config);
    if (!q.ok())
      return absl::Status(q.status().code(), absl::StrCat("analysis at ", b, " bits: ", q.status().message()));
    auto integer = ptq::QuantizeStatic(net, *q, calibration.data(), n_cal, options.batch_size);
    if (!integer.ok()) {
      return absl::Status(integer.status().code(),
                          absl::StrCat("analysis at ", b, " bits: ", integer.status().message()));
    }
    QuantizedAtBits& at = ctx.at_bits[b];
    at.integer_model = std::move(integer).value();
    for (const ptq::WeightedLayer& w : ctx.net.weighted) {
      at.weights.push_back(
          backends::floatk::FloatWeights(at.integer_model, at.integer_model.ops(w.index), true).weights);
    }
    at.grids[backends::InputTensor(ctx.net.model)] = q->input->qparams();
    for (int i = 0; i < ctx.net.model.ops_size(); ++i) {
      if (q->activations[i] != nullptr) at.grids[ctx.net.model.ops(i).outputs(0)] = q->activations[i]->qparams();
    }
  }
  return ctx;
}

namespace {

// Mean cross-entropy (summed, to be divided later) and correct count of a batch of logits.
void ScoreLogits(const float* logits, int64_t batch, int64_t classes, const int32_t* labels, double* loss_sum,
                 int64_t* correct) {
  for (int64_t i = 0; i < batch; ++i) {
    const float* row = logits + i * classes;
    int64_t arg = 0;
    for (int64_t c = 1; c < classes; ++c) {
      if (row[c] > row[arg]) arg = c;
    }
    double sum = 0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(row[c]) - row[arg]);
    *loss_sum += std::log(sum) - (static_cast<double>(row[labels[i]]) - row[arg]);
    *correct += arg == labels[i];
  }
}

}  // namespace

absl::Status EvaluateChanges(const SensitivityContext& ctx, int bits, BaseState base,
                             const std::vector<LayerChange>& changes, Score* base_score, std::vector<Score>* scores) {
  auto found = ctx.at_bits.find(bits);
  if (found == ctx.at_bits.end())
    return absl::InternalError(absl::StrCat("analysis: no conversion at ", bits, " bits"));
  const QuantizedAtBits& qb = found->second;
  const backends::QuantizedModel& m = ctx.net.model;
  backends::QuantizedModel work = m;
  auto set_weights = [&](int k, bool quantized) {
    const ptq::WeightedLayer& w = ctx.net.weighted[k];
    auto* dst = work.mutable_tensors(w.weight_tensor)->mutable_float_data();
    const float* src = quantized ? qb.weights[k].data() : m.tensors(w.weight_tensor).float_data().data();
    std::copy(src, src + dst->size(), dst->mutable_data());
  };
  if (base.weights) {
    for (size_t k = 0; k < ctx.net.weighted.size(); ++k) set_weights(static_cast<int>(k), true);
  }
  std::vector<const QParams*> grid_of_op(m.ops_size(), nullptr);
  for (int i = 0; i < m.ops_size(); ++i) {
    auto g = qb.grids.find(m.ops(i).outputs(0));
    if (g != qb.grids.end()) grid_of_op[i] = &g->second;
  }
  // Latest layers first: each change re-runs the ops from its layer on, so the tensors
  // before it still hold the base state's values.
  std::vector<size_t> order(changes.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return ctx.net.weighted[changes[a].layer].index > ctx.net.weighted[changes[b].layer].index;
  });
  const int input = backends::InputTensor(m), output = backends::OutputTensor(m);
  int64_t per = 1;
  for (int64_t d : ctx.net.nn_input_shape) per *= d;
  int changed_op = -1;
  bool changed_output = false;
  backends::floatk::RunOptions run;
  run.after = [&](int op, float* data, int64_t count) {
    const bool quantize = op == changed_op ? changed_output : base.outputs;
    if (quantize && grid_of_op[op] != nullptr) ptq::FakeQuantizeOnGrid(*grid_of_op[op], data, count);
    return absl::OkStatus();
  };
  std::vector<double> loss(changes.size(), 0.0);
  std::vector<int64_t> correct(changes.size(), 0);
  double base_loss = 0;
  int64_t base_correct = 0;
  std::vector<std::vector<float>> values(m.tensors_size());
  const QParams* input_grid = nullptr;
  if (auto g = qb.grids.find(input); g != qb.grids.end()) input_grid = &g->second;
  for (int64_t start = 0; start < ctx.images; start += ctx.batch_size) {
    const int64_t b = std::min(ctx.batch_size, ctx.images - start);
    values[input].assign(ctx.nhwc.begin() + start * per, ctx.nhwc.begin() + (start + b) * per);
    if (base.outputs && input_grid != nullptr) ptq::FakeQuantizeOnGrid(*input_grid, values[input].data(), b * per);
    changed_op = -1;
    run.first_op = 0;
    RETURN_IF_ERROR(backends::floatk::RunGraph(work, b, &values, run));
    const int64_t classes = static_cast<int64_t>(values[output].size()) / b;
    ScoreLogits(values[output].data(), b, classes, ctx.labels.data() + start, &base_loss, &base_correct);
    for (size_t i : order) {
      const LayerChange& c = changes[i];
      set_weights(c.layer, c.quantize_weights);
      changed_op = ctx.net.weighted[c.layer].index;
      changed_output = c.quantize_output;
      run.first_op = changed_op;
      RETURN_IF_ERROR(backends::floatk::RunGraph(work, b, &values, run));
      ScoreLogits(values[output].data(), b, classes, ctx.labels.data() + start, &loss[i], &correct[i]);
      set_weights(c.layer, base.weights);
    }
  }
  const double n = static_cast<double>(ctx.images);
  *base_score = Score{base_loss / n, base_correct / n};
  scores->resize(changes.size());
  for (size_t i = 0; i < changes.size(); ++i) (*scores)[i] = Score{loss[i] / n, correct[i] / n};
  return absl::OkStatus();
}

std::vector<Target> ReadTargets(ParamReader& p) {
  const std::vector<std::string> names =
      p.StringList("targets", {"weights", "activations", "both"},
                   "what of the layer is quantized per measurement: weights, activations (its output), both");
  std::vector<Target> out;
  for (const std::string& n : names) {
    if (n == "weights") {
      out.push_back(Target::kWeights);
    } else if (n == "activations") {
      out.push_back(Target::kActivations);
    } else if (n == "both") {
      out.push_back(Target::kBoth);
    } else {
      p.Fail("targets", "'" + n + "' is not one of weights, activations, both");
    }
  }
  if (names.empty()) p.Fail("targets", "lists no target");
  return out;
}

std::string TargetedMetric::Describe() const {
  std::vector<std::string> names;
  for (Target t : targets_) names.push_back(TargetName(t));
  return absl::StrCat(name_, " (", absl::StrJoin(names, ", "), ")");
}

bool TargetedMetric::Covers(Target t) const { return std::find(targets_.begin(), targets_.end(), t) != targets_.end(); }

absl::StatusOr<std::vector<std::unique_ptr<SensitivityMetric>>> ReadMetrics(ParamReader& analysis) {
  YAML::Node list = analysis.Node("metrics",
                                  "sensitivity metrics: [one_layer, all_but_one, sqnr, hessian_trace] or "
                                  "{name: ..., params}");
  if (!list.IsDefined() || list.IsNull()) {
    list = YAML::Node(YAML::NodeType::Sequence);
    for (const char* m : {"one_layer", "sqnr"}) list.push_back(m);
  }
  if (list.IsSequence() && list.size() == 0) {
    analysis.Fail("metrics", "lists no metric");
    return analysis.status();
  }
  return Registry<SensitivityMetric>::Get().CreateList(analysis, list, "metrics", "sensitivity metric names");
}

double SpearmanCorrelation(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  if (n < 2 || b.size() != n) return std::numeric_limits<double>::quiet_NaN();
  auto ranks = [n](const std::vector<double>& v) {
    std::vector<size_t> idx(n);
    std::iota(idx.begin(), idx.end(), 0);
    std::sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] < v[y]; });
    std::vector<double> r(n);
    for (size_t i = 0; i < n;) {
      size_t j = i;
      while (j + 1 < n && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * static_cast<double>(i + j);
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double mean = 0.5 * static_cast<double>(n - 1);
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i) {
    sab += (ra[i] - mean) * (rb[i] - mean);
    saa += (ra[i] - mean) * (ra[i] - mean);
    sbb += (rb[i] - mean) * (rb[i] - mean);
  }
  if (saa == 0 || sbb == 0) return std::numeric_limits<double>::quiet_NaN();
  return sab / std::sqrt(saa * sbb);
}

double SqnrDb(const float* x, const float* y, int64_t n) {
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < n; ++i) {
    signal += static_cast<double>(x[i]) * x[i];
    const double d = static_cast<double>(x[i]) - y[i];
    noise += d * d;
  }
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace quant::analysis
