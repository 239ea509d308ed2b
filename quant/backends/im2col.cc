#include "quant/backends/im2col.h"

#include <cstring>

namespace quant::backends {

Im2col::Im2col(const Conv2DOptions& c, const Shape& in, const Shape& out, int32_t zero_point)
    : c_(c), h_(in[0]), w_(in[1]), ch_(in[2]), oh_(out[0]), ow_(out[1]) {
  pixels_ = oh_ * ow_;
  patch_ = c.kernel_h() * c.kernel_w() * ch_;
  padded_.assign((h_ + c.pad_top() + c.pad_bottom()) * (w_ + c.pad_left() + c.pad_right()) * ch_ + kSlack,
                 static_cast<uint8_t>(zero_point));
}

void Im2col::Reserve(int64_t batch) { patches_.resize(batch * pixels_ * patch_ + kSlack); }

void Im2col::Run(const uint8_t* src, int64_t batch) {
  const int64_t PW = w_ + c_.pad_left() + c_.pad_right();
  const int64_t row = c_.kernel_w() * ch_;  // contiguous bytes of one kernel row of a patch
  uint8_t* dst = patches_.data();
  for (int64_t b = 0; b < batch; ++b) {
    // The image into the interior of the padded buffer (borders keep the zero point).
    for (int64_t y = 0; y < h_; ++y) {
      std::memcpy(padded_.data() + ((y + c_.pad_top()) * PW + c_.pad_left()) * ch_, src + (b * h_ + y) * w_ * ch_,
                  w_ * ch_);
    }
    if (ch_ == 1 && c_.kernel_w() == 3 && c_.kernel_h() == 3 && c_.stride_w() == 1) {
      // The common first layer (3x3 over one channel, stride 1): three 4-byte moves per
      // patch (each 4th byte is rewritten by the next move; the buffers have slack).
      for (int64_t oy = 0; oy < oh_; ++oy) {
        const uint8_t* r0 = padded_.data() + oy * c_.stride_h() * PW;
        const uint8_t* r1 = r0 + PW;
        const uint8_t* r2 = r1 + PW;
        for (int64_t ox = 0; ox < ow_; ++ox, dst += 9) {
          uint32_t v0, v1, v2;
          std::memcpy(&v0, r0 + ox, 4);
          std::memcpy(&v1, r1 + ox, 4);
          std::memcpy(&v2, r2 + ox, 4);
          std::memcpy(dst, &v0, 4);
          std::memcpy(dst + 3, &v1, 4);
          std::memcpy(dst + 6, &v2, 4);
        }
      }
      continue;
    }
    for (int64_t oy = 0; oy < oh_; ++oy) {
      for (int64_t ox = 0; ox < ow_; ++ox, dst += patch_) {
        const uint8_t* p = padded_.data() + (oy * c_.stride_h() * PW + ox * c_.stride_w()) * ch_;
        for (int ky = 0; ky < c_.kernel_h(); ++ky, p += PW * ch_) std::memcpy(dst + ky * row, p, row);
      }
    }
  }
}

}  // namespace quant::backends
