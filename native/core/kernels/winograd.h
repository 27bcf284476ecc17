// Winograd's F(2x2, 3x3) 3x3 convolution (stride 1, padding 1), forward and weight gradient,
// through norm_gemm's micro-kernels (winograd_kernel.inc): a portable variant and an AVX2 one
// (its transforms work on 8-float vectors), one picked per process (dispatch.h).
#pragma once

#include <cstdint>

namespace densetorch::winograd {

// A 3x3 convolution (stride 1, padding 1) by Winograd's F(2x2, 3x3): each 2x2 block of output
// pixels (a tile) from its 4x4 input window in 16 products of c x k instead of 36, the window
// transformed as B^T d B, the weights as G g G^T (pack_weight), the 16 products through
// the micro-kernels above and back as A^T m A. The tiles' transforms and products stay in the
// core's L2 (a block of tiles at a time); nothing but the output is written. Whether this process
// computes it for c input and k output channels (any counts: the products run on c and k rounded
// up to whole vectors, the transforms load and store only the channels there are).
bool available(int64_t c, int64_t k);

// Whether the variant this process runs is an ISA one (AVX2), not the portable one; and which.
bool accelerated();
const char* kernel_name();

// n channels rounded up to whole AVX2 vectors (8 floats): the products' width.
int64_t channels(int64_t n);

// Floats of a packed weight (pack_weight) and of a weight-gradient sum
// (weight_grad_tiles) for c input and k output channels: 16 matrices of
// channels(k) x channels(c).
int64_t size(int64_t c, int64_t k);

// w (a [k][c][3][3] weight, contiguous) transformed and packed for tiles(): size(c, k) floats.
void pack_weight(const float* w, int64_t k, int64_t c, float* packed);

// The convolution's input, as both passes read it.
struct Input {
  const float* x;       // N x H x W pixels (images, rows, columns) of c values, ldx apart
  int64_t ldx;
  int64_t N, H, W, c;
  const float* scale;   // [c] or null: the convolution reads relu(x * scale + shift) (zero padding after it)
  const float* shift;
};

struct Args {
  Input in;
  const float* packed;  // pack_weight
  int64_t k;
  float* out;           // N x H x W pixels of k values, ldo apart
  int64_t ldo;
};

// Its tiles: N * ceil(H / 2) * ceil(W / 2), numbered image by image, row by row.
int64_t tile_count(int64_t N, int64_t H, int64_t W);

// Tiles [begin, end) on the calling thread (callers split tiles between threads).
void tiles(const Args& a, int64_t begin, int64_t end);

// The weight gradient of the same convolution by the same transforms: the gradient of the 16
// products (A g A^T of each tile's 2x2 output gradient) times the transformed windows, summed
// over tiles, then G^T u G. 2.25x fewer multiply-adds than the nine taps' products.
struct GradArgs {
  Input in;
  const float* grad;    // the output's gradient: N x H x W pixels of k values, ldg apart
  int64_t ldg;
  int64_t k;
};

// u[p][j][i] += the products' gradient over tiles [begin, end): size(c, k) floats (one
// per calling thread; rows and columns past k and c stay as they were).
void weight_grad_tiles(const GradArgs& a, int64_t begin, int64_t end, float* u);

// grad_weight ([k][c][3][3], contiguous) = G^T u G of the summed u.
void weight_grad_finish(const float* u, int64_t k, int64_t c, float* grad_weight);

}  // namespace densetorch::winograd
