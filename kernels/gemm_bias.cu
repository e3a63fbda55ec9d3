// The tiled GEMM with the bias added in its epilogue: C = op(A) @ op(B) + bias, in one launch.
//
// Linear's forward y = x weight + bias and the convolution's Y = Wm cols + bias used to be two launches:
// gemm_tiled, then a second kernel reading and writing all of C again just to add one number per element.
// Here the thread that has finished its dot product adds the bias before its only store (an "epilogue"):
// one launch, and C is written once. (cuBLASLt and CUTLASS call these fused epilogues; bias + ReLU is the
// next step along the same road.)
//
// Shapes, transposes and batches as gemm_tiled in gemm.cu (C is M x N, gridDim.z matrices), and which bias
// entry an element gets depends on the layer:
//   bias_per_row == 0: C[z, row, col] += bias[col]          Linear: C is y (batch N, M), bias (M,)
//   bias_per_row == 1: C[z, row, col] += bias[z * M + row]  convolution: C is (G, Fg, N * OH * OW), one
//                                                           bias per filter f = z * Fg + row, bias (F,)
// The main loop is gemm_tiled's (gemm.cu keeps that one as the lessons' reference kernel, with its
// two barriers explained there); only the store differs.

#define TILE 16

// op(A)[row, k] and op(B)[k, col], reading the stored matrix the right way round (as in gemm.cu).
template <typename T>
__device__ T load_op(const T* X, int r, int c, int rows, int cols, int transpose) {
    return transpose ? X[(long long)c * rows + r] : X[(long long)r * cols + c];
}

// Thread mapping: one thread per element of C, block (TILE, TILE), grid (ceil(N / TILE), ceil(M / TILE),
// batch), exactly as gemm_tiled.
template <typename T>
__global__ void gemm_bias(const T* A, const T* B, const T* bias, T* C, int M, int N, int K, int transpose_a,
                          int transpose_b, int bias_per_row) {
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
    if (row < M && col < N) {
        // The epilogue: the bias joins the sum in a register, so C is stored once.
        sum += bias_per_row ? bias[z * M + row] : bias[col];
        C[z * M * N + (long long)row * N + col] = sum;
    }
}
