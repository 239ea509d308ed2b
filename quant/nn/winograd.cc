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

// C[i][j] = sum_r A[i][r] B[j][r] for an I x J block, r < k (a multiple of 8):
// 8-lane partial sums in r order, then the 8 lanes added in a fixed order.
template <int I, int J>
void DotBlock(int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc) {
  __m256 acc[I][J];
  for (int i = 0; i < I; ++i) {
    for (int j = 0; j < J; ++j) acc[i][j] = _mm256_setzero_ps();
  }
  for (int64_t r = 0; r < k; r += 8) {
    __m256 bv[J];
    for (int j = 0; j < J; ++j) bv[j] = _mm256_loadu_ps(b + j * ldb + r);
    for (int i = 0; i < I; ++i) {
      const __m256 av = _mm256_loadu_ps(a + i * lda + r);
      for (int j = 0; j < J; ++j) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < I; ++i) {
    for (int j = 0; j < J; ++j) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc[i][j]);
      c[i * ldc + j] =
          ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    }
  }
}

using DotKernel = void (*)(int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t);
// [rows][columns] of a block: 4 x 3 inside, smaller at the edges.
constexpr DotKernel kDot[5][4] = {
    {nullptr, nullptr, nullptr, nullptr},
    {nullptr, DotBlock<1, 1>, DotBlock<1, 2>, DotBlock<1, 3>},
    {nullptr, DotBlock<2, 1>, DotBlock<2, 2>, DotBlock<2, 3>},
    {nullptr, DotBlock<3, 1>, DotBlock<3, 2>, DotBlock<3, 3>},
    {nullptr, DotBlock<4, 1>, DotBlock<4, 2>, DotBlock<4, 3>},
};

