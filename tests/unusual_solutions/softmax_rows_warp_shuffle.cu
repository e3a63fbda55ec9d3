// Correct, with warp shuffles: each warp reduces its 32 values with __shfl_xor_sync (every lane ends with
// the warp's result), the warps' results meet in shared memory, and each thread combines them. The kernel
// checker must pass it.

#define THREADS 128
#define WARPS (THREADS / 32)

__device__ float warp_max(float value) {
    for (int offset = 16; offset > 0; offset /= 2)
        value = fmaxf(value, __shfl_xor_sync(0xffffffff, value, offset));
    return value;
}

__device__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffff, value, offset);
    return value;
}

extern "C" __global__ void softmax_rows(const float* x, float* y, int N, int K) {
    __shared__ float per_warp_max[WARPS];
    __shared__ float per_warp_sum[WARPS];
    const int t = threadIdx.x, lane = t % 32, warp = t / 32;
    const float* x_row = x + (long long)blockIdx.x * K;
    float* y_row = y + (long long)blockIdx.x * K;

    float row_max = __int_as_float(0xff800000);  // −∞: right for threads that own no column
    for (int k = t; k < K; k += THREADS) row_max = fmaxf(row_max, x_row[k]);
    row_max = warp_max(row_max);
    if (lane == 0) per_warp_max[warp] = row_max;
    __syncthreads();
    row_max = per_warp_max[0];
    for (int w = 1; w < WARPS; ++w) row_max = fmaxf(row_max, per_warp_max[w]);

    float row_sum = 0.0f;
    for (int k = t; k < K; k += THREADS) row_sum += expf(x_row[k] - row_max);
    row_sum = warp_sum(row_sum);
    if (lane == 0) per_warp_sum[warp] = row_sum;
    __syncthreads();
    row_sum = 0.0f;
    for (int w = 0; w < WARPS; ++w) row_sum += per_warp_sum[w];

    for (int k = t; k < K; k += THREADS) y_row[k] = expf(x_row[k] - row_max) / row_sum;
}
