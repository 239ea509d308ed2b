#include "quant/ptq/gptq_pass.h"

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "quant/core/registry.h"
#include "quant/core/status_macros.h"
#include "quant/quantizers/tensor_role.h"

namespace quant::ptq {
namespace {

using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// tr((A - B) H (A - B)^T) for row-major [rows, k] matrices.
double WeightedError(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t k,
                     const MatrixD& h) {
  MatrixD d(rows, k);
  for (int64_t i = 0; i < rows * k; ++i) d.data()[i] = static_cast<double>(a[i]) - b[i];
  return (d * h).cwiseProduct(d).sum();
}

}  // namespace

std::vector<float> GptqQuantize(const std::vector<float>& w_in, int64_t rows, int64_t k, std::vector<double>* h_in,
                                const std::function<float(float, int64_t)>& quantize, int block_size, double damp,
                                int* dead_out) {
  Eigen::Map<MatrixD> h(h_in->data(), k, k);
  MatrixD w(rows, k);
  for (int64_t i = 0; i < rows * k; ++i) w.data()[i] = w_in[i];
  int dead = 0;
  for (int64_t i = 0; i < k; ++i) {
    if (h(i, i) == 0) {  // an input that never fires: its weights do not matter
      h(i, i) = 1;
      w.col(i).setZero();
      ++dead;
    }
  }
  if (dead_out) *dead_out = dead;
  const double lambda = damp * h.diagonal().mean();
  h.diagonal().array() += lambda;
  // U = the upper Cholesky factor of H^-1.
  const MatrixD hinv = h.llt().solve(MatrixD::Identity(k, k));
  const MatrixD u = hinv.llt().matrixU();
  MatrixD q(rows, k);
  for (int64_t i1 = 0; i1 < k; i1 += block_size) {
    const int64_t i2 = std::min<int64_t>(i1 + block_size, k), count = i2 - i1;
    MatrixD err(rows, count);
    for (int64_t i = i1; i < i2; ++i) {
      const double d = u(i, i);
      for (int64_t r = 0; r < rows; ++r) {
        const double wq = quantize(static_cast<float>(w(r, i)), r);
        q(r, i) = wq;
        err(r, i - i1) = (w(r, i) - wq) / d;
      }
      // The rest of the block, now: W[:, i+1:i2] -= e U[i, i+1:i2].
      if (i + 1 < i2) w.block(0, i + 1, rows, i2 - i - 1).noalias() -= err.col(i - i1) * u.block(i, i + 1, 1, i2 - i - 1);
    }
    // The lazy batch update of the columns after the block.
    if (i2 < k) w.block(0, i2, rows, k - i2).noalias() -= err * u.block(i1, i2, count, k - i2);
  }
  std::vector<float> out(rows * k);
  for (int64_t i = 0; i < rows * k; ++i) out[i] = static_cast<float>(q.data()[i]);
  return out;
}

absl::StatusOr<std::unique_ptr<PtqPass>> GptqPass::Create(ParamReader& p) {
  Options o;
  o.block_size = static_cast<int>(p.IntInRange("block_size", 128, 1, 1 << 16, "columns per lazy batch update"));
  o.damp = p.DoubleInRange("damp", 0.01, 0.0, 10.0, "dampening: lambda = damp * mean(diag(H))");
  RETURN_IF_ERROR(p.status());
  return std::unique_ptr<PtqPass>(new GptqPass(o));
}

std::string GptqPass::Describe() const {
  return absl::StrCat("gptq (Frantar et al. 2022): block ", o_.block_size, ", damp ", o_.damp);
}

absl::Status GptqPass::Run(PtqPassContext& ctx) {
  if (ctx.calibration == nullptr || ctx.images <= 0) {
    return absl::FailedPreconditionError("gptq needs calibration images (the layers' inputs define H)");
  }
  FloatNet& net = *ctx.net;
  const backends::QuantizedModel& m = net.model;
  int64_t per_image = 1;
  for (int64_t d : net.nn_input_shape) per_image *= d;
  std::vector<std::string> done, skipped;
  const auto start = std::chrono::steady_clock::now();
  for (size_t layer = 0; layer < net.weighted.size(); ++layer) {
    WeightedLayer& w = net.weighted[layer];
    const backends::Op& op = m.ops(w.index);
    ASSIGN_OR_RETURN(std::optional<QParams> weight_grid, WeightGridOf(*ctx.quant, w, "gptq"));
    if (!weight_grid) {
      skipped.push_back(absl::StrCat(w.name, " (float weights)"));
      continue;
    }
    const QParams& grid = *weight_grid;
    // W [O, K] in the lowered layout (K = kh * kw * C/groups, OHWI; or I).
    const int64_t O = OutputChannels(w), K = ValuesPerOutputChannel(w);
    const int64_t groups = op.has_conv2d() ? op.conv2d().groups() : 1, per_group = O / groups;
    // H per group from the inputs of this layer (earlier layers already quantized).
    std::vector<MatrixD> h(groups, MatrixD::Zero(K, K));
    int64_t samples = 0;
    RETURN_IF_ERROR(ForEachInputRows(m, w, ctx.calibration, ctx.images, per_image,
                                     [&](int64_t g, const float* rows, int64_t count) {
                                       Eigen::Map<const MatrixF> x(rows, count, K);
                                       h[g].noalias() += (x.transpose() * x).cast<double>();
                                       if (g == 0) samples += count;
                                     }));
    if (samples == 0) return absl::InternalError(absl::StrCat("gptq: layer '", w.name, "' saw no input"));
    backends::Tensor* wt = net.model.mutable_tensors(w.weight_tensor);
    std::vector<float> model_w(wt->float_data().begin(), wt->float_data().end());  // [O, K] lowered
    auto quant_value = [&](float v, int64_t row) {
      const int64_t c = grid.size() == 1 ? 0 : row;
      const double code = std::min<double>(std::max<double>(std::nearbyint(v / grid.scale[c]) + grid.zero_point[c],
                                                            grid.quant_min),
                                           grid.quant_max);
      return static_cast<float>((code - grid.zero_point[c]) * grid.scale[c]);
    };
    double err_nearest = 0, err_gptq = 0;
    int dead_total = 0;
    std::vector<float> quantized(O * K);
    for (int64_t g = 0; g < groups; ++g) {
      h[g] *= 2.0 / static_cast<double>(samples);
      const MatrixD h_plain = h[g];
      std::vector<float> wg(model_w.begin() + g * per_group * K, model_w.begin() + (g + 1) * per_group * K);
      std::vector<double> hg(h[g].data(), h[g].data() + K * K);
      int dead = 0;
      const std::vector<float> qg = GptqQuantize(
          wg, per_group, K, &hg, [&](float v, int64_t r) { return quant_value(v, g * per_group + r); }, o_.block_size,
          o_.damp, &dead);
      dead_total += dead;
      std::vector<float> nearest(wg.size());
      for (int64_t r = 0; r < per_group; ++r)
        for (int64_t j = 0; j < K; ++j) nearest[r * K + j] = quant_value(wg[r * K + j], g * per_group + r);
      err_nearest += WeightedError(wg, nearest, per_group, K, h_plain);
      err_gptq += WeightedError(wg, qg, per_group, K, h_plain);
      std::copy(qg.begin(), qg.end(), quantized.begin() + g * per_group * K);
    }
    // Back into both layouts; the conversion reads the codes off `grid`.
    for (size_t j = 0; j < w.perm.size(); ++j) w.torch_weight.data()[w.perm[j]] = quantized[j];
    SyncWeightedLayer(&net, static_cast<int>(layer));
    w.weight_grid = grid;
    done.push_back(absl::StrFormat("%s (H-weighted error nearest %.4g -> gptq %.4g%s)", w.name, err_nearest, err_gptq,
                                   dead_total ? absl::StrCat(", ", dead_total, " dead inputs") : ""));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ctx.notes->push_back(absl::StrFormat("gptq: %zu layers on %lld images in %.2f s: %s", done.size(),
                                       static_cast<long long>(ctx.images), seconds, absl::StrJoin(done, ", ")));
  if (!skipped.empty()) ctx.notes->push_back(absl::StrCat("gptq: skipped: ", absl::StrJoin(skipped, "; ")));
  return absl::OkStatus();
}

QUANTLAB_REGISTER(PtqPass, "gptq", GptqPass::Create,
                  "column-by-column Hessian-based weight quantization with lazy batch updates (Frantar et al. 2022)");

}  // namespace quant::ptq
