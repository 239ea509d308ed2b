#include "quant/backends/float_kernels.h"

#include <algorithm>
#include <limits>

#include "quant/nn/gemm.h"

namespace quant::backends::floatk {

void FullyConnected(const float* x, int64_t batch, int in, int out, const float* w, const float* bias,
                    float* y) {
  nn::Sgemm(false, true, static_cast<int>(batch), out, in, 1.0f, x, in, w, in, 0.0f, y, out);
  if (bias == nullptr) return;
  for (int64_t b = 0; b < batch; ++b) {
    float* row = y + b * out;
    for (int o = 0; o < out; ++o) row[o] += bias[o];
  }
}

void Conv2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const ::quant::backends::Conv2D& c,
            const float* w, const float* bias, std::vector<float>* col, float* y) {
  const int64_t ih = in[0], iw = in[1], ic = in[2], oh = out[0], ow = out[1], oc = out[2];
  const int kh = c.kernel_h(), kw = c.kernel_w(), groups = c.groups();
  const int64_t icg = ic / groups, ocg = oc / groups;
  if (groups == 1) {
    const int64_t k = kh * kw * ic;
    const int64_t rows = batch * oh * ow;
    col->assign(rows * k, 0.0f);
    float* cp = col->data();
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t y0 = 0; y0 < oh; ++y0) {
        for (int64_t x0 = 0; x0 < ow; ++x0, cp += k) {
          for (int ky = 0; ky < kh; ++ky) {
            const int64_t sy = y0 * c.stride_h() - c.pad_top() + ky;
            if (sy < 0 || sy >= ih) continue;
            for (int kx = 0; kx < kw; ++kx) {
              const int64_t sx = x0 * c.stride_w() - c.pad_left() + kx;
              if (sx < 0 || sx >= iw) continue;
              const float* src = x + ((b * ih + sy) * iw + sx) * ic;
              std::copy(src, src + ic, cp + (ky * kw + kx) * ic);
            }
          }
        }
      }
    }
    FullyConnected(col->data(), rows, static_cast<int>(k), static_cast<int>(oc), w, bias, y);
    return;
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t y0 = 0; y0 < oh; ++y0) {
      for (int64_t x0 = 0; x0 < ow; ++x0) {
        float* dst = y + ((b * oh + y0) * ow + x0) * oc;
        for (int64_t o = 0; o < oc; ++o) {
          const int64_t g = o / ocg;
          float acc = bias != nullptr ? bias[o] : 0.0f;
          for (int ky = 0; ky < kh; ++ky) {
            const int64_t sy = y0 * c.stride_h() - c.pad_top() + ky;
            if (sy < 0 || sy >= ih) continue;
            for (int kx = 0; kx < kw; ++kx) {
              const int64_t sx = x0 * c.stride_w() - c.pad_left() + kx;
              if (sx < 0 || sx >= iw) continue;
              const float* src = x + ((b * ih + sy) * iw + sx) * ic + g * icg;
              const float* wp = w + ((o * kh + ky) * kw + kx) * icg;
              for (int64_t i = 0; i < icg; ++i) acc += src[i] * wp[i];
            }
          }
          dst[o] = acc;
        }
      }
    }
  }
}

void MaxPool2D(const float* x, int64_t batch, const Shape& in, const Shape& out, const ::quant::backends::Pool2D& p, float* y) {
  const int64_t ih = in[0], iw = in[1], c = in[2], oh = out[0], ow = out[1];
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t y0 = 0; y0 < oh; ++y0) {
      for (int64_t x0 = 0; x0 < ow; ++x0) {
        float* dst = y + ((b * oh + y0) * ow + x0) * c;
        std::fill(dst, dst + c, -std::numeric_limits<float>::infinity());
        for (int ky = 0; ky < p.kernel_h(); ++ky) {
          const int64_t sy = y0 * p.stride_h() - p.pad_top() + ky;
          if (sy < 0 || sy >= ih) continue;
          for (int kx = 0; kx < p.kernel_w(); ++kx) {
            const int64_t sx = x0 * p.stride_w() - p.pad_left() + kx;
            if (sx < 0 || sx >= iw) continue;
            const float* src = x + ((b * ih + sy) * iw + sx) * c;
            for (int64_t i = 0; i < c; ++i) dst[i] = std::max(dst[i], src[i]);
          }
        }
      }
    }
  }
}

void Activate(Activation a, float* y, int64_t n) {
  if (a == RELU) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::max(y[i], 0.0f);
  } else if (a == RELU6) {
    for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(y[i], 0.0f), 6.0f);
  }
}

}  // namespace quant::backends::floatk
