// The bias gradient: a sum over every axis but one.
//
//   db[f] = sum over n, p of dy[n, f, p]      dy viewed as (N, F, P)
//
// P = 1 for Linear (dy is (N, F)), P = H * W for a convolution (dy is (N, F, H, W)).

#define REDUCE_THREADS 256  // the block size bias_grad is launched with (Python reads it from here)

// Thread mapping: one block per output f (grid (F,), block (REDUCE_THREADS,)). Thread t of the block adds
// up the elements t, t + blockDim.x, t + 2 blockDim.x, ... of the N * P values of channel f, then the
// block combines its blockDim.x partial sums in shared memory, halving the number of active threads
// each step. The loops use blockDim.x, not the constant, so a launch with fewer threads (a power of two
// <= REDUCE_THREADS) still reads only the partial sums its threads wrote. The order of the additions is fixed, so the result is the same on every run (unlike
// atomicAdd, whose order depends on scheduling).
template <typename T>
__global__ void bias_grad(const T* dy, T* db, int N, int F, long long P)
{
    __shared__ T partial[REDUCE_THREADS];
    const int f = blockIdx.x;
    const int t = threadIdx.x;
    const long long count = (long long)N * P;

    T sum = 0;
    for (long long e = t; e < count; e += blockDim.x) {
        const long long n = e / P;
        const long long p = e % P;
        sum += dy[(n * F + f) * P + p];
    }
    partial[t] = sum;
    __syncthreads();  // all partial sums written before any thread reads its neighbour's

    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();  // this step's sums written before the next step reads them
    }
    if (t == 0) db[f] = partial[0];
}