// C [m][nb] (rows ldc apart) = A [m][k] B [nb][k]^T.
void DotProducts(int64_t m, int64_t nb, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                 int64_t ldc) {
  for (int64_t i0 = 0; i0 < m; i0 += 4) {
    const int64_t bi = std::min<int64_t>(4, m - i0);
    for (int64_t j0 = 0; j0 < nb; j0 += 3) {
      const int64_t bj = std::min<int64_t>(3, nb - j0);
      kDot[bi][bj](k, a + i0 * lda, lda, b + j0 * ldb, ldb, c + i0 * ldc + j0, ldc);
    }
  }
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

Winograd3x3::Tiling Winograd3x3::Prepare(int64_t batch, int64_t h, int64_t w, int64_t pad) {
  Tiling t;
  t.h = h;
  t.w = w;
  t.pad = pad;
  t.ho = h + 2 * pad - 2;
  t.wo = w + 2 * pad - 2;
  t.tiles_h = (t.ho + 1) / 2;
  t.tiles_w = (t.wo + 1) / 2;
  t.groups = (t.tiles_w + 7) / 8;
  t.tiles = t.tiles_h * t.tiles_w;
  t.wp = 16 * t.groups + 2;
  const int64_t hp = 2 * t.tiles_h + 2;
  const int64_t per_image = 16 * (cin_ + cout_) * t.tiles;
  t.chunk = std::clamp<int64_t>(kChunkFloats / per_image, 1, batch);
  // Room for the last group's lanes past the chunk's tiles, and whole 16-column panels.
  t.ld = (t.chunk * t.tiles + 8 + 15) / 16 * 16;
  // The 16 blocks of V and of M are one cache line more than a whole number
  // of rows apart: the transforms touch all 16 at once, and at a multiple of
  // 4 KB (e.g. 16 x 256 floats) they would all map to the same L1 sets.
  t.v_xi = cin_ * t.ld + 16;
  t.p_xi = cout_ * t.ld + 16;
  if (static_cast<int64_t>(v_.size()) < 16 * t.v_xi) v_.resize(16 * t.v_xi);
  if (static_cast<int64_t>(prod_.size()) < 16 * t.p_xi) prod_.resize(16 * t.p_xi);
  // Zero outside the interior, which every plane overwrites.
  plane_.assign(hp * t.wp, 0.0f);
  return t;
}

// V = B^T d B for every tile and channel of images [b0, b0 + n) of x.
void Winograd3x3::InputTransform(const Tiling& t, const float* x, int64_t b0, int64_t n) {
  float* plane = plane_.data();
  const int64_t wp = t.wp, v_xi = t.v_xi;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t c = 0; c < cin_; ++c) {
      const float* src = x + ((b0 + b) * cin_ + c) * t.h * t.w;
      for (int64_t r = 0; r < t.h; ++r) {
        std::memcpy(plane + (r + t.pad) * wp + t.pad, src + r * t.w, t.w * sizeof(float));
      }
      float* vc = v_.data() + c * t.ld + b * t.tiles;
      for (int64_t ty = 0; ty < t.tiles_h; ++ty) {
        for (int64_t g = 0; g < t.groups; ++g) {
          __m256 d[4][4];
          for (int i = 0; i < 4; ++i) {
            const float* row = plane + (2 * ty + i) * wp + 16 * g;
            Deinterleave(row, &d[i][0], &d[i][1]);
            Deinterleave(row + 2, &d[i][2], &d[i][3]);
          }
          __m256 bt[4][4];  // B^T d
          for (int j = 0; j < 4; ++j) {
            bt[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
            bt[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
            bt[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
            bt[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
          }
          float* dst = vc + ty * t.tiles_w + 8 * g;
          for (int i = 0; i < 4; ++i) {  // (B^T d) B
            _mm256_storeu_ps(dst + (4 * i + 0) * v_xi, _mm256_sub_ps(bt[i][0], bt[i][2]));
            _mm256_storeu_ps(dst + (4 * i + 1) * v_xi, _mm256_add_ps(bt[i][1], bt[i][2]));
            _mm256_storeu_ps(dst + (4 * i + 2) * v_xi, _mm256_sub_ps(bt[i][2], bt[i][1]));
            _mm256_storeu_ps(dst + (4 * i + 3) * v_xi, _mm256_sub_ps(bt[i][1], bt[i][3]));
          }
        }
      }
    }
  }
}

void Winograd3x3::Run(const float* x, int64_t batch, int64_t h, int64_t w, int64_t pad, const float* bias, float* y) {
  const Tiling t = Prepare(batch, h, w, pad);
  const int64_t ho = t.ho, wo = t.wo, tiles_h = t.tiles_h, tiles_w = t.tiles_w, groups = t.groups;
  const int64_t tiles = t.tiles, ld = t.ld, v_xi = t.v_xi, p_xi = t.p_xi, chunk = t.chunk;
  const int64_t out_plane = ho * wo;
  const float* const y_end = y + batch * cout_ * out_plane;

  for (int64_t b0 = 0; b0 < batch; b0 += chunk) {
    const int64_t n = std::min(chunk, batch - b0);
    InputTransform(t, x, b0, n);
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
              const __m256 y0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[a][0], s[a][1]), s[a][2]), bv);
              const __m256 y1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[a][1], s[a][2]), s[a][3]), bv);
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

