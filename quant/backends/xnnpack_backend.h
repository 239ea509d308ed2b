// `xnnpack`: the integer operators of the Debian XNNPACK (2022-02 snapshot):
// fully_connected_nc_qs8/qu8, convolution2d_nhwc_qs8/qu8 and qc8 (per-channel
// int8 weights; a per-channel fully connected layer runs as a 1x1 qc8
// convolution, since this XNNPACK has no qc8 fully connected), max_pooling2d
// s8/u8, and convert_nc_f32_qs8/qu8 for the input. Operators are created once
// per model in Prepare and set up again only when the batch size changes.
//
// XNNPACK requantizes in its own way (the "fp32" scheme in this snapshot): the
// int32 accumulator is converted to float, multiplied by the float scale
// s_in*s_w/s_out computed in single precision at operator creation, and
// rounded to nearest-even, then offset and clamped. It never sees the
// QuantizedModel's fixed-point multipliers, so it can differ from `reference`
// by one output step where the two roundings disagree (see docs/backends.md).
#ifndef QUANT_BACKENDS_XNNPACK_BACKEND_H_
#define QUANT_BACKENDS_XNNPACK_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/backends/xnnpack_util.h"
#include "quant/core/params.h"

namespace quant::backends {

class XnnpackBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }

 protected:
  absl::Status PrepareImpl() override;
  absl::Status RunImpl(const float* input, int64_t batch, RunOutput* output) override;

 private:
  enum class Kind { kFullyConnected, kConv, kMaxPool, kFlatten };
  struct Step {
    Kind kind;
    xnn::Operator op;
    bool conv_api = false;  // a per-channel FC runs through the convolution API
    std::vector<uint8_t> out;  // int8/uint8 activations, padded
    // Flatten only: a clamp narrower than the dtype range (applied in C++).
    bool clamp = false;
    // A conv with few input channels runs as im2col + fully connected (see the .cc).
    bool im2col = false;
    int64_t pixels = 0;                   // OH*OW per image
    std::vector<uint8_t> padded;          // one padded image, borders = input zero point
    std::vector<uint8_t> patches;         // [batch*OH*OW][kh*kw*in_c]
  };
  void Im2col(const Conv2D& c, const Shape& in, const Shape& out, int64_t batch, const uint8_t* src, Step* st);
  absl::Status SetUp(int64_t batch, const float* input);

  xnn::Operator convert_;
  std::vector<Step> steps_;
  std::vector<uint8_t> input_q_;
  int64_t setup_batch_ = -1;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_XNNPACK_BACKEND_H_
