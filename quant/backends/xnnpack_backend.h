// `xnnpack`: the integer operators of the Debian XNNPACK (2022-02 snapshot) on the
// shared executor (int8/uint8 buffers): fully_connected_nc_qs8/qu8,
// convolution2d_nhwc_qs8/qu8 and qc8 (per-channel int8 weights; grouped and
// depthwise convs through `groups`; a per-channel fully connected layer runs as a
// 1x1 qc8 convolution, since this XNNPACK has no qc8 fully connected),
// max_pooling2d s8/u8, average_pooling2d qu8, global_average_pooling_nwc qs8/qu8,
// add_nd qs8/qu8, sigmoid/tanh qs8/qu8, and convert_nc_f32_qs8/qu8 for the input.
// This XNNPACK has no int8 concatenate and no int8 hardswish: those ops (and int8
// average pooling) are refused by the profile. Operators are created once per model
// (PrepareOp) and set up again only when the batch size changes (the executor's
// buffers move only then).
//
// XNNPACK requantizes in its own way (the "fp32" scheme in this snapshot): the
// int32 accumulator is converted to float, multiplied by the float scale
// s_in*s_w/s_out computed in single precision at operator creation, and
// rounded to nearest-even, then offset and clamped. It never sees the
// QuantizedModel's fixed-point multipliers or lookup tables, so it can differ from
// `reference` by one output step where the two roundings disagree (docs/backends.md).
#ifndef QUANT_BACKENDS_XNNPACK_BACKEND_H_
#define QUANT_BACKENDS_XNNPACK_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/backends/im2col.h"
#include "quant/backends/xnnpack_util.h"
#include "quant/core/params.h"

namespace quant::backends {

class XnnpackBackend : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }

 protected:
  size_t ElementBytes() const override { return 1; }
  absl::Status BeginPrepare() override;
  absl::Status PrepareOp(int op) override;
  absl::Status SetUpBatch(int64_t batch) override;
  absl::Status RunInput(const float* input, int64_t batch, void* out) override;
  absl::Status RunOp(int op, int64_t batch) override;
  void WriteOutput(const void* out, int64_t batch, RunOutput* output) override;
  bool ReadBuffer(int tensor, const void* data, int64_t count, int32_t* out) const override;
  bool WriteBuffer(int tensor, const int32_t* values, int64_t count, void* data) const override;

 private:
  struct Step {
    xnn::Operator op;        // null for flatten/reshape (a copy + clamp in C++)
    bool conv_api = false;   // runs through the convolution API (conv, or a per-channel FC)
    bool clamp = false;      // flatten/reshape: a clamp narrower than the dtype range
    // A conv with few input channels runs as im2col + fully connected (im2col.h).
    std::unique_ptr<Im2col> im2col;
  };

  bool s8_ = true;
  xnn::Operator convert_;
  std::vector<Step> steps_;
  std::vector<int32_t> q_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_XNNPACK_BACKEND_H_
