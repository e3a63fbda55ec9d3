// The GEMM the layers launch: C = op(A) @ op(B), register-blocked, with split K and the bias epilogue.
//
// gemm_tiled (gemm.cu) gives each thread one element of C: per step along k it does 1 multiply-add and pays
// for it with 2 shared-memory loads, and per 16 steps with two barriers. Here a block of 8 x 8 = 64 threads
// computes a 64 x 64 tile of C (BLOCK_TILE), and each thread keeps an 8 x 8 block of it in registers
// (THREAD_TILE). Per step along k a thread loads 8 values of op(A) and 8 of op(B) from shared memory and does
// 8 x 8 = 64 multiply-adds with them (an outer product): 0.25 shared loads per multiply-add instead of 2,
// 64 independent sums to keep the arithmetic units busy, and each global element loaded once per 64-wide
// tile instead of once per 16-wide one. The block walks along K 32 steps at a time (TILE_K), so its threads
// meet at two barriers per 32 x 64 multiply-adds each, where gemm_tiled's meet per 16. This is version 5 of
// kernels/dev/gemm.cu (the lesson on tiling times the steps from naive to there) made general: transposes,
// batches, edges, split K, and gemm_bias.cu's epilogue.
//
// Shapes, transposes and batches as gemm.cu: C is M x N, op(A) M x K, op(B) K x N, gridDim.z matrices.
//
// Split K. A weight gradient is a small product over a long K: conv1's dW = dY colsᵀ is 6 x 25 with
// K = batch x 784 = 50176, a single 64 x 64 tile, so one block would walk all of K while the rest of the GPU
// idles. gemm_blocked can cut K into `splits` chunks, one block per chunk (grid z = batch x splits), each
// writing its partial product; sum_splits then adds the chunks up, always in the same order, so the
// result is the same on every run (atomicAdd into C would make it depend on which block finished first).
//
// Bank conflicts. Shared memory is 32 banks of 4-byte words (word w in bank w % 32); one pass delivers one
// word from each bank, so a warp's access is one pass when its lanes' words lie in different banks (or are
// the same word), and k passes when one bank must deliver k different words: a k-way conflict (a double
// takes two words, and a warp's double access two passes: its halves go one after the other). Two choices
// keep every access here at one pass per 128 bytes (python -m scratchnet.kernel_bench gemm counts them):
// * The tiles' rows are TILE_STRIDE = 65 values long, one more than they hold. A row-major X is copied
//   with a warp's lanes reading consecutive k (coalesced) and storing down a column, tile[k][r] for k =
//   0..31: with 64-value rows those 32 words are 64 apart, all in one bank (32-way); with 65 they are 65
//   apart, in 32 different banks.
// * Thread (tx, ty) computes rows ty + 8 i and columns tx + 8 j of the tile (i, j < 8), not 8 consecutive
//   ones: its warp then reads 8 consecutive values of a tile row, where 8 threads 8 values apart would
//   meet in the same banks (2-way in float, 4-way in double).
// kernels/dev/gemm.cu shows the same two steps from version 5 to version 6.

#include "common.cuh"  // cdiv

#define BLOCK_TILE 64                            // a block computes a BLOCK_TILE x BLOCK_TILE tile of C,
#define TILE_K 32                                // walking along K TILE_K steps at a time;
#define THREAD_TILE 8                            // each thread computes THREAD_TILE x THREAD_TILE of it
#define TILE_STRIDE (BLOCK_TILE + 1)             // a tile row in shared memory: 64 values and one unused
#define BLOCK_SIDE (BLOCK_TILE / THREAD_TILE)    // 8: blocks are BLOCK_SIDE x BLOCK_SIDE threads
#define BLOCK_THREADS (BLOCK_SIDE * BLOCK_SIDE)  // 64
#define SUM_THREADS 256                          // the block size sum_splits is launched with

