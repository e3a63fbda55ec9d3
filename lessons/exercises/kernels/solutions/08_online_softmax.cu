// Kernel exercise 8: an online (one-pass) softmax, one warp per row, merged with butterfly shuffles.
//
//   y[n, k] = exp(x[n, k] - m[n]) / s[n],
//   m[n] = max over k of x[n, k],
//   s[n] = sum over k of exp(x[n, k] - m[n]).
// x, y (N, K), row-major. Exercise 5 reads x three times (the max, the sum, y); here one pass gives both the
// max and the sum: a running pair (m, s), the max so far and the sum of exp(x - m) so far, whose sum is
// rescaled whenever the max grows.
//
// The merge rule. Two parts of a row, with pairs (m_a, s_a) and (m_b, s_b), give the pair of both:
//   m = max(m_a, m_b),   s = s_a * exp(m_a - m) + s_b * exp(m_b - m).
// (Each term of s_a is exp(x - m_a); times exp(m_a - m) it becomes exp(x - m).) One column x is the part
// (x, 1). The empty part, (-inf, 0), is the neutral pair: merging it in changes nothing. But merging two
// empty parts computes exp((-inf) - (-inf)) = exp(NaN): when the merged m is -inf, keep (-inf, 0).
//
// Thread mapping: one warp per row, WARPS warps per block: row = blockIdx.x * WARPS + threadIdx.x / 32,
// lane = threadIdx.x % 32. A warp whose row is past N returns at once (all its lanes together). Lane l owns
// the columns k = l, l + 32, l + 64, ... < K (for K < 32, lanes K..31 own none: they hold the empty part).
// 1. Each lane starts from the empty part (-inf, 0) and merges in its columns one by one: one pass over x.
// 2. The butterfly: for offset = 16, 8, 4, 2, 1, each lane merges in the pair of lane l ^ offset, read with
//    __shfl_xor_sync(FULL_WARP, m, offset) and the same for s. Lanes l and l ^ offset swap their pairs and
//    both merge, so after the 5 steps EVERY lane holds the row's (m, s): no broadcast is needed.
// 3. Each lane writes y[n, k] = exp(x[n, k] - m) / s for its columns (the second and last read of x).
// common.cuh (kernels/, on the include path) gives minus_infinity<float>() and exp_of(v).
//
// Launch (the checker's): grid (ceil(N / WARPS),), block (32 * WARPS,).

#include "common.cuh"  // minus_infinity, exp_of

#define WARPS 4
#define FULL_WARP 0xffffffffu

// (m, s) becomes the pair of its part and the part (m_other, s_other), by the merge rule.
__device__ void merge(float& m, float& s, float m_other, float s_other) {
    const float m_new = fmaxf(m, m_other);
    if (m_new == minus_infinity<float>()) return;  // two empty parts: (-inf) - (-inf) would be NaN
    s = s * exp_of(m - m_new) + s_other * exp_of(m_other - m_new);
    m = m_new;
}

extern "C" __global__ void online_softmax(const float* x, float* y, int N, int K) {
    const int row = blockIdx.x * WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;  // the whole warp leaves: all its lanes have the same row
    const long long row_start = (long long)row * K;
    const float* x_row = x + row_start;
    float* y_row = y + row_start;

    float m = minus_infinity<float>(), s = 0.0f;  // the empty part: a lane that owns no column keeps it
    for (int k = lane; k < K; k += 32) merge(m, s, x_row[k], 1.0f);
    for (int offset = 16; offset > 0; offset /= 2) {
        const float m_other = __shfl_xor_sync(FULL_WARP, m, offset);
        const float s_other = __shfl_xor_sync(FULL_WARP, s, offset);
        merge(m, s, m_other, s_other);
    }
    for (int k = lane; k < K; k += 32) y_row[k] = exp_of(x_row[k] - m) / s;
}
