// `gemmlowp`: fully connected and conv2d (by im2col) as gemmlowp
// GemmWithOutputPipelinePC calls: uint8 operands with offsets, bias addition,
// the fixed-point scale stage (OutputStageScaleInt32ByFixedPointAndExponent, its
// per-channel PC variant for per-channel weights), clamp, saturating cast.
// gemmlowp multiplies uint8 matrices only, so int8 activations and weights are
// carried as uint8 = int8 + 128 with every zero point shifted by 128: (q - zp) is
// unchanged, so the int32 accumulators and all results are bit-identical to the
// reference. One thread; the AVX2 kernels (GEMMLOWP_AVX2_64, enabled by @system_libs//:gemmlowp) are compiled in.
// Every other op (pools, add, concat, lookup tables, reshapes) shares the
// reference kernels: the class derives from ReferenceBackend and replaces only
// the two GEMM ops, so the shared executor and int32 buffers are the reference's.
// Depthwise convs (one input channel per group) also take the reference kernel: a
// GEMM of depth kh*kw per channel is all packing overhead.
#ifndef QUANT_BACKENDS_GEMMLOWP_BACKEND_H_
#define QUANT_BACKENDS_GEMMLOWP_BACKEND_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "quant/backends/reference_backend.h"
#include "quant/core/params.h"

namespace quant::backends {

class GemmlowpBackend : public ReferenceBackend {
 public:
  GemmlowpBackend();
  ~GemmlowpBackend() override;
  static absl::StatusOr<std::unique_ptr<Backend>> Create(ParamReader& params);
  static const BackendProfile& Profile();
  const BackendProfile& profile() const override { return Profile(); }
  // The name of the gemmlowp kernel family compiled in ("SSE4.1 64-bit" etc.).
  static const char* KernelPath();

 protected:
  absl::Status BeginPrepare() override;
  absl::Status PrepareOp(int op) override;
  absl::Status RunOp(int op, int64_t batch) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace quant::backends

#endif  // QUANT_BACKENDS_GEMMLOWP_BACKEND_H_
