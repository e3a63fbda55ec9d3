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
    // TODO: write the body (see the comments above)
}
