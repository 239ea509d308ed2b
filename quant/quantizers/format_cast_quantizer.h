// `format_cast`: fake quantization through any registered number format
// (quant/formats, registry `format:`): forward rounds each value to the
// nearest representable value of the format, backward is the straight-through
// estimator with clipping (docs/formats.md, "Using a format as a quantizer").
//
//   {quantizer: format_cast, format: bf16}                     # the format with its defaults
//   {quantizer: format_cast, format: {name: fp8_e4m3, overflow: saturate, rounding: stochastic}}
//
// The nested map keeps the format's own keys (rounding, seed, overflow,
// block_size, ...) apart from the quantizer's, so they never clash. There is
// no observer and nothing to calibrate: the format's grid is fixed (block
// formats and Flexpoint choose their scales from the data themselves).
//
// Gradient: grad_x = grad_y where |x| <= the format's largest finite value
// (every finite x for block formats and Flexpoint, whose scale follows the
// data), 0 beyond it and for NaN/inf inputs (the clipped STE PyTorch uses).
//
// Layout: block formats (MX, block_fp) block along the tensor's last
// (contiguous) dimension, one RoundSpan call per row; a format whose
// block_size is 0 (Flexpoint: one shared exponent per tensor) gets the whole
// tensor in one call, so each Forward is one Autoflex step. One format object
// per quantizer, i.e. per tensor (stochastic state, Flexpoint history).
#ifndef QUANT_QUANTIZERS_FORMAT_CAST_QUANTIZER_H_
#define QUANT_QUANTIZERS_FORMAT_CAST_QUANTIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "quant/formats/number_format.h"
#include "quant/quantizers/quantizer.h"

namespace quant {

class FormatCastQuantizer : public Quantizer {
 public:
  static absl::StatusOr<std::unique_ptr<Quantizer>> Create(ParamReader& p);

  FormatCastQuantizer(std::string format_name, std::unique_ptr<NumberFormat> format);

  // Nothing to observe or compute: the grid is the format's.
  absl::Status Observe(const Tensor& x) override { return absl::OkStatus(); }
  absl::Status ComputeQParams() override { return absl::OkStatus(); }
  bool calibrated() const override { return true; }
  // Empty qparams (no affine grid); spec() carries the format's bit width.
  const QParams& qparams() const override { return qparams_; }
  const QuantSpec& spec() const override { return spec_; }
  absl::Status Forward(const Tensor& x, Tensor* y) override;
  absl::Status Backward(const Tensor& grad_y, Tensor* grad_x) override;
  // The format's bit patterns (low `bits` bits) of x; Unimplemented for
  // formats wider than 31 bits and for block formats (whose shared scale is
  // not part of an element pattern).
  absl::Status QuantizeToInt(const Tensor& x, std::vector<int32_t>* q) const override;
  std::string Describe() const override;

  NumberFormat& format() { return *format_; }

 private:
  std::string format_name_;
  std::unique_ptr<NumberFormat> format_;
  QuantSpec spec_;
  QParams qparams_;
  // |x| <= clip passes the gradient; +inf for formats that cannot overflow.
  float clip_;
  std::vector<uint8_t> mask_;
};

}  // namespace quant

#endif  // QUANT_QUANTIZERS_FORMAT_CAST_QUANTIZER_H_
