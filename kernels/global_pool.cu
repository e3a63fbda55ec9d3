// Global average pooling, forward and backward. Used by scratchnet/layers/global_pool.py.
//
//   forward:  y[n, c] = (1 / (H W)) Σ_{h, w} x[n, c, h, w]        x (N, C, H, W) -> y (N, C, 1, 1)
//   backward: dx[n, c, h, w] = dy[n, c] / (H W)                    every pixel had the same weight 1/(H W)

// One thread per output (n, c): i < N * C; it adds the H * W pixels of its plane in order (deterministic).
template <typename T>
__global__ void global_avg_pool_forward(const T* x, T* y, int N, int C, int H, int W) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C) return;
    const long long HW = (long long)H * W;
    const T* plane = x + i * HW;  // x[n, c] with i = n * C + c
    T sum = 0;
    for (long long p = 0; p < HW; ++p) sum += plane[p];
    y[i] = sum / T(HW);
}

// One thread per input element i < N * C * H * W: a gather, no atomics.
template <typename T>
__global__ void global_avg_pool_backward(const T* dy, T* dx, int N, int C, int H, int W) {
    const long long HW = (long long)H * W;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * HW) return;
    dx[i] = dy[i / HW] / T(HW);
}
