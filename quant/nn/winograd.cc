#include "quant/nn/winograd.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "quant/nn/panel_gemm.h"

namespace quant::nn {

namespace {
// V and M of a chunk of images together take about this many floats (384 KB):
// they stay in L2 (1 MB here) between the transforms and the GEMMs.
constexpr int64_t kChunkFloats = 96 * 1024;

// Columns 2t and 2t + 1 of 16 consecutive floats: the even and the odd ones.
inline void Deinterleave(const float* p, __m256* even, __m256* odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  // [a0 a2 b0 b2 a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

}  // namespace

void Winograd3x3::SetWeight(const float* weight, int64_t out_channels, int64_t in_channels) {
  cout_ = out_channels;
  cin_ = in_channels;
  u_.resize(16 * cout_ * cin_);
  const int64_t mc = cout_ * cin_;
  for (int64_t o = 0; o < cout_; ++o) {
    for (int64_t c = 0; c < cin_; ++c) {
      const float* g = weight + (o * cin_ + c) * 9;
      // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2 of the
      // kernel's rows; then the same on the columns of each.
      double gg[4][3];
      for (int j = 0; j < 3; ++j) {
        const double g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
        gg[0][j] = g0;
        gg[1][j] = 0.5 * (g0 + g1 + g2);
        gg[2][j] = 0.5 * (g0 - g1 + g2);
        gg[3][j] = g2;
      }
      for (int i = 0; i < 4; ++i) {
        const double h0 = gg[i][0], h1 = gg[i][1], h2 = gg[i][2];
        const double row[4] = {h0, 0.5 * (h0 + h1 + h2), 0.5 * (h0 - h1 + h2), h2};
        for (int j = 0; j < 4; ++j) u_[(4 * i + j) * mc + o * cin_ + c] = static_cast<float>(row[j]);
      }
    }
  }
}

void Winograd3x3::Run(const float* x, int64_t batch, int64_t h, int64_t w, int64_t pad, const float* bias, float* y,
                      const float* clamp) {
  const __m256 clamp_lo = _mm256_set1_ps(clamp != nullptr ? clamp[0] : 0.0f);
  const __m256 clamp_hi = _mm256_set1_ps(clamp != nullptr ? clamp[1] : 0.0f);
  const int64_t ho = h + 2 * pad - 2, wo = w + 2 * pad - 2;
  const int64_t tiles_h = (ho + 1) / 2, tiles_w = (wo + 1) / 2, groups = (tiles_w + 7) / 8;
  const int64_t tiles = tiles_h * tiles_w;
  const int64_t wp = 16 * groups + 2, hp = 2 * tiles_h + 2;
  const int64_t in_plane = h * w, out_plane = ho * wo;
  const int64_t per_image = 16 * (cin_ + cout_) * tiles;
  const int64_t chunk = std::clamp<int64_t>(kChunkFloats / per_image, 1, batch);
  // Room for the last group's lanes past the chunk's tiles, and whole 16-column panels.
  const int64_t ld = (chunk * tiles + 8 + 15) / 16 * 16;
  // The 16 blocks of V and of M are one cache line more than a whole number
  // of rows apart: the transforms touch all 16 at once, and at a multiple of
  // 4 KB (e.g. 16 x 256 floats) they would all map to the same L1 sets.
  const int64_t v_xi = cin_ * ld + 16, p_xi = cout_ * ld + 16;
  if (static_cast<int64_t>(v_.size()) < 16 * v_xi) v_.resize(16 * v_xi);
  if (static_cast<int64_t>(prod_.size()) < 16 * p_xi) prod_.resize(16 * p_xi);
  // Zero outside the interior, which every plane overwrites.
  plane_.assign(hp * wp, 0.0f);
  float* plane = plane_.data();

  const float* const y_end = y + batch * cout_ * out_plane;

  for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
    const int64_t n = std::min(chunk, batch - b0);
    // Input transform: V = B^T d B for every tile and channel.
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t c = 0; c < cin_; ++c) {
        const float* src = x + ((b0 + b) * cin_ + c) * in_plane;
        for (int64_t r = 0; r < h; ++r) std::memcpy(plane + (r + pad) * wp + pad, src + r * w, w * sizeof(float));
        float* vc = v_.data() + c * ld + b * tiles;
        for (int64_t ty = 0; ty < tiles_h; ++ty) {
          for (int64_t g = 0; g < groups; ++g) {
            __m256 d[4][4];
            for (int i = 0; i < 4; ++i) {
              const float* row = plane + (2 * ty + i) * wp + 16 * g;
              Deinterleave(row, &d[i][0], &d[i][1]);
              Deinterleave(row + 2, &d[i][2], &d[i][3]);
            }
            __m256 t[4][4];  // B^T d
            for (int j = 0; j < 4; ++j) {
              t[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
              t[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
              t[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
              t[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
            }
            float* dst = vc + ty * tiles_w + 8 * g;
            for (int i = 0; i < 4; ++i) {  // (B^T d) B
              _mm256_storeu_ps(dst + (4 * i + 0) * v_xi, _mm256_sub_ps(t[i][0], t[i][2]));
              _mm256_storeu_ps(dst + (4 * i + 1) * v_xi, _mm256_add_ps(t[i][1], t[i][2]));
              _mm256_storeu_ps(dst + (4 * i + 2) * v_xi, _mm256_sub_ps(t[i][2], t[i][1]));
              _mm256_storeu_ps(dst + (4 * i + 3) * v_xi, _mm256_sub_ps(t[i][1], t[i][3]));
            }
          }
        }
      }
    }
    // M_xi = U_xi V_xi, 16 columns (slots) at a time.
    const int64_t cols = n * tiles;
    for (int xi = 0; xi < 16; ++xi) {
      const float* u = u_.data() + xi * cout_ * cin_;
      const float* v = v_.data() + xi * v_xi;
      float* m = prod_.data() + xi * p_xi;
      for (int64_t j0 = 0; j0 < cols; j0 += 16) {
        PanelRows(cout_, cin_, u, cin_, nullptr, v + j0, ld, m + j0, ld, 16, /*spill=*/true);
      }
    }
    // Output transform: Y = A^T M A (+ bias), two output rows per tile row.
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < cout_; ++o) {
        const __m256 bv = _mm256_set1_ps(bias != nullptr ? bias[o] : 0.0f);
        const float* mo = prod_.data() + o * ld + b * tiles;
        float* yo = y + ((b0 + b) * cout_ + o) * out_plane;
        for (int64_t ty = 0; ty < tiles_h; ++ty) {
          // Groups from the right: the last group's first row may run into
          // the second row's first columns, which the groups to its left
          // write afterwards.
          for (int64_t g = groups - 1; g >= 0; --g) {
            const float* src = mo + ty * tiles_w + 8 * g;
            __m256 s[2][4];  // A^T M
            for (int j = 0; j < 4; ++j) {
              const __m256 m0 = _mm256_loadu_ps(src + (0 + j) * p_xi);
              const __m256 m1 = _mm256_loadu_ps(src + (4 + j) * p_xi);
              const __m256 m2 = _mm256_loadu_ps(src + (8 + j) * p_xi);
              const __m256 m3 = _mm256_loadu_ps(src + (12 + j) * p_xi);
              s[0][j] = _mm256_add_ps(_mm256_add_ps(m0, m1), m2);
              s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m1, m2), m3);
            }
            for (int a = 0; a < 2; ++a) {
              const int64_t oy = 2 * ty + a;
              if (oy >= ho) break;
              // (A^T M) A: columns 2t and 2t + 1 of the tiles, then interleaved.
              __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]), s[a][2]), bv);
              __m256 y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]), s[a][3]), bv);
              if (clamp != nullptr) {
                y0 = _mm256_min_ps(clamp_hi, _mm256_max_ps(clamp_lo, y0));
                y1 = _mm256_min_ps(clamp_hi, _mm256_max_ps(clamp_lo, y1));
              }
              const __m256 lo = _mm256_unpacklo_ps(y0, y1), hi = _mm256_unpackhi_ps(y0, y1);
              const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20);
              const __m256 second = _mm256_permute2f128_ps(lo, hi, 0x31);
              float* out = yo + oy * wo + 16 * g;
              // A row's last group may store past its end: into the rows
              // and planes after it, which are written later (masked stores
              // are microcoded on AMD and cost more than the transform).
              // Only y's very last row goes through a buffer.
              const int64_t valid = std::min<int64_t>(16, wo - 16 * g);
              if (valid == 16 || out + 16 <= y_end) {
                _mm256_storeu_ps(out, first);
                _mm256_storeu_ps(out + 8, second);
              } else {
                alignas(32) float tmp[16];
                _mm256_store_ps(tmp, first);
                _mm256_store_ps(tmp + 8, second);
                std::memcpy(out, tmp, valid * sizeof(float));
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace quant::nn
