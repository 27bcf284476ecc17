// A matrix product whose left operand is normalised on the fly: out = relu(x * scale + shift) @ w^T
// (+ bias, then ReLU), rows of x being pixels (channels-last) and w a 1x1 convolution's weight.
// This is a dense layer's batch norm + ReLU + 1x1 convolution in one pass over the concatenated
// features: the normalised input is formed tile by tile in the cache and never written to memory.
// Plain C++ with AVX-512 and AVX2 micro-kernels chosen at run time (no LibTorch headers: this unit
// compiles in a second).
#pragma once

#include <cstdint>

namespace densetorch::norm_gemm {

// Whether this CPU has a kernel for n output channels (a multiple of 16; AVX-512F or AVX2 + FMA).
// DENSETORCH_NORM_GEMM=0 turns the kernel off (callers fall back to normalise, then convolve);
// =avx2 picks the AVX2 kernel on an AVX-512 CPU (tests, measurements).
bool available(int64_t n);

// The kernel this process runs: "avx512", "avx2" or "none".
const char* kernel_name();

// w (row-major [n][k]) rearranged into the panels the micro-kernels read: n * k floats.
void pack_weight(const float* w, int64_t n, int64_t k, float* packed);

struct Args {
  const float* x;       // rows of k values, row r at x + r * ldx
  int64_t ldx;
  int64_t k;
  const float* scale;   // [k]: x * scale + shift, then ReLU
  const float* shift;   // [k]
  const float* packed;  // pack_weight of [n][k]
  int64_t n;
  const float* bias;    // [n] or null
  bool relu;            // ReLU on the output
  float* out;           // rows of n values, row r at out + r * ldo
  int64_t ldo;
};

// Rows [begin, end) of the product on the calling thread (callers split rows between threads).
void rows(const Args& a, int64_t begin, int64_t end);

// The backward of the product without bias and output ReLU, with batch statistics: from
// grad = d out, the weight's gradient and the part of x's gradient that passes through the ReLU
// and the scale, in one pass over x (the normalised input is recomputed tile by tile in the cache;
// the input gradient of the normalised input is never written either).
//   gy = (grad @ w)[r][i] where x[r][i] * scale[i] + shift[i] > 0, else 0
//   grad_x[r][i] += scale[i] * gy;  sum_gy[i] += gy;  sum_gy_dx[i] += gy * (x[r][i] - mean[i])
//   grad_weight[j][i] += sum over rows of grad[r][j] * relu(x[r][i] * scale[i] + shift[i])
// The rest of batch norm's input gradient (affine in x) is the caller's, from the two sums.
int64_t padded_k(int64_t k);  // rows of grad_weight: k rounded up to 16
// w ([n][k] row-major) as the backward reads it, n * padded_k(k) floats: panels of a few vectors
// of columns (zero past k), each panel's n rows contiguous, so the product walks it sequentially
// (rows of 2 or 4 KiB read down a column all fall in the same sets of the L1 cache).
void pack_backward_weight(const float* w, int64_t n, int64_t k, float* packed);

struct BackwardArgs {
  const float* x;
  int64_t ldx;
  int64_t k;
  const float* scale;
  const float* shift;
  const float* mean;
  const float* grad;       // rows of n values, ldg apart
  int64_t ldg;
  int64_t n;
  const float* weight;     // pack_backward_weight of [n][k]
  float* grad_x;           // rows of k values, ldgx apart: accumulated
  int64_t ldgx;
  float* grad_weight;      // [n][padded_k(k)]: accumulated (one per calling thread)
  double* sum_gy;          // [k]: accumulated (one per calling thread)
  double* sum_gy_dx;       // [k]
};

// Rows [begin, end) on the calling thread.
void backward_rows(const BackwardArgs& a, int64_t begin, int64_t end);

// The weight gradient of a 3x3 convolution (stride 1, padding 1) from n output channels to c
// input channels, as nine products of the same micro-kernel, one per tap: on a grid of images
// zero-padded to (H + 2) x (W + 2) pixels, flattened, the tap (kh, kw) of output pixel p reads
// input pixel p + kh * (W + 2) + kw. Whether this process runs it for n and c (the AVX2 kernel;
// c a multiple of 16, n of the kernel's row block).
bool conv3x3_weight_grad_available(int64_t n, int64_t c);

// grad_weight[3 * kh + kw][j][i] += sum over grid pixels p in [begin, end) of grad[p][j] *
// x[p + kh * row + kw][i]: grad's rows of n values (zero outside the H x W output), x's rows of c
// values (zero border; 2 * row + 2 rows readable past the grid), row = W + 2.
void conv3x3_weight_grad_rows(const float* grad, int64_t n, const float* x, int64_t c, int64_t row, int64_t begin,
                              int64_t end, float* grad_weight);

// A 3x3 convolution (stride 1, padding 1) by Winograd's F(2x2, 3x3): each 2x2 block of output
// pixels (a tile) from its 4x4 input window in 16 products of c x k instead of 36, the window
// transformed as B^T d B, the weights as G g G^T (pack_winograd_weight), the 16 products through
// the micro-kernels above and back as A^T m A. The tiles' transforms and products stay in the
// core's L2 (a block of tiles at a time); nothing but the output is written. Whether this process
// runs it for c input and k output channels (the AVX2 kernel, any counts: the products run on c and
// k rounded up to whole vectors, the transforms load and store only the channels there are).
bool winograd_available(int64_t c, int64_t k);

// n channels rounded up to whole AVX2 vectors (8 floats): the products' width.
int64_t winograd_channels(int64_t n);

// Floats of a packed weight (pack_winograd_weight) and of a weight-gradient sum
// (winograd_weight_grad_tiles) for c input and k output channels: 16 matrices of
// winograd_channels(k) x winograd_channels(c).
int64_t winograd_size(int64_t c, int64_t k);

// w (a [k][c][3][3] weight, contiguous) transformed and packed for winograd_tiles: winograd_size(c, k) floats.
void pack_winograd_weight(const float* w, int64_t k, int64_t c, float* packed);

// The convolution's input, as both passes read it.
struct WinogradInput {
  const float* x;       // N x H x W pixels (images, rows, columns) of c values, ldx apart
  int64_t ldx;
  int64_t N, H, W, c;
  const float* scale;   // [c] or null: the convolution reads relu(x * scale + shift) (zero padding after it)
  const float* shift;
};

struct WinogradArgs {
  WinogradInput in;
  const float* packed;  // pack_winograd_weight
  int64_t k;
  float* out;           // N x H x W pixels of k values, ldo apart
  int64_t ldo;
};

// Its tiles: N * ceil(H / 2) * ceil(W / 2), numbered image by image, row by row.
int64_t winograd_tile_count(int64_t N, int64_t H, int64_t W);

// Tiles [begin, end) on the calling thread (callers split tiles between threads).
void winograd_tiles(const WinogradArgs& a, int64_t begin, int64_t end);

// The weight gradient of the same convolution by the same transforms: the gradient of the 16
// products (A g A^T of each tile's 2x2 output gradient) times the transformed windows, summed
// over tiles, then G^T u G. 2.25x fewer multiply-adds than the nine taps' products.
struct WinogradGradArgs {
  WinogradInput in;
  const float* grad;    // the output's gradient: N x H x W pixels of k values, ldg apart
  int64_t ldg;
  int64_t k;
};

// u[p][j][i] += the products' gradient over tiles [begin, end): winograd_size(c, k) floats (one
// per calling thread; rows and columns past k and c stay as they were).
void winograd_weight_grad_tiles(const WinogradGradArgs& a, int64_t begin, int64_t end, float* u);

// grad_weight ([k][c][3][3], contiguous) = G^T u G of the summed u.
void winograd_weight_grad_finish(const float* u, int64_t k, int64_t c, float* grad_weight);

}  // namespace densetorch::norm_gemm
