// The tiled GEMM with the bias added in its epilogue: C = op(A) @ op(B) + bias, in one launch.
//
// Linear's forward y = x weight + bias and the convolution's Y = Wm cols + bias used to be two launches:
// gemm_tiled, then a second kernel reading and writing all of C again just to add one number per element.
// Here the thread that has finished its dot product adds the bias before its only store (an "epilogue"):
// one launch, and C is written once. (cuBLASLt and CUTLASS call these fused epilogues.)
//
// Shapes, transposes and batches as gemm_tiled in gemm.cu (C is M x N, gridDim.z matrices). Where an
// element goes and which bias it gets depends on the layer, chosen by positions:
//   positions == 0, Linear: C[z, row, col] = ... + bias[col]      C is y (batch N, M), bias (M,)
//   positions == P > 0, a convolution: op(A) is the weight Wm (G, Fg, Cg·KH·KW), op(B) the columns
//     (G, Cg·KH·KW, N·P) with P = OH·OW, so element (z, row, col) is filter f = z·Fg + row at batch
//     n = col / P, position p = col % P. The store writes it straight into y (N, F, OH, OW):
//     y[n, f, p] = ... + bias[f]. The epilogue does the layout change too, so no transpose kernel
//     follows; consecutive threads (col) still write consecutive addresses (p), except where n steps.
// The main loop is gemm_tiled's (gemm.cu keeps that one as the lessons' reference kernel, with its
// two barriers explained there); only the store differs.

#include "common.cuh"  // TILE, load_op

// Thread mapping: one thread per element of C, block (TILE, TILE), grid (ceil(N / TILE), ceil(M / TILE),
// batch), exactly as gemm_tiled.
template <typename T>
__global__ void gemm_bias(const T* A, const T* B, const T* bias, T* C, int M, int N, int K, int transpose_a,
                          int transpose_b, int positions) {
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
        tile_a[ty][tx] = (row < M && k0 + tx < K) ? load_op(A, row, k0 + tx, M, K, transpose_a) : T(0);
        tile_b[ty][tx] = (k0 + ty < K && col < N) ? load_op(B, k0 + ty, col, K, N, transpose_b) : T(0);
        __syncthreads();  // the tiles are complete before anyone reads them
        for (int k = 0; k < TILE; ++k) {
            sum += tile_a[ty][k] * tile_b[k][tx];
        }
        __syncthreads();  // everyone has read these tiles before the next iteration overwrites them
    }
    if (row >= M || col >= N) return;  // after the loop: every thread had to reach both barriers
    // The epilogue: the bias joins the sum in a register, and C is stored once, where the layer wants it.
    if (positions == 0) {
        C[z * M * N + (long long)row * N + col] = sum + bias[col];  // Linear: (batch N, M)
    } else {
        const long long f = z * M + row;                 // the filter
        const long long F = (long long)gridDim.z * M;    // all filters, G * Fg
        const long long n = col / positions;             // the image
        const long long p = col % positions;             // the output position oh * OW + ow
        C[(n * F + f) * positions + p] = sum + bias[f];  // y (N, F, OH, OW)
    }
}