void Winograd3x3::WeightGrad(const float* x, const float* dy, int64_t batch, int64_t out_channels, int64_t in_channels,
                             int64_t h, int64_t w, int64_t pad, float* dw) {
  cout_ = out_channels;
  cin_ = in_channels;
  const Tiling t = Prepare(batch, h, w, pad);
  const int64_t ho = t.ho, wo = t.wo, tiles = t.tiles, ld = t.ld, p_xi = t.p_xi;
  // dy planes are read 16 wide from column 16 g, 2 rows per tile row: zero
  // past Ho x Wo, so that the tiles' missing half and the lanes past the
  // last tile give A dY A^T = 0 (they then add nothing to dU).
  const int64_t dwp = 16 * t.groups;
  dy_plane_.assign(2 * t.tiles_h * dwp, 0.0f);
  float* dplane = dy_plane_.data();
  const int64_t mc = cin_ * cout_;
  du_.assign(16 * mc, 0.0);
  if (static_cast<int64_t>(du_chunk_.size()) < 16 * mc) du_chunk_.resize(16 * mc);
  for (int64_t b0 = 0; b0 < batch; b0 += t.chunk) {
    const int64_t n = std::min(t.chunk, batch - b0);
    InputTransform(t, x, b0, n);
    // A dY A^T of every tile: rows (1, 0), (1, 1), (1, -1), (0, -1) of A.
    for (int64_t b = 0; b < n; ++b) {
      for (int64_t o = 0; o < cout_; ++o) {
        const float* src = dy + ((b0 + b) * cout_ + o) * ho * wo;
        for (int64_t r = 0; r < ho; ++r) std::memcpy(dplane + r * dwp, src + r * wo, wo * sizeof(float));
        float* mo = prod_.data() + o * ld + b * tiles;
        for (int64_t ty = 0; ty < t.tiles_h; ++ty) {
          for (int64_t g = 0; g < t.groups; ++g) {
            __m256 e[2][2];
            Deinterleave(dplane + (2 * ty) * dwp + 16 * g, &e[0][0], &e[0][1]);
            Deinterleave(dplane + (2 * ty + 1) * dwp + 16 * g, &e[1][0], &e[1][1]);
            __m256 r[4][2];  // A dY
            for (int j = 0; j < 2; ++j) {
              r[0][j] = e[0][j];
              r[1][j] = _mm256_add_ps(e[0][j], e[1][j]);
              r[2][j] = _mm256_sub_ps(e[0][j], e[1][j]);
              r[3][j] = _mm256_sub_ps(_mm256_setzero_ps(), e[1][j]);
            }
            float* dst = mo + ty * t.tiles_w + 8 * g;
            for (int i = 0; i < 4; ++i) {  // (A dY) A^T
              _mm256_storeu_ps(dst + (4 * i + 0) * p_xi, r[i][0]);
              _mm256_storeu_ps(dst + (4 * i + 1) * p_xi, _mm256_add_ps(r[i][0], r[i][1]));
              _mm256_storeu_ps(dst + (4 * i + 2) * p_xi, _mm256_sub_ps(r[i][0], r[i][1]));
              _mm256_storeu_ps(dst + (4 * i + 3) * p_xi, _mm256_sub_ps(_mm256_setzero_ps(), r[i][1]));
            }
          }
        }
      }
    }
    // Slots past the chunk's tiles up to a multiple of 8 add nothing: zero
    // them in A dY A^T (V there is finite: earlier chunks' or spilled lanes).
    const int64_t cols = n * tiles, k = (cols + 7) / 8 * 8;
    for (int xi = 0; xi < 16; ++xi) {
      for (int64_t o = 0; o < cout_; ++o) {
        float* row = prod_.data() + xi * p_xi + o * ld;
        std::fill(row + cols, row + k, 0.0f);
      }
    }
    // dU_xi^T [Cin, Cout] = V_xi [Cin, slots] (A dY A^T)_xi [Cout, slots]^T.
    for (int xi = 0; xi < 16; ++xi) {
      float* part = du_chunk_.data() + xi * mc;
      DotProducts(cin_, cout_, k, v_.data() + xi * t.v_xi, ld, prod_.data() + xi * p_xi, ld, part, cout_);
      double* sum = du_.data() + xi * mc;
      for (int64_t i = 0; i < mc; ++i) sum[i] += part[i];
    }
  }
  // dW = G^T dU G, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
  static constexpr double kG[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  for (int64_t o = 0; o < cout_; ++o) {
    for (int64_t c = 0; c < cin_; ++c) {
      double du[4][4];
      for (int xi = 0; xi < 16; ++xi) du[xi / 4][xi % 4] = du_[xi * mc + c * cout_ + o];
      for (int kr = 0; kr < 3; ++kr) {
        for (int kc = 0; kc < 3; ++kc) {
          double s = 0.0;
          for (int i = 0; i < 4; ++i) {
            for (int j = 0; j < 4; ++j) s += kG[i][kr] * du[i][j] * kG[j][kc];
          }
          dw[((o * cin_ + c) * 3 + kr) * 3 + kc] = static_cast<float>(s);
        }
      }
    }
  }
}

}  // namespace quant::nn
