#include "quant/ptq/ptq_method.h"

#include <algorithm>

#include "quant/core/status_macros.h"

namespace quant::ptq {

double Top1Accuracy(const std::vector<float>& logits, int64_t n, const std::vector<int32_t>& labels) {
  if (n == 0) return 0.0;
  const int64_t classes = static_cast<int64_t>(logits.size()) / n;
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits.data() + i * classes;
    const int64_t best = std::max_element(row, row + classes) - row;
    correct += best == labels[i];
  }
  return static_cast<double>(correct) / static_cast<double>(n);
}

absl::StatusOr<double> FloatNetAccuracy(const backends::QuantizedModel& net, const DataSplit& split,
                                        const std::vector<int64_t>& chw, int64_t batch_size, const Hook& before) {
  int64_t per = 1;
  for (int64_t d : chw) per *= d;
  int64_t correct = 0;
  std::vector<float> logits;
  for (int64_t start = 0; start < split.size(); start += batch_size) {
    const int64_t b = std::min(batch_size, split.size() - start);
    std::vector<float> x = split.Nhwc(start, b);
    RETURN_IF_ERROR(FloatForward(net, x.data(), b, &logits, before));
    std::vector<int32_t> labels(split.labels.begin() + start, split.labels.begin() + start + b);
    correct += static_cast<int64_t>(Top1Accuracy(logits, b, labels) * b + 0.5);
  }
  return split.size() ? static_cast<double>(correct) / split.size() : 0.0;
}

std::vector<float> CalibrationImages(const DataSplit& train, int64_t n, uint64_t seed) {
  n = std::min(n, train.size());
  BatchIterator it(train, n, /*shuffle=*/true, seed ^ 0x9e3779b97f4a7c15ull);
  it.StartEpoch(0);
  Tensor images;
  std::vector<int32_t> labels;
  it.Next(&images, &labels);
  return ToNhwc(images);
}

}  // namespace quant::ptq
