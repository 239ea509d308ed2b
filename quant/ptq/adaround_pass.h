// PTQ pass `adaround` (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
// Quantization"): each conv/linear's weights rounded up or down as learned on the
// calibration data instead of to nearest.
//
//   W~ = s * (clip(floor(W / s) + h(V) + z, n, p) - z)                       (eq. 22)
//   h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1), zeta = 1.1, gamma = -0.1
//                                                                (rectified sigmoid, eq. 23)
//   min_V  || f(W x_fp + b) - f(W~ x~ + b) ||^2  +  lambda sum (1 - |2 h(V) - 1|^beta)
//                                                                (eq. 24-25, asymmetric)
// with f the layer's fused activation (ReLU/ReLU6/none), x_fp its input in the float net,
// x~ its input in the net whose earlier layers this pass already rounded (activations in
// float, or with `act_quant: true` quantized on the grids the conversion would calibrate, which
// are then pinned for it: FloatNet::activation_grid), beta annealed linearly from 20 to 2 after a warm start of 20 % of
// the iterations without the regulariser, lambda = 0.01, Adam (lr 1e-3), 10000 iterations: the paper's and AIMET's
// defaults. V starts where h(V) is the fractional part of W / s. The loss sums over output channels and averages over a
// minibatch of the rows of `batch_images` images (the paper's 32), at most `batch_rows` rows (im2col columns of a conv,
// samples of a linear), drawn from up to `max_rows` rows of the calibration set. The grid is the layer's weight
// quantizer of the `quant:` section on the float weight; the learned codes go to the conversion as they are
// (WeightedLayer::weight_grid). The notes give per layer the reconstruction loss of nearest rounding and of AdaRound,
// the share of h that ended binary and the time.
#ifndef QUANT_PTQ_ADAROUND_PASS_H_
#define QUANT_PTQ_ADAROUND_PASS_H_

#include <functional>

#include "quant/ptq/ptq_pass.h"

namespace quant::ptq {

// The rectified sigmoid h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1) (eq. 23), shared
// with the block reconstruction of brecq/qdrop.
inline constexpr double kAdaroundZeta = 1.1, kAdaroundGamma = -0.1;
// The V where h(V) equals `rest`, the fractional part of W / s (kept inside (0, 1) by 1e-4):
// AdaRound starts from nearest-like soft values.
double AdaroundInitialV(double rest);

struct AdaroundOptions {
  int iterations = 10000;
  int batch_images = 32;  // the paper's batch: its rows (one per image for a linear, H*W for a conv)
  int batch_rows = 512;   // ... at most this many rows per step (sampled positions)
  int64_t max_rows = 16384;
  double lr = 1e-3;
  double lambda = 0.01;
  double warm_start = 0.2;
  double beta_start = 20, beta_end = 2;
  uint64_t seed = 0;
  // The inputs x~ from the net with its activations (and input) fake-quantized on the grids the
  // conversion would calibrate, instead of float; those grids are then pinned for the conversion.
  bool act_quant = false;
};

// One layer. w: [O, K] row-major; per output row r: its grid (scale, zero point, code
// range); x: [N, K] inputs (the partly rounded net's), t: [N, O] targets (float net,
// after the activation); activation: 0 none, 1 ReLU, 2 ReLU6. Returns W~ [O, K] with hard
// rounding and the reconstruction losses (nearest, adaround) on all N rows.
struct AdaroundResult {
  std::vector<float> weights;
  double loss_nearest = 0, loss_adaround = 0;
  double binary = 0;  // share of h(V) within 1e-3 of 0 or 1 before the final rounding
};
AdaroundResult AdaroundLayer(const std::vector<float>& w, int64_t rows, int64_t k, const std::vector<float>& bias,
                             const std::vector<double>& scale, const std::vector<int32_t>& zero_point, int64_t qmin,
                             int64_t qmax, const std::vector<float>& x, const std::vector<float>& t, int64_t n,
                             int activation, const AdaroundOptions& o);

class AdaroundPass : public PtqPass {
 public:
  explicit AdaroundPass(AdaroundOptions o) : o_(o) {}
  static absl::StatusOr<std::unique_ptr<PtqPass>> Create(ParamReader& p);
  std::string Describe() const override;
  absl::Status Run(PtqPassContext& ctx) override;

 private:
  AdaroundOptions o_;
};

}  // namespace quant::ptq

#endif  // QUANT_PTQ_ADAROUND_PASS_H_
