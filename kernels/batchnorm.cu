// Batch normalisation, forward and backward. Used by scratchnet/layers/batchnorm.py (the math is there).
//
// The input x is viewed as (N, C, HW): HW = H * W for BatchNorm2D, HW = 1 for BatchNorm1D. Every channel c
// has its own statistics over the n = N * HW values x[:, c, :]:
//
//   mean[c] = (1/n) Σ x[:, c, :]              var[c] = (1/n) Σ (x[:, c, :] - mean[c])²   (biased)
//   x̂ = (x - mean[c]) / sqrt(var[c] + eps)    y = gamma[c] x̂ + beta[c]
//
// Backward, with dbeta[c] = Σ dy[:, c, :] and dgamma[c] = Σ dy[:, c, :] x̂[:, c, :]:
//
//   training (batch statistics):   dx = gamma[c] / sqrt(var[c] + eps) · (dy - dbeta[c] / n - x̂ dgamma[c] / n)
//   evaluation (fixed statistics): dx = gamma[c] / sqrt(var[c] + eps) · dy

#include "common.cuh"  // sqrt_of

// The per-channel sums use one block per channel (grid (C,)) of any number of threads (blockDim.x); the
// launcher gives blockDim.x values of shared memory per sum (shared_mem). Thread t adds the values
// e = t, t + blockDim.x, ... of its channel, then the block adds its partial sums pairwise in a fixed order
// (stride 1, 2, 4, ...; works for any blockDim.x), so the result is the same on every run.
template <typename T>
__device__ T block_sum(T* partial, T value) {
    const int t = threadIdx.x;
    partial[t] = value;
    __syncthreads();  // every partial sum written before any is read
    for (int stride = 1; stride < blockDim.x; stride *= 2) {
        if (t % (2 * stride) == 0 && t + stride < blockDim.x) partial[t] += partial[t + stride];
        __syncthreads();  // this round's sums written before the next round reads them
    }
    const T total = partial[0];
    __syncthreads();  // everyone has read the total before partial is reused
    return total;
}

// Element e < n of channel c: x[(nb * C + c) * HW + p] with nb = e / HW, p = e % HW.
__device__ inline long long channel_element(long long e, int c, int C, long long HW) {
    return (e / HW * C + c) * HW + e % HW;
}

// mean[c] and the biased var[c], in two passes (the mean first, then squared distances from it: no
// cancellation, unlike E[x²] - E[x]²). Grid (C,), shared memory blockDim.x * sizeof(T).
template <typename T>
__global__ void batchnorm_stats(const T* x, T* mean, T* var, int N, int C, long long HW) {
    extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
    T* partial = reinterpret_cast<T*>(shared_bytes);
    const int c = blockIdx.x;
    const long long n = (long long)N * HW;

    T sum = 0;
    for (long long e = threadIdx.x; e < n; e += blockDim.x) sum += x[channel_element(e, c, C, HW)];
    const T channel_mean = block_sum(partial, sum) / T(n);

    T squares = 0;
    for (long long e = threadIdx.x; e < n; e += blockDim.x) {
        const T d = x[channel_element(e, c, C, HW)] - channel_mean;
        squares += d * d;
    }
    const T channel_var = block_sum(partial, squares) / T(n);
    if (threadIdx.x == 0) {
        mean[c] = channel_mean;
        var[c] = channel_var;
    }
}

// y = gamma[c] (x - mean[c]) / sqrt(var[c] + eps) + beta[c]; one thread per element i < N * C * HW.
template <typename T>
__global__ void batchnorm_forward(const T* x, const T* mean, const T* var, const T* gamma, const T* beta,
                                  T* y, T eps, int N, int C, long long HW) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * HW) return;
    const int c = (int)(i / HW % C);
    const T inv_std = T(1) / sqrt_of(var[c] + eps);
    y[i] = gamma[c] * ((x[i] - mean[c]) * inv_std) + beta[c];
}

// running = (1 - momentum) running + momentum · batch statistic, with the unbiased variance
// var · n / (n - 1) (unbias = n / (n - 1)); one thread per channel c < C.
template <typename T>
__global__ void batchnorm_update_running(T* running_mean, T* running_var, const T* mean, const T* var,
                                         T momentum, T unbias, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    running_mean[c] = (T(1) - momentum) * running_mean[c] + momentum * mean[c];
    running_var[c] = (T(1) - momentum) * running_var[c] + momentum * (var[c] * unbias);
}

// dbeta[c] = Σ dy and dgamma[c] = Σ dy · x̂ over channel c (x̂ recomputed from x, mean, var).
// Grid (C,), shared memory blockDim.x * sizeof(T) (the two sums reuse it one after the other).
template <typename T>
__global__ void batchnorm_backward_reduce(const T* x, const T* dy, const T* mean, const T* var, T eps,
                                          T* dgamma, T* dbeta, int N, int C, long long HW) {
    extern __shared__ __align__(sizeof(double)) unsigned char shared_bytes[];
    T* partial = reinterpret_cast<T*>(shared_bytes);
    const int c = blockIdx.x;
    const long long n = (long long)N * HW;
    const T inv_std = T(1) / sqrt_of(var[c] + eps);

    T dy_sum = 0, dy_xhat_sum = 0;
    for (long long e = threadIdx.x; e < n; e += blockDim.x) {
        const long long i = channel_element(e, c, C, HW);
        dy_sum += dy[i];
        dy_xhat_sum += dy[i] * ((x[i] - mean[c]) * inv_std);
    }
    const T beta_total = block_sum(partial, dy_sum);
    const T gamma_total = block_sum(partial, dy_xhat_sum);
    if (threadIdx.x == 0) {
        dbeta[c] = beta_total;
        dgamma[c] = gamma_total;
    }
}

// dx from dy and the sums above; one thread per element i < N * C * HW. batch_stats = 1 in training (the
// mean and variance depend on x: the two correction terms), 0 for fixed running statistics.
template <typename T>
__global__ void batchnorm_backward_input(const T* x, const T* dy, const T* mean, const T* var, const T* gamma,
                                         const T* dgamma, const T* dbeta, T* dx, T eps, int batch_stats,
                                         int N, int C, long long HW) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * HW) return;
    const int c = (int)(i / HW % C);
    const T inv_std = T(1) / sqrt_of(var[c] + eps);
    T g = dy[i];
    if (batch_stats) {
        const T n = T((long long)N * HW);
        const T xhat = (x[i] - mean[c]) * inv_std;
        g = g - dbeta[c] / n - xhat * (dgamma[c] / n);
    }
    dx[i] = gamma[c] * inv_std * g;
}
