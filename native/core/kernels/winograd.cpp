#include "winograd.h"

#include "variants.h"

#include <vector>

namespace densetorch::winograd {

namespace {

// Both tables register the same instruction sets, so both pick the same.
const kernels::KernelTable<kernels::WinogradTilesFn> kTiles{kernels::portable::winograd_tiles,
                                                            DT_X86(kernels::avx2::winograd_tiles), nullptr};
const kernels::KernelTable<kernels::WinogradGradTilesFn> kGradTiles{kernels::portable::winograd_weight_grad_tiles,
                                                                    DT_X86(kernels::avx2::winograd_weight_grad_tiles),
                                                                    nullptr};

}  // namespace

bool available(int64_t c, int64_t k) { return c > 0 && k > 0; }

bool accelerated() { return kTiles.selected().isa != kernels::Capability::kDefault; }

const char* kernel_name() { return kernels::name(kTiles.selected().isa); }

int64_t channels(int64_t n) { return (n + 7) / 8 * 8; }

int64_t size(int64_t c, int64_t k) { return 16 * channels(k) * channels(c); }

void pack_weight(const float* w, int64_t k, int64_t c, float* packed) {
  // U = G g G^T, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]: 16 matrices [kp][cp],
  // zero past k rows and c columns (the products then run on whole vectors).
  const int64_t kp = channels(k), cp = channels(c);
  std::vector<float> u(static_cast<std::size_t>(16 * kp * cp), 0.f);
  for (int64_t o = 0; o < k; ++o)
    for (int64_t i = 0; i < c; ++i) {
      const float* g = w + (o * c + i) * 9;
      float gg[4][3];  // G g
      for (int col = 0; col < 3; ++col) {
        gg[0][col] = g[col];
        gg[1][col] = 0.5f * (g[col] + g[3 + col] + g[6 + col]);
        gg[2][col] = 0.5f * (g[col] - g[3 + col] + g[6 + col]);
        gg[3][col] = g[6 + col];
      }
      for (int r = 0; r < 4; ++r) {
        const float row[4] = {gg[r][0], 0.5f * (gg[r][0] + gg[r][1] + gg[r][2]), 0.5f * (gg[r][0] - gg[r][1] + gg[r][2]),
                              gg[r][2]};
        for (int col = 0; col < 4; ++col) u[((4 * r + col) * kp + o) * cp + i] = row[col];
      }
    }
  const int64_t width = kernels::vector_width(kTiles.selected().isa);
  for (int p = 0; p < 16; ++p) kernels::pack_panels(u.data() + p * kp * cp, kp, cp, packed + p * kp * cp, width);
}

int64_t tile_count(int64_t N, int64_t H, int64_t W) { return N * ((H + 1) / 2) * ((W + 1) / 2); }

void tiles(const Args& a, int64_t begin, int64_t end) { kTiles.selected().fn(a, begin, end); }

void weight_grad_tiles(const GradArgs& a, int64_t begin, int64_t end, float* u) { kGradTiles.selected().fn(a, begin, end, u); }

void weight_grad_finish(const float* u, int64_t k, int64_t c, float* grad_weight) {
  // G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]]: (G^T u) G, for every (j, i).
  const int64_t kp = channels(k), cp = channels(c);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = 0; i < c; ++i) {
      float m[4][4];
      for (int p = 0; p < 16; ++p) m[p / 4][p % 4] = u[(p * kp + j) * cp + i];
      float t[3][4];
      for (int col = 0; col < 4; ++col) {
        t[0][col] = m[0][col] + 0.5f * (m[1][col] + m[2][col]);
        t[1][col] = 0.5f * (m[1][col] - m[2][col]);
        t[2][col] = 0.5f * (m[1][col] + m[2][col]) + m[3][col];
      }
      float* g = grad_weight + (j * c + i) * 9;
      for (int r = 0; r < 3; ++r) {
        g[3 * r + 0] = t[r][0] + 0.5f * (t[r][1] + t[r][2]);
        g[3 * r + 1] = 0.5f * (t[r][1] - t[r][2]);
        g[3 * r + 2] = 0.5f * (t[r][1] + t[r][2]) + t[r][3];
      }
    }
}

}  // namespace densetorch::winograd
