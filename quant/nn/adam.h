// Adam and AdamW as torch.optim.Adam / AdamW (amsgrad off):
//   Adam:  g = grad + wd * p            AdamW: p *= 1 - lr * wd; g = grad
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  t += 1
//   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
#ifndef QUANT_NN_ADAM_H_
#define QUANT_NN_ADAM_H_

#include <memory>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/optimizer.h"

namespace quant::nn {

class Adam : public Optimizer {
 public:
  struct Options {
    double lr = 1e-3;
    double beta1 = 0.9;
    double beta2 = 0.999;
    double eps = 1e-8;
    double weight_decay = 0.0;
    bool decoupled = false;  // AdamW
  };
  explicit Adam(Options o) : o_(o) {}
  static absl::StatusOr<std::unique_ptr<Optimizer>> CreateAdam(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Optimizer>> CreateAdamW(ParamReader& p);

  void Attach(std::vector<Parameter*> params) override;
  void Step(double lr) override;
  double lr() const override { return o_.lr; }
  std::string Describe() const override;

 private:
  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(ParamReader& p, bool decoupled);

  Options o_;
  std::vector<Parameter*> params_;
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

}  // namespace quant::nn

#endif  // QUANT_NN_ADAM_H_
