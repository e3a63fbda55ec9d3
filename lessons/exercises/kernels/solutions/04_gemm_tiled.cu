// Kernel exercise 4: a shared-memory tiled matrix product.
//
// C (M, N) = A (M, K) @ B (K, N), row-major, as in exercise 3. Each block computes one TILE x TILE tile of C.
// It walks along K in steps of TILE: the block's threads copy one TILE x TILE tile of A and one of B into
// shared memory (one element each), wait for each other, multiply the tiles, and wait again before the next
// copy overwrites them. Each element of A and B is read from global memory once per block, not once per
// thread.
//
// Thread mapping (2-D): tx = threadIdx.x, ty = threadIdx.y;
//   col = blockIdx.x * TILE + tx, row = blockIdx.y * TILE + ty.
// At step k0, thread (ty, tx) loads
//   A_tile[ty][tx] = A[row, k0 + tx] and B_tile[ty][tx] = B[k0 + ty, col],
// and accumulates
//   sum += A_tile[ty][k] * B_tile[k][tx] for k < TILE.
// Outside the matrices (edge tiles, when M, N or K is not a multiple of TILE) the tiles hold 0.
// Every thread of the block must reach every __syncthreads(), including threads outside C.
//
// Launch (the checker's): blocks of (TILE, TILE) threads, grid (ceil(N / TILE), ceil(M / TILE)).

#define TILE 16

extern "C" __global__ void gemm_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
    __shared__ float A_tile[TILE][TILE];
    __shared__ float B_tile[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int col = blockIdx.x * TILE + tx;
    const int row = blockIdx.y * TILE + ty;
    float sum = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        A_tile[ty][tx] = row < M && k0 + tx < K ? A[row * K + k0 + tx] : 0.0f;
        B_tile[ty][tx] = k0 + ty < K && col < N ? B[(k0 + ty) * N + col] : 0.0f;
        __syncthreads();  // both tiles are complete before anyone reads them
        for (int k = 0; k < TILE; ++k) sum += A_tile[ty][k] * B_tile[k][tx];
        __syncthreads();  // everyone has finished reading before the next copy overwrites the tiles
    }
    if (row < M && col < N) C[row * N + col] = sum;
}