// Copy the BLOCK_TILE x TILE_K tile at (row0, k0) of a matrix X (rows x K) into tile[k][row]: k-major, so
// that the product loop reads along a tile row. X is stored row-major, either as it is
// (element (r, k) at X[r * K + k]) or transposed (k_major: at X[k * rows + r]). Each of the 64 threads
// copies 2048 / 64 = 32 elements; thread t takes elements t, t + 64, ... of the tile in the order in which
// they lie in memory, so consecutive threads read consecutive addresses (coalesced) either way. Elements
// past the matrix (or past this chunk of K, k_end) are zeros, so the product loop needs no bounds checks.
// A row-major X stores tile[k][r] for 32 consecutive k per warp: TILE_STRIDE spreads them over the banks.
template <typename T>
__device__ void load_tile(T (*tile)[TILE_STRIDE], const T* X, int rows, int K, int k_major, int row0, int k0,
                          int k_end, int t) {
    for (int e = t; e < BLOCK_TILE * TILE_K; e += BLOCK_THREADS) {
        const int r = k_major ? e % BLOCK_TILE : e / TILE_K;
        const int k = k_major ? e / BLOCK_TILE : e % TILE_K;
        const int row = row0 + r, col = k0 + k;
        T value = T(0);
        if (row < rows && col < k_end) {
            value = k_major ? X[(long long)col * rows + row] : X[(long long)row * K + col];
        }
        tile[k][r] = value;
    }
}

// The main loop, shared by both kernels: this thread's 8 x 8 sums of op(A) op(B) over k in [k_begin, k_end).
// Thread mapping: block (BLOCK_SIDE, BLOCK_SIDE) covers the 64 x 64 tile of C at (row0, col0) = (blockIdx.y,
// blockIdx.x) x 64. Thread (tx, ty) owns the 8 x 8 elements at rows row0 + ty + 8 i, columns col0 + tx + 8 j
// (i, j < 8): sum[i][j]. A C of 6 rows (6 filters) keeps only the threads with ty < 6 busy; the others skip
// the arithmetic. op(B) is loaded as the rows of op(B)ᵀ (N x K), which is stored k-major exactly when B is
// not transposed.
template <typename T>
__device__ void block_tile_product(const T* A, const T* B, int M, int N, int K, int transpose_a,
                                   int transpose_b, int k_begin, int k_end, T (*tile_a)[TILE_STRIDE],
                                   T (*tile_b)[TILE_STRIDE], T (&sum)[THREAD_TILE][THREAD_TILE]) {
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * BLOCK_SIDE + tx;
    const int row0 = blockIdx.y * BLOCK_TILE, col0 = blockIdx.x * BLOCK_TILE;
    // A thread with no row or no column inside C skips the arithmetic, but still loads and meets the barriers.
    const bool busy = row0 + ty < M && col0 + tx < N;
    for (int i = 0; i < THREAD_TILE; ++i)
        for (int j = 0; j < THREAD_TILE; ++j) sum[i][j] = T(0);

    for (int k0 = k_begin; k0 < k_end; k0 += TILE_K) {
        load_tile(tile_a, A, M, K, transpose_a, row0, k0, k_end, t);
        load_tile(tile_b, B, N, K, !transpose_b, col0, k0, k_end, t);
        __syncthreads();  // the tiles are complete before anyone reads them
        if (busy) {
            // Unrolled on the GPU: 32 steps of 16 shared loads and 64 multiply-adds, with no loop counter
            // between them. (The simulator's host compiler has no `#pragma unroll`, and would warn.)
#ifndef SCRATCHNET_SIM
#pragma unroll
#endif
            for (int k = 0; k < TILE_K; ++k) {
                T a[THREAD_TILE], b[THREAD_TILE];  // 16 shared loads for 64 multiply-adds
                for (int i = 0; i < THREAD_TILE; ++i) a[i] = tile_a[k][ty + BLOCK_SIDE * i];
                for (int j = 0; j < THREAD_TILE; ++j) b[j] = tile_b[k][tx + BLOCK_SIDE * j];
                for (int i = 0; i < THREAD_TILE; ++i)
                    for (int j = 0; j < THREAD_TILE; ++j) sum[i][j] += a[i] * b[j];
            }
        }
        __syncthreads();  // everyone has read these tiles before the next iteration overwrites them
    }
}

