// SGD with momentum, dampening, Nesterov and (L2) weight decay, as
// torch.optim.SGD: g = grad + wd * p; buf = g on the first step, else
// buf = momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf
// : buf; p -= lr * g.
#ifndef QUANT_NN_SGD_H_
#define QUANT_NN_SGD_H_

#include <memory>

#include "absl/status/statusor.h"
#include "quant/core/params.h"
#include "quant/nn/optimizer.h"

namespace quant::nn {

class Sgd : public Optimizer {
 public:
  struct Options {
    double lr = 0.01;
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
  };
  explicit Sgd(Options o) : o_(o) {}
  static absl::StatusOr<std::unique_ptr<Optimizer>> Create(ParamReader& p);

  void Attach(std::vector<Parameter*> params) override;
  void Step(double lr) override;
  double lr() const override { return o_.lr; }
  std::string Describe() const override;

 private:
  Options o_;
  std::vector<Parameter*> params_;
  std::vector<Tensor> momentum_;
  bool first_step_ = true;
};

}  // namespace quant::nn

#endif  // QUANT_NN_SGD_H_
