// Matrix multiplication C = op(A) @ op(B), the workhorse of Linear and of the im2col convolution.
//
// Shapes (row-major, C-contiguous): C is M x N; op(A) is M x K and op(B) is K x N, where
//   op(A) = A (stored M x K) when transpose_a == 0, or A^T (A stored K x M) when transpose_a == 1,
//   op(B) = B (stored K x N) when transpose_b == 0, or B^T (B stored N x K) when transpose_b == 1.
// The transposes give every product Linear needs without copying a matrix:
//   forward y = x weight;   weight gradient dweight = x^T dy;   input gradient dx = dy weight^T.
// Batches: launch gridDim.z matrices at once; matrix z reads A + z*M*K, B + z*K*N and writes C + z*M*N
// (the convolution uses one matrix per group).
// Sizes are int (each below 2^31); offsets are long long because M*K can pass 2^31. M, N, K are the GEMM's
// own letters (N is not the batch here): Linear's y (N, M) = x (N, D) weight (D, M) is a GEMM with
// M = N (batch), K = D, N = M.
// The layers' forwards use gemm_bias.cu instead: gemm_tiled with + bias fused into its store.

#include "common.cuh"  // TILE, load_op

// Thread mapping: one thread per element of C. Block (TILE, TILE) covers a TILE x TILE tile of C:
// threadIdx.x walks the columns (so neighbouring threads write neighbouring addresses), threadIdx.y the
// rows; grid (ceil(N / TILE), ceil(M / TILE), batch). Each thread reads a whole row of op(A) and column
// of op(B) from global memory: 2K loads for 2K flops, which is why this kernel is slow.
template <typename T>
__global__ void gemm_naive(const T* A, const T* B, T* C, int M, int N, int K, int transpose_a,
                           int transpose_b) {
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const long long z = blockIdx.z;
    if (row >= M || col >= N) return;
    A += z * M * K;
    B += z * K * N;
    T sum = 0;
    for (int k = 0; k < K; ++k) {
        sum += load_op(A, row, k, M, K, transpose_a) * load_op(B, k, col, K, N, transpose_b);
    }
    C[z * M * N + (long long)row * N + col] = sum;
}

// Thread mapping: as gemm_naive (one thread per element of C, block (TILE, TILE), grid
// (ceil(N / TILE), ceil(M / TILE), batch)), but the block walks along K one TILE at a time: its threads
// first copy a TILE x TILE tile of op(A) and one of op(B) into shared memory (one element each), then
// every thread reads its row and column of the tiles from shared memory. Each global element is loaded
// once per tile instead of once per thread: TILE times less global traffic.
// Threads outside C (at the right and bottom edges) still load zeros and reach both barriers: a
// __syncthreads() that only some threads of a block reach is undefined behaviour.
template <typename T>
__global__ void gemm_tiled(const T* A, const T* B, T* C, int M, int N, int K, int transpose_a,
                           int transpose_b) {
    __shared__ T tile_a[TILE][TILE];
    __shared__ T tile_b[TILE][TILE];
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty;
    const int col = blockIdx.x * TILE + tx;
    const long long z = blockIdx.z;
    A += z * M * K;
    B += z * K * N;

    T sum = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        // Each thread loads one element of each tile; zeros pad the tiles past the matrix edges.
        tile_a[ty][tx] = (row < M && k0 + tx < K) ? load_op(A, row, k0 + tx, M, K, transpose_a) : T(0);
        tile_b[ty][tx] = (k0 + ty < K && col < N) ? load_op(B, k0 + ty, col, K, N, transpose_b) : T(0);
        // Barrier 1: the tiles must be complete before anyone reads them (a thread reads elements that
        // other threads loaded).
        __syncthreads();
        for (int k = 0; k < TILE; ++k) {
            sum += tile_a[ty][k] * tile_b[k][tx];
        }
        // Barrier 2: everyone must have finished reading these tiles before the next iteration
        // overwrites them.
        __syncthreads();
    }
    if (row < M && col < N) {
        C[z * M * N + (long long)row * N + col] = sum;
    }
}