// C = op(A) @ op(B), or with splits > 1 the partial products of K's chunks.
// Launch: block (BLOCK_SIDE, BLOCK_SIDE), grid (ceil(N / 64), ceil(M / 64), batch x splits). Block z
// multiplies matrix z / splits over chunk z % splits of K (chunks of a whole number of TILE_K steps) and
// stores its M x N result at C + z M N: with one split that is C itself, otherwise the (batch, splits, M, N)
// partial products that sum_splits adds up.
template <typename T>
__global__ __launch_bounds__(BLOCK_THREADS) void gemm_blocked(const T* A, const T* B, T* C, int M, int N,
                                                              int K, int transpose_a, int transpose_b,
                                                              int splits) {
    __shared__ T tile_a[TILE_K][TILE_STRIDE];
    __shared__ T tile_b[TILE_K][TILE_STRIDE];
    const long long z = blockIdx.z / splits;
    const int chunk = cdiv(K, splits * TILE_K) * TILE_K;
    const int k_begin = (int)(blockIdx.z % splits) * chunk;
    const int k_end = min(K, k_begin + chunk);
    T sum[THREAD_TILE][THREAD_TILE];
    block_tile_product(A + z * M * K, B + z * K * N, M, N, K, transpose_a, transpose_b, k_begin, k_end,
                       tile_a, tile_b, sum);

    C += (long long)blockIdx.z * M * N;
    for (int i = 0; i < THREAD_TILE; ++i) {
        const int row = blockIdx.y * BLOCK_TILE + threadIdx.y + BLOCK_SIDE * i;
        for (int j = 0; j < THREAD_TILE; ++j) {
            const int col = blockIdx.x * BLOCK_TILE + threadIdx.x + BLOCK_SIDE * j;
            if (row < M && col < N) C[(long long)row * N + col] = sum[i][j];
        }
    }
}

// C[z, m, n] = sum over s of partial[z, s, m, n]: the chunks of a split-K gemm_blocked, added in order.
// Thread mapping: one thread per element of C (1-D grid over batch x M x N); thread i reads element i of
// each of its matrix's `splits` partial products, so consecutive threads read consecutive addresses.
template <typename T>
__global__ void sum_splits(const T* partial, T* C, long long matrix_size, long long count, int splits) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    const long long z = i / matrix_size, e = i % matrix_size;
    const T* chunks = partial + z * splits * matrix_size + e;
    T sum = 0;
    for (int s = 0; s < splits; ++s) sum += chunks[s * matrix_size];
    C[i] = sum;
}

// C = op(A) @ op(B) + bias, the layers' forward: gemm_bias.cu's epilogue (read the two cases there) after
// gemm_blocked's main loop, without split K.
//   positions == 0, Linear: C[z, row, col] = ... + bias[col]
//   positions == P > 0, a convolution: y[n, f, p] = ... + bias[f], stored NCHW.
// Launch: block (BLOCK_SIDE, BLOCK_SIDE), grid (ceil(N / 64), ceil(M / 64), batch).
template <typename T>
__global__ __launch_bounds__(BLOCK_THREADS) void gemm_blocked_bias(const T* A, const T* B, const T* bias,
                                                                   T* C, int M, int N, int K, int transpose_a,
                                                                   int transpose_b, int positions) {
    __shared__ T tile_a[TILE_K][TILE_STRIDE];
    __shared__ T tile_b[TILE_K][TILE_STRIDE];
    const long long z = blockIdx.z;
    T sum[THREAD_TILE][THREAD_TILE];
    block_tile_product(A + z * M * K, B + z * K * N, M, N, K, transpose_a, transpose_b, 0, K, tile_a, tile_b,
                       sum);

    const long long F = (long long)gridDim.z * M;  // a convolution's filters, G * Fg
    for (int j = 0; j < THREAD_TILE; ++j) {
        const int col = blockIdx.x * BLOCK_TILE + threadIdx.x + BLOCK_SIDE * j;
        if (col >= N) break;  // the columns grow with j
        const long long n = positions ? col / positions : 0,
                        p = positions ? col % positions : 0;  // once per column
        for (int i = 0; i < THREAD_TILE; ++i) {
            const int row = blockIdx.y * BLOCK_TILE + threadIdx.y + BLOCK_SIDE * i;
            if (row >= M) break;
            if (positions == 0) {
                C[z * M * N + (long long)row * N + col] = sum[i][j] + bias[col];  // Linear: (batch N, M)
            } else {
                const long long f = z * M + row;
                C[(n * F + f) * positions + p] = sum[i][j] + bias[f];  // y (N, F, OH, OW)
            }
        }
    }
}
