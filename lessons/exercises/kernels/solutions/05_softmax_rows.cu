// Kernel exercise 5: a block reduction, the row max and row sum of a softmax.
//
//   y[n, k] = exp(x[n, k] - m[n]) / s[n],
//   m[n] = max over k of x[n, k],
//   s[n] = sum over k of exp(x[n, k] - m[n]).
// x, y (N, K), row-major. Subtracting the row max keeps exp from overflowing (exp(89) is already above the
// largest float) and does not change the result.
//
// Thread mapping: one block per row (block n = blockIdx.x handles row n), THREADS threads per block;
// thread t handles the columns k = t, t + THREADS, t + 2 * THREADS, ... < K (K may be below THREADS).
// A block reduction, done twice (max, then sum): each thread reduces its own columns into one value and
// stores it in partial[t]; then a tree halves the number of active threads, thread t < half combining
// partial[t] with partial[t + half], with a __syncthreads() after every step, until partial[0] holds the
// block's result. Read it, and wait before partial[] is reused.
//
// Launch (the checker's): grid (N,), block (THREADS,).

#define THREADS 128

extern "C" __global__ void softmax_rows(const float* x, float* y, int N, int K) {
    __shared__ float partial[THREADS];
    const int t = threadIdx.x;
    const float* x_row = x + (long long)blockIdx.x * K;
    float* y_row = y + (long long)blockIdx.x * K;

    float row_max = x_row[0];  // a value of the row: right even for threads that own no column
    for (int k = t; k < K; k += THREADS) row_max = fmaxf(row_max, x_row[k]);
    partial[t] = row_max;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) partial[t] = fmaxf(partial[t], partial[t + half]);
        __syncthreads();
    }
    row_max = partial[0];
    __syncthreads();  // everyone has read the max before partial[] is reused for the sum

    float row_sum = 0.0f;
    for (int k = t; k < K; k += THREADS) row_sum += expf(x_row[k] - row_max);
    partial[t] = row_sum;
    __syncthreads();
    for (int half = THREADS / 2; half > 0; half /= 2) {
        if (t < half) partial[t] += partial[t + half];
        __syncthreads();
    }
    row_sum = partial[0];

    for (int k = t; k < K; k += THREADS) y_row[k] = expf(x_row[k] - row_max) / row_sum;
}
