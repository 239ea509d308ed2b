#include "quant/ptq/adaround_pass.h"

#include <Eigen/Dense>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/quantizers/tensor_role.h"

namespace quant::ptq {
namespace {

using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ArrayF = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr double kZeta = kAdaroundZeta, kGamma = kAdaroundGamma;

// f and its derivative mask, for the layer's fused activation (0 none, 1 ReLU, 2 ReLU6).
void Activate(int activation, MatrixF* p, MatrixF* mask) {
  if (activation == 0) {
    if (mask) mask->setOnes(p->rows(), p->cols());
    return;
  }
  const float hi = activation == 2 ? 6.0f : std::numeric_limits<float>::infinity();
  if (mask) *mask = ((p->array() > 0.0f) && (p->array() < hi)).cast<float>();
  *p = p->cwiseMax(0.0f).cwiseMin(hi);
}

}  // namespace

double AdaroundInitialV(double rest) {
  // h(V) = rest: V = -log((zeta - gamma) / (rest - gamma) - 1).
  rest = std::min(std::max(rest, 1e-4), 1 - 1e-4);
  return -std::log((kZeta - kGamma) / (rest - kGamma) - 1.0);
}

AdaroundResult AdaroundLayer(const std::vector<float>& w, int64_t rows, int64_t k, const std::vector<float>& bias,
                             const std::vector<double>& scale, const std::vector<int32_t>& zero_point, int64_t qmin,
                             int64_t qmax, const std::vector<float>& x_in, const std::vector<float>& t_in, int64_t n,
                             int activation, const AdaroundOptions& o) {
  Eigen::Map<const MatrixF> x(x_in.data(), n, k), t(t_in.data(), n, rows);
  const Eigen::Map<const Eigen::RowVectorXf> b(bias.data(), rows);
  // floor(W / s) and the code range relative to it, per row.
  MatrixF base(rows, k), s(rows, 1), lo(rows, 1), hi(rows, 1);
  ArrayF v(rows, k);
  for (int64_t r = 0; r < rows; ++r) {
    s(r, 0) = static_cast<float>(scale[r]);
    lo(r, 0) = static_cast<float>(qmin - zero_point[r]);
    hi(r, 0) = static_cast<float>(qmax - zero_point[r]);
    for (int64_t j = 0; j < k; ++j) {
      const double q = static_cast<double>(w[r * k + j]) / scale[r];
      base(r, j) = static_cast<float>(std::floor(q));
      v(r, j) = static_cast<float>(AdaroundInitialV(q - std::floor(q)));
    }
  }
  auto weights = [&](const MatrixF& h) {  // W~ = s * clip(base + h, lo, hi)
    MatrixF q = base + h;
    for (int64_t r = 0; r < rows; ++r) q.row(r) = q.row(r).cwiseMax(lo(r, 0)).cwiseMin(hi(r, 0)) * s(r, 0);
    return q;
  };
  auto loss_of = [&](const MatrixF& wq) {  // sum over outputs, mean over rows
    MatrixF p = (x * wq.transpose()).rowwise() + b;
    Activate(activation, &p, nullptr);
    return static_cast<double>((p - t).squaredNorm()) / static_cast<double>(n);
  };
  AdaroundResult result;
  {
    MatrixF nearest(rows, k);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < k; ++j)
        nearest(r, j) = std::nearbyint(w[r * k + j] / scale[r]) - base(r, j);  // 0 or 1 (or the clip)
    result.loss_nearest = loss_of(weights(nearest));
  }
  // Adam on V; everything element-wise is vectorised (row-major arrays, exp/log, no pow).
  ArrayF m1 = ArrayF::Zero(rows, k), m2 = ArrayF::Zero(rows, k);
  const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<int64_t> pick(0, n - 1);
  const int64_t batch = std::min<int64_t>(o.batch_rows, n);
  MatrixF xb(batch, k), tb(batch, rows), mask;
  const int warm = static_cast<int>(o.warm_start * o.iterations);
  const float stretch = static_cast<float>(kZeta - kGamma), shift = static_cast<float>(kGamma);
  const ArrayF s_b = s.replicate(1, k).array(), lo_b = lo.replicate(1, k).array(), hi_b = hi.replicate(1, k).array();
  const ArrayF base_a = base.array();
  ArrayF sig(rows, k), raw(rows, k), h(rows, k), q(rows, k), g(rows, k);
  for (int it = 0; it < o.iterations; ++it) {
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t row = pick(rng);
      xb.row(i) = x.row(row);
      tb.row(i) = t.row(row);
    }
    sig = 1.0f / (1.0f + (-v).exp());
    raw = sig * stretch + shift;
    h = raw.cwiseMax(0.0f).cwiseMin(1.0f);
    q = base_a + h;
    const MatrixF wq = (q.cwiseMax(lo_b).cwiseMin(hi_b) * s_b).matrix();
    MatrixF p = (xb * wq.transpose()).rowwise() + b;
    Activate(activation, &p, &mask);
    const MatrixF dp = (2.0f / static_cast<float>(batch)) * ((p - tb).array() * mask.array()).matrix();
    const MatrixF dw = dp.transpose() * xb;  // [rows, k]
    // dW~/dh = s inside the code range; dh/dV = (zeta - gamma) sig (1 - sig) inside [0, 1].
    g = dw.array() * s_b * ((q >= lo_b) && (q <= hi_b)).cast<float>();
    if (it >= warm) {
      // lambda * d/dh sum(1 - |2h - 1|^beta); beta falls linearly from beta_start to beta_end.
      const double frac = o.iterations > warm ? static_cast<double>(it - warm) / (o.iterations - warm) : 1.0;
      const float beta = static_cast<float>(o.beta_end + (o.beta_start - o.beta_end) * std::max(0.0, 1.0 - frac));
      const ArrayF c = 2.0f * h - 1.0f;
      // |c|^(beta - 1) as exp((beta - 1) log |c|) (vectorised; log 0 = -inf gives 0).
      g -= static_cast<float>(o.lambda) * 2.0f * beta * ((beta - 1.0f) * c.abs().log()).exp() * c.sign();
    }
    g *= stretch * sig * (1.0f - sig) * ((raw > 0.0f) && (raw < 1.0f)).cast<float>();
    m1 = b1 * m1 + (1 - b1) * g;
    m2 = b2 * m2 + (1 - b2) * g.square();
    const float c1 = 1 - std::pow(b1, static_cast<float>(it + 1)), c2 = 1 - std::pow(b2, static_cast<float>(it + 1));
    v -= static_cast<float>(o.lr) * (m1 / c1) / ((m2 / c2).sqrt() + eps);
  }
  sig = 1.0f / (1.0f + (-v).exp());
  h = (sig * stretch + shift).cwiseMax(0.0f).cwiseMin(1.0f);
  result.binary = static_cast<double>(((h < 1e-3f) || (h > 1.0f - 1e-3f)).count()) / (rows * k);
  const MatrixF hard = (h >= 0.5f).cast<float>().matrix();
  const MatrixF wq = weights(hard);
  result.loss_adaround = loss_of(wq);
  result.weights.assign(wq.data(), wq.data() + rows * k);
  return result;
}

