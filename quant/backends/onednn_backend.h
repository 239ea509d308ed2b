// `onednn`: the int8 primitives of Debian's oneDNN 2.6 (libdnnl-dev) on the shared
// executor (int8/uint8 NHWC buffers, no copies between ops): convolution_forward
// (grouped and depthwise through weight groups), matmul for fully connected
// layers, pooling_forward (max; avg for average and global average pooling),
// binary add, and reorders into channel slices of the output for concat. oneDNN
// picks its AVX-512 VNNI kernels on this CPU (vpdpbusd: u8 x s8 into int32, no
// int16 saturation). One thread (OpenMP, the Debian build's runtime).
//
// oneDNN's int8 arithmetic (2.x attributes): source and destination zero points
// (common), weights symmetric (oneDNN convolutions take no weight zero point), an
// int32 bias added to the accumulator, then output scales s_in*s_w[o]/s_out in
// float (per output channel or common), then the clamp as an eltwise clip post-op,
// then the destination zero point, rounded to nearest even and saturated. Like
// XNNPACK's fp32 scheme it never sees the model's fixed-point multipliers, so an
// output can differ from `reference` by one step where the roundings disagree.
// Average pools and add requantize through post-ops (eltwise linear) in float in
// the same way. Input quantization is the shared definition (QuantizeInputValue),
// and hardswish/sigmoid/tanh apply the model's own lookup table: oneDNN has no
// int8 table op, and a table lookup is what every int8 runtime does for them.
#ifndef QUANT_BACKENDS_ONEDNN_BACKEND_H_
#define QUANT_BACKENDS_ONEDNN_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/backend.h"
#include "quant/core/params.h"

namespace quant::backends {

class OnednnBackend : public Backend {
 public:
  OnednnBackend();
  ~OnednnBackend() override;
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }
  // The ISA oneDNN dispatches to on this machine, e.g. "Intel AVX-512 with Intel DL Boost".
  static std::string Isa();
  // Whether that ISA has VNNI; Prepare refuses to run without it (see BeginPrepare).
  static bool HasVnni();
  absl::Status CanRunHere() const override;
  // The implementation oneDNN chose for op `op` after Prepare (e.g. "brgconv:avx512_core_vnni"),
  // empty for ops that run in C++ (copies, lookup tables).
  std::string ImplementationOf(int op) const;

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
  struct Impl;
  // Builds op `op`'s primitives for `batch` on the current buffers.
  absl::Status Build(int op, int64_t batch);
  std::unique_ptr<Impl> impl_;
  bool s8_ = true;
  std::vector<int32_t> q_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_ONEDNN_BACKEND_H_
