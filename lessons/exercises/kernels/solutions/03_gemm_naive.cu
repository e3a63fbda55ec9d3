// Kernel exercise 3: a naive matrix product, one thread per element of C.
//
// C (M, N) = A (M, K) @ B (K, N), all row-major:
//   C[row * N + col] = sum over k < K of A[row * K + k] * B[k * N + col]
//
// Thread mapping (2-D):
//   col = blockIdx.x * blockDim.x + threadIdx.x,
//   row = blockIdx.y * blockDim.y + threadIdx.y.
// threadIdx.x runs along a row of C, so neighbouring threads of a warp read neighbouring elements of B and
// write neighbouring elements of C (coalesced accesses).
//
// Launch (the checker's): blocks of (16, 16) threads, grid (ceil(N / 16), ceil(M / 16)).

extern "C" __global__ void gemm_naive(const float* A, const float* B, float* C, int M, int N, int K) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y * blockDim.y + threadIdx.y;
    if (row >= M || col >= N) return;
    float sum = 0.0f;
    for (int k = 0; k < K; ++k) sum += A[row * K + k] * B[k * N + col];
    C[row * N + col] = sum;
}
