// The reference integer kernels: the definition of the QuantizedModel
// arithmetic, written like TFLite's reference integer_ops kernels (a params
// struct, plain loops, int32 accumulation, MultiplyByQuantizedMultiplier, zero
// points, clamp). Values are held as int32 whatever their storage type (int8 or
// uint8), which keeps the kernels free of templates. Readable first, not fast.
#ifndef QUANT_BACKENDS_REFERENCE_KERNELS_H_
#define QUANT_BACKENDS_REFERENCE_KERNELS_H_

#include <algorithm>
#include <cstdint>
#include <limits>

#include "quant/backends/fixed_point.h"

namespace quant::backends::reference {

// What a weighted layer's output stage needs; one entry per output channel.
struct RequantParams {
  int32_t input_zero_point;
  const int32_t* weight_zero_point;  // [output_channels]
  const int32_t* bias;               // [output_channels], scale s_in*s_w[o]
  const int32_t* multiplier;         // [output_channels]
  const int32_t* shift;              // [output_channels]
  int32_t output_zero_point;
  int32_t output_min;
  int32_t output_max;
};

// acc (int32, at scale s_in*s_w[o]) -> output value (at s_out), clamped.
inline int32_t Requantize(int32_t acc, const RequantParams& p, int o) {
  int32_t v = MultiplyByQuantizedMultiplier(acc, p.multiplier[o], p.shift[o]);
  v += p.output_zero_point;
  return std::min(std::max(v, p.output_min), p.output_max);
}

// input [batch][in], weights [out][in], output [batch][out].
inline void FullyConnected(const RequantParams& p, int64_t batch, int in, int out, const int32_t* input,
                           const int32_t* weights, int32_t* output) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int o = 0; o < out; ++o) {
      int32_t acc = p.bias[o];
      for (int i = 0; i < in; ++i) {
        acc += (input[b * in + i] - p.input_zero_point) * (weights[o * in + i] - p.weight_zero_point[o]);
      }
      output[b * out + o] = Requantize(acc, p, o);
    }
  }
}

struct ConvGeometry {
  int64_t batch, in_h, in_w, in_c;   // input NHWC
  int64_t out_h, out_w, out_c;       // output NHWC
  int kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left;
  int groups;
};

// Calls visit(ky, kx, in) for every in-bounds tap of the window of output
// pixel (b, oy, ox), `in` the offset of the input pixel's first channel (NHWC).
template <typename Visit>
inline void ForEachTap(const ConvGeometry& g, int64_t b, int64_t oy, int64_t ox, const Visit& visit) {
  for (int ky = 0; ky < g.kernel_h; ++ky) {
    const int64_t y = oy * g.stride_h - g.pad_top + ky;
    if (y < 0 || y >= g.in_h) continue;
    for (int kx = 0; kx < g.kernel_w; ++kx) {
      const int64_t x = ox * g.stride_w - g.pad_left + kx;
      if (x < 0 || x >= g.in_w) continue;
      visit(ky, kx, ((b * g.in_h + y) * g.in_w + x) * g.in_c);
    }
  }
}

// NHWC input, OHWI weights ([out_c][kh][kw][in_c/groups]); padded positions
// hold the input zero point, i.e. contribute nothing.
inline void Conv2D(const RequantParams& p, const ConvGeometry& g, const int32_t* input, const int32_t* weights,
                   int32_t* output) {
  const int64_t ig = g.in_c / g.groups, og = g.out_c / g.groups;
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox)
        for (int64_t o = 0; o < g.out_c; ++o) {
          const int64_t group = o / og;
          int32_t acc = p.bias[o];
          ForEachTap(g, b, oy, ox, [&](int ky, int kx, int64_t pixel) {
            const int32_t* in = input + pixel + group * ig;
            const int32_t* w = weights + ((o * g.kernel_h + ky) * g.kernel_w + kx) * ig;
            for (int64_t i = 0; i < ig; ++i) {
              acc += (in[i] - p.input_zero_point) * (w[i] - p.weight_zero_point[o]);
            }
          });
          output[((b * g.out_h + oy) * g.out_w + ox) * g.out_c + o] = Requantize(acc, p, static_cast<int>(o));
        }
}

// Max over the window's in-bounds positions (padding never wins), then clamp.
// Quantization is unchanged, so no requantization.
inline void MaxPool2D(const ConvGeometry& g, int32_t output_min, int32_t output_max, const int32_t* input,
                      int32_t* output) {
  // Channels innermost (contiguous in NHWC): the max over the window runs a row of channels at a time.
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox) {
        int32_t* best = output + ((b * g.out_h + oy) * g.out_w + ox) * g.in_c;
        std::fill(best, best + g.in_c, std::numeric_limits<int32_t>::min());
        ForEachTap(g, b, oy, ox, [&](int, int, int64_t pixel) {
          const int32_t* in = input + pixel;
          for (int64_t c = 0; c < g.in_c; ++c) best[c] = std::max(best[c], in[c]);
        });
        for (int64_t c = 0; c < g.in_c; ++c) best[c] = std::min(std::max(best[c], output_min), output_max);
      }
}

