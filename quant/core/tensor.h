// A float32 tensor: a shape and contiguous row-major storage. Deliberately
// small: layers, quantizers and formats work on spans of its data.
#ifndef QUANT_CORE_TENSOR_H_
#define QUANT_CORE_TENSOR_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace quant {

class Tensor {
 public:
  Tensor() = default;
  // A tensor of the given shape, every element zero.
  explicit Tensor(std::vector<int64_t> shape);
  Tensor(std::vector<int64_t> shape, std::vector<float> values);  // CHECKs the size
  static Tensor Filled(std::vector<int64_t> shape, float value);

  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Size of dimension `axis`; a negative axis counts from the end.
  int64_t dim(int axis) const;
  int64_t numel() const { return static_cast<int64_t>(data_.size()); }
  bool empty() const { return data_.empty(); }

  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  absl::Span<float> values() { return absl::MakeSpan(data_); }
  absl::Span<const float> values() const { return absl::MakeConstSpan(data_); }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  // Changes the shape; the element count must stay the same (CHECKed).
  void Reshape(std::vector<int64_t> shape);
  // Changes shape and size; keeps capacity so steady-state reuse does not allocate.
  void Resize(std::vector<int64_t> shape);
  void Fill(float value);

  // "[2, 3]"
  std::string ShapeString() const;

 private:
  std::vector<int64_t> shape_;
  std::vector<float> data_;
};

int64_t NumElements(const std::vector<int64_t>& shape);
std::string ShapeToString(const std::vector<int64_t>& shape);

}  // namespace quant

#endif  // QUANT_CORE_TENSOR_H_