absl::StatusOr<std::unique_ptr<PtqPass>> AdaroundPass::Create(ParamReader& p) {
  AdaroundOptions o;
  o.iterations =
      static_cast<int>(p.IntInRange("iterations", 10000, 1, 10000000, "Adam steps per layer (the paper: 10000)"));
  o.batch_images = static_cast<int>(p.IntInRange("batch_images", 32, 1, 1 << 20, "images per step (the paper: 32)"));
  o.batch_rows = static_cast<int>(p.IntInRange("batch_rows", 512, 1, 1 << 20, "at most this many input rows per step"));
  o.max_rows =
      p.IntInRange("max_rows", 16384, 1, int64_t{1} << 26, "input rows kept per layer from the calibration set");
  o.lr = p.DoubleInRange("lr", 1e-3, 1e-8, 10.0, "Adam learning rate");
  o.lambda = p.DoubleInRange("lambda", 0.01, 0.0, 1e6, "weight of the rounding regulariser");
  o.warm_start = p.DoubleInRange("warm_start", 0.2, 0.0, 1.0, "share of the iterations without the regulariser");
  o.act_quant = p.Bool("act_quant", false,
                       "reconstruct on the inputs of the net with quantized activations (grids pinned for the "
                       "conversion) instead of float ones");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new AdaroundPass(o));
}

