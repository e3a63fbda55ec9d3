// Kernel exercise 7: a warp reduction with shuffles, no shared memory and no __syncthreads().
//
//   y[n, k] = x[n, k] - mean[n],   mean[n] = (1 / K) * sum over k of x[n, k].
// x, y (N, K), row-major: each row minus its mean, the first step of a layer normalisation.
//
// Thread mapping: one warp per row, WARPS warps per block: row = blockIdx.x * WARPS + threadIdx.x / 32,
// lane = threadIdx.x % 32. A warp whose row is past N returns at once (the whole warp: its lanes leave
// together, so no shuffle waits for them). Lane l owns the columns k = l, l + 32, l + 64, ... < K (K may be
// below 32, or not a multiple of it: then some lanes own fewer columns, or none).
// 1. Each lane sums its own columns into v, starting at 0, the neutral value of a sum: a lane that owns no
//    column still takes part in every shuffle, adding nothing.
// 2. The tree, in registers: for offset = 16, 8, 4, 2, 1, v += __shfl_down_sync(FULL_WARP, v, offset)
//    (lane l adds lane l + offset's v). After it lane 0, and only lane 0, holds the row's sum.
// 3. The broadcast: v = __shfl_sync(FULL_WARP, v, 0) gives every lane lane 0's sum.
// 4. Each lane writes y[n, k] = x[n, k] - v / K for its columns.
// FULL_WARP names the lanes that take part in a shuffle: all 32 here, every lane of the warp calls it.
//
// Launch (the checker's): grid (ceil(N / WARPS),), block (32 * WARPS,).

#define WARPS 4
#define FULL_WARP 0xffffffffu

extern "C" __global__ void center_rows(const float* x, float* y, int N, int K) {
    // TODO: write the body (see the comments above)
}