// Average pooling without padding (and, with a window of the whole image, the
// global average pool): sum of (q - zp_in) over the window, then
// out = clamp(zp_out + MultiplyByQuantizedMultiplier(sum, multiplier, shift)) with
// multiplier = s_in / (s_out * window size).
struct AverageParams {
  int32_t input_zero_point;
  int32_t multiplier;
  int32_t shift;
  int32_t output_zero_point;
  int32_t output_min;
  int32_t output_max;
};

inline void AveragePool2D(const AverageParams& p, const ConvGeometry& g, const int32_t* input, int32_t* output) {
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t oy = 0; oy < g.out_h; ++oy)
      for (int64_t ox = 0; ox < g.out_w; ++ox)
        for (int64_t c = 0; c < g.in_c; ++c) {
          int32_t sum = 0;
          for (int ky = 0; ky < g.kernel_h; ++ky) {
            const int64_t y = oy * g.stride_h + ky;
            for (int kx = 0; kx < g.kernel_w; ++kx) {
              const int64_t x = ox * g.stride_w + kx;
              sum += input[((b * g.in_h + y) * g.in_w + x) * g.in_c + c] - p.input_zero_point;
            }
          }
          const int32_t v = p.output_zero_point + MultiplyByQuantizedMultiplier(sum, p.multiplier, p.shift);
          output[((b * g.out_h + oy) * g.out_w + ox) * g.in_c + c] = std::min(std::max(v, p.output_min), p.output_max);
        }
}

// input [batch][pixels][channels] -> output [batch][channels].
inline void GlobalAveragePool(const AverageParams& p, int64_t batch, int64_t pixels, int64_t channels,
                              const int32_t* input, int32_t* output) {
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c) {
      int32_t sum = 0;
      for (int64_t i = 0; i < pixels; ++i) sum += input[(b * pixels + i) * channels + c] - p.input_zero_point;
      const int32_t v = p.output_zero_point + MultiplyByQuantizedMultiplier(sum, p.multiplier, p.shift);
      output[b * channels + c] = std::min(std::max(v, p.output_min), p.output_max);
    }
}

// TFLite's reference integer_ops/add.h (ArithmeticParams), formula in quantized_model.proto.
struct AddParams {
  int left_shift;
  int32_t input1_zero_point, input1_multiplier, input1_shift;
  int32_t input2_zero_point, input2_multiplier, input2_shift;
  int32_t output_multiplier, output_shift, output_zero_point;
  int32_t output_min, output_max;
};

inline void Add(const AddParams& p, int64_t n, const int32_t* input1, const int32_t* input2, int32_t* output) {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t shifted1 = (input1[i] - p.input1_zero_point) * (1 << p.left_shift);
    const int32_t shifted2 = (input2[i] - p.input2_zero_point) * (1 << p.left_shift);
    const int32_t scaled1 = MultiplyByQuantizedMultiplier(shifted1, p.input1_multiplier, p.input1_shift);
    const int32_t scaled2 = MultiplyByQuantizedMultiplier(shifted2, p.input2_multiplier, p.input2_shift);
    const int32_t raw = MultiplyByQuantizedMultiplier(scaled1 + scaled2, p.output_multiplier, p.output_shift) +
                        p.output_zero_point;
    output[i] = std::min(std::max(raw, p.output_min), p.output_max);
  }
}

// One input of a concatenation along the channel (last) axis: `channels` values per
// pixel, copied when `identity` (same qparams as the output), else requantized:
// clamp(zp_out + MultiplyByQuantizedMultiplier(q - zp_in, multiplier, shift)).
struct ConcatInput {
  const int32_t* data;
  int64_t channels;
  bool identity;
  int32_t zero_point, multiplier, shift;
};

inline void Concat(const ConcatInput* inputs, int num_inputs, int64_t pixels, int32_t output_zero_point,
                   int32_t qmin, int32_t qmax, int32_t output_min, int32_t output_max, int32_t* output) {
  int64_t out_c = 0;
  for (int k = 0; k < num_inputs; ++k) out_c += inputs[k].channels;
  for (int64_t px = 0; px < pixels; ++px) {
    int32_t* dst = output + px * out_c;
    for (int k = 0; k < num_inputs; ++k) {
      const ConcatInput& in = inputs[k];
      const int32_t* src = in.data + px * in.channels;
      for (int64_t c = 0; c < in.channels; ++c) {
        int32_t v = src[c];
        if (!in.identity) {
          v = output_zero_point + MultiplyByQuantizedMultiplier(v - in.zero_point, in.multiplier, in.shift);
          v = std::min(std::max(v, qmin), qmax);
        }
        dst[c] = std::min(std::max(v, output_min), output_max);
      }
      dst += in.channels;
    }
  }
}

// out = clamp(table[q - qmin]) (hardswish, sigmoid, tanh).
inline void Lookup(const int32_t* table, int32_t qmin, int64_t n, int32_t output_min, int32_t output_max,
                   const int32_t* input, int32_t* output) {
  for (int64_t i = 0; i < n; ++i) output[i] = std::min(std::max(table[input[i] - qmin], output_min), output_max);
}

// Flatten / reshape: the values unchanged, clamped.
inline void CopyClamped(int64_t n, int32_t output_min, int32_t output_max, const int32_t* input, int32_t* output) {
  for (int64_t i = 0; i < n; ++i) output[i] = std::min(std::max(input[i], output_min), output_max);
}

}  // namespace quant::backends::reference

#endif  // QUANT_BACKENDS_REFERENCE_KERNELS_H_