std::string AdaroundPass::Describe() const {
  return absl::StrCat("adaround (Nagel et al. 2020): ", o_.iterations, " Adam steps per layer, batches of ",
                      o_.batch_images, " images (at most ", o_.batch_rows, " rows), lambda ", o_.lambda);
}

absl::Status AdaroundPass::Run(PtqPassContext& ctx) {
  if (ctx.calibration == nullptr || ctx.images <= 0) {
    return absl::FailedPreconditionError("adaround needs calibration images");
  }
  FloatNet& net = *ctx.net;
  const backends::QuantizedModel original = net.model;  // the float net: targets
  const uint64_t seed = o_.seed + ctx.seed * 1000003;   // seed 0: the same draws as before the run seed counted
  int64_t per_image = 1;
  for (int64_t d : net.nn_input_shape) per_image *= d;
  std::vector<std::string> done, skipped;
  const auto start = std::chrono::steady_clock::now();
  std::map<int, QParams> grids;
  if (o_.act_quant) {
    ASSIGN_OR_RETURN(grids, CalibratedActivationGrids(ctx));
  }
  for (size_t layer = 0; layer < net.weighted.size(); ++layer) {
    const auto layer_start = std::chrono::steady_clock::now();
    WeightedLayer& w = net.weighted[layer];
    const backends::Op& op = net.model.ops(w.index);
    ASSIGN_OR_RETURN(std::optional<QParams> weight_grid, WeightGridOf(*ctx.quant, w, "adaround"));
    if (!weight_grid) {
      skipped.push_back(absl::StrCat(w.name, " (float weights)"));
      continue;
    }
    const QParams& grid = *weight_grid;
    const int64_t O = OutputChannels(w), K = ValuesPerOutputChannel(w);
    const int64_t groups = op.has_conv2d() ? op.conv2d().groups() : 1, per_group = O / groups;
    const int activation = op.fused_activation() == backends::RELU    ? 1
                           : op.fused_activation() == backends::RELU6 ? 2
                                                                      : 0;
    // The same rows of the float net (targets) and of the net rounded so far (inputs).
    int64_t total = 0;
    RETURN_IF_ERROR(ForEachInputRows(original, w, ctx.calibration, ctx.images, per_image,
                                     [&](int64_t g, const float*, int64_t count) {
                                       if (g == 0) total += count;
                                     }));
    const double keep = std::min(1.0, static_cast<double>(o_.max_rows) / std::max<int64_t>(1, total));
    auto sample = [&](const backends::QuantizedModel& model, const std::map<int, QParams>* quantize,
                      std::vector<std::vector<float>>* out) -> absl::Status {
      out->assign(groups, {});
      std::mt19937_64 rng(seed + layer);
      std::vector<char> chosen;
      return ForEachInputRows(
          model, w, ctx.calibration, ctx.images, per_image,
          [&](int64_t g, const float* rows, int64_t count) {
            if (g == 0) {  // one choice of positions for every group of the batch
              chosen.resize(count);
              std::uniform_real_distribution<double> u(0, 1);
              for (int64_t i = 0; i < count; ++i) chosen[i] = u(rng) < keep;
            }
            for (int64_t i = 0; i < count; ++i) {
              if (chosen[i]) (*out)[g].insert((*out)[g].end(), rows + i * K, rows + (i + 1) * K);
            }
          },
          quantize);
    };
    std::vector<std::vector<float>> x_fp, x_q;
    RETURN_IF_ERROR(sample(original, nullptr, &x_fp));
    RETURN_IF_ERROR(sample(net.model, o_.act_quant ? &grids : nullptr, &x_q));
    backends::Tensor* wt = net.model.mutable_tensors(w.weight_tensor);
    const std::vector<float> float_w(original.tensors(w.weight_tensor).float_data().begin(),
                                     original.tensors(w.weight_tensor).float_data().end());
    std::vector<float> rounded(O * K);
    double loss_nearest = 0, loss_ada = 0, binary = 0;
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t n = static_cast<int64_t>(x_fp[g].size()) / K;
      std::vector<float> wg(float_w.begin() + g * per_group * K, float_w.begin() + (g + 1) * per_group * K);
      std::vector<float> bg(w.bias.begin() + g * per_group, w.bias.begin() + (g + 1) * per_group);
      std::vector<double> sg(per_group);
      std::vector<int32_t> zg(per_group);
      for (int64_t r = 0; r < per_group; ++r) {
        const int64_t c = grid.size() == 1 ? 0 : g * per_group + r;
        sg[r] = grid.scale[c];
        zg[r] = grid.zero_point[c];
      }
      // Targets: the float layer on the float net's inputs, after its activation.
      Eigen::Map<const MatrixF> xf(x_fp[g].data(), n, K);
      Eigen::Map<const MatrixF> wf(wg.data(), per_group, K);
      MatrixF tg = (xf * wf.transpose()).rowwise() + Eigen::Map<const Eigen::RowVectorXf>(bg.data(), per_group);
      Activate(activation, &tg, nullptr);
      std::vector<float> t(tg.data(), tg.data() + n * per_group);
      AdaroundOptions o = o_;
      o.seed = seed + layer * 1000 + g;
      const int64_t rows_per_image = std::max<int64_t>(1, total / ctx.images);
      o.batch_rows = static_cast<int>(std::min<int64_t>(o_.batch_rows, o_.batch_images * rows_per_image));
      const AdaroundResult r =
          AdaroundLayer(wg, per_group, K, bg, sg, zg, grid.quant_min, grid.quant_max, x_q[g], t, n, activation, o);
      loss_nearest += r.loss_nearest;
      loss_ada += r.loss_adaround;
      binary += r.binary / groups;
      std::copy(r.weights.begin(), r.weights.end(), rounded.begin() + g * per_group * K);
    }
    for (size_t j = 0; j < w.perm.size(); ++j) w.torch_weight.data()[w.perm[j]] = rounded[j];
    (void)wt;
    SyncWeightedLayer(&net, static_cast<int>(layer));
    w.weight_grid = grid;
    done.push_back(
        absl::StrFormat("%s (reconstruction loss nearest %.4g -> adaround %.4g, %.1f %% of h binary, %lld "
                        "rows, %.1f s)",
                        w.name, loss_nearest, loss_ada, 100 * binary, static_cast<long long>(x_fp[0].size() / K),
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - layer_start).count()));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (o_.act_quant) net.activation_grid = grids;  // the conversion uses the grids the inputs were quantized on
  ctx.notes->push_back(absl::StrFormat("adaround: %zu layers on %lld images (inputs with %s activations) in %.1f s: %s",
                                       done.size(), static_cast<long long>(ctx.images),
                                       o_.act_quant ? "quantized" : "float", seconds, absl::StrJoin(done, ", ")));
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat("adaround: skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(PtqPass, "adaround", AdaroundPass::Create,
                  "learned up/down rounding of each layer's weights on the calibration data (Nagel et al. 2020)");

}  // namespace quant::ptq
