// Models `cnn` and `cnn_bn`: Conv(C,16,3,pad 1)-[BatchNorm2d]-ReLU-MaxPool2 ->
// Conv(16,32,3,pad 1)-[BatchNorm2d]-ReLU-MaxPool2 -> Flatten -> Linear(., 128)-ReLU ->
// Linear(128, classes). Layers conv1 [bn1] relu1 pool1 conv2 [bn2] relu2 pool2
// flatten1 fc1 relu3 fc2. `channels` and `hidden` change the widths. One
// class, two registrations: the variants differ only in the BatchNorm layers.
#ifndef QUANT_NN_CNN_H_
#define QUANT_NN_CNN_H_

#include <memory>

#include "quant/core/params.h"
#include "quant/nn/model.h"

namespace quant::nn {

class Cnn : public Model {
 public:
  Cnn(bool batch_norm, std::vector<int64_t> channels, int64_t hidden)
      : batch_norm_(batch_norm), channels_(std::move(channels)), hidden_(hidden) {}
  static absl::StatusOr<std::unique_ptr<Model>> CreateCnn(ParamReader& p);
  static absl::StatusOr<std::unique_ptr<Model>> CreateCnnBn(ParamReader& p);
  std::string name() const override { return batch_norm_ ? "cnn_bn" : "cnn"; }

 protected:
  absl::StatusOr<GraphSpec> MakeGraph(const Shape& sample_shape, int num_classes) override;

 private:
  static absl::StatusOr<std::unique_ptr<Model>> Create(ParamReader& p, bool batch_norm);
  bool batch_norm_;
  std::vector<int64_t> channels_;
  int64_t hidden_;
};

}  // namespace quant::nn

#endif  // QUANT_NN_CNN_H_
