// Common CUDA patterns, written for the simulator's tests: each is checked against NumPy on the simulator
// and compiled by NVRTC for sm_80 (tests/test_sim_patterns.py).
#include <cooperative_groups.h>
#include <cooperative_groups/reduce.h>

namespace cg = cooperative_groups;

#define BLOCK 256  // threads per block of the block-wide kernels below

// Sum of x: each warp reduces with __shfl_down_sync, lane 0 of each warp adds its sum with atomicAdd.
extern "C" __global__ void warp_shuffle_sum(const float* x, float* total, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = i < n ? x[i] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) atomicAdd(total, v);
}

// Per tile of 8 threads: the sum, the maximum and the minimum of x (cg::reduce), written by rank 0.
extern "C" __global__ void tile_reduce(const float* x, float* sums, float* maxima, float* minima) {
    cg::thread_block block = cg::this_thread_block();
    cg::thread_block_tile<8> tile = cg::tiled_partition<8>(block);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    float v = x[i];
    float sum = cg::reduce(tile, v, cg::plus<float>());
    float largest = cg::reduce(tile, v, cg::greater<float>());
    float smallest = cg::reduce(tile, v, cg::less<float>());
    if (tile.thread_rank() == 0) {
        int t = i / 8;
        sums[t] = sum;
        maxima[t] = largest;
        minima[t] = smallest;
    }
}

// Per warp: how many x are positive (ballot + __popc, any, all), and the first half-warp's sum through a
// shuffle with a partial mask taken only by lanes 0-15.
extern "C" __global__ void warp_votes(const float* x, int* positive, int* any_all, float* half_sums) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int warp = i / 32, lane = threadIdx.x % 32;
    auto tile = cg::tiled_partition<32>(cg::this_thread_block());
    unsigned int votes = __ballot_sync(0xffffffffu, x[i] > 0.0f);
    int any = __any_sync(0xffffffffu, x[i] > 0.0f), all = tile.all(x[i] > 0.0f);
    if (lane == 0) {
        positive[warp] = __popc(votes);
        any_all[2 * warp] = any;
        any_all[2 * warp + 1] = all;
    }
    if (lane < 16) {
        float v = x[i];
        for (int offset = 8; offset > 0; offset /= 2) v += __shfl_xor_sync(0x0000ffffu, v, offset, 16);
        if (lane == 0) half_sums[warp] = v;
    }
}

// Histogram of byte values into `bins` (256) bins: shared counts per block, then one atomicAdd per bin.
extern "C" __global__ void histogram(const unsigned char* values, unsigned int* bins, int n) {
    __shared__ unsigned int counts[256];
    for (int b = threadIdx.x; b < 256; b += blockDim.x) counts[b] = 0;
    __syncthreads();
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        atomicAdd(&counts[values[i]], 1);
    __syncthreads();
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
        if (counts[b]) atomicAdd(&bins[b], counts[b]);
}

// Inclusive prefix sum of each block's BLOCK elements (Hillis-Steele, double-buffered in shared memory).
extern "C" __global__ void block_scan(const int* x, int* y) {
    __shared__ int buffers[2][BLOCK];
    int i = blockIdx.x * BLOCK + threadIdx.x;
    int current = 0;
    buffers[current][threadIdx.x] = x[i];
    __syncthreads();
    for (int offset = 1; offset < BLOCK; offset *= 2) {
        int v = buffers[current][threadIdx.x];
        if (threadIdx.x >= offset) v += buffers[current][threadIdx.x - offset];
        buffers[1 - current][threadIdx.x] = v;
        current = 1 - current;
        __syncthreads();
    }
    y[i] = buffers[current][threadIdx.x];
}

// Sorts each block's 2 * blockDim.x floats ascending (bitonic sort in dynamic shared memory).
extern "C" __global__ void bitonic_sort(float* x) {
    extern __shared__ float keys[];
    unsigned int n = 2 * blockDim.x, base = blockIdx.x * n;
    keys[threadIdx.x] = x[base + threadIdx.x];
    keys[threadIdx.x + blockDim.x] = x[base + threadIdx.x + blockDim.x];
    __syncthreads();
    for (unsigned int size = 2; size <= n; size *= 2) {
        for (unsigned int stride = size / 2; stride > 0; stride /= 2) {
            unsigned int pair = threadIdx.x;
            unsigned int low = 2 * stride * (pair / stride) + pair % stride, high = low + stride;
            bool ascending = (low & size) == 0;
            if ((keys[low] > keys[high]) == ascending) {
                float t = keys[low];
                keys[low] = keys[high];
                keys[high] = t;
            }
            __syncthreads();
        }
    }
    x[base + threadIdx.x] = keys[threadIdx.x];
    x[base + threadIdx.x + blockDim.x] = keys[threadIdx.x + blockDim.x];
}

// y (M, N) = a (M, K) @ b (K, N), K and N multiples of 4: each thread computes 4 neighbouring outputs of
// one row, reading b four columns at a time as float4.
template <int TILE_K>
__global__ void gemm_float4(const float* a, const float4* b, float4* y, int M, int N, int K) {
    int row = blockIdx.y * blockDim.y + threadIdx.y;
    int quad = blockIdx.x * blockDim.x + threadIdx.x;  // columns 4*quad .. 4*quad+3
    if (row >= M || quad >= N / 4) return;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int k0 = 0; k0 < K; k0 += TILE_K) {
        for (int k = k0; k < k0 + TILE_K && k < K; ++k) {
            float av = __ldg(&a[row * K + k]);
            float4 bv = b[k * (N / 4) + quad];
            acc.x = __fmaf_rn(av, bv.x, acc.x);
            acc.y = __fmaf_rn(av, bv.y, acc.y);
            acc.z = __fmaf_rn(av, bv.z, acc.z);
            acc.w = __fmaf_rn(av, bv.w, acc.w);
        }
    }
    __stcs(&y[row * (N / 4) + quad], acc);
}

// The integer atomics and bit intrinsics, one result each, for exact comparison with NumPy.
extern "C" __global__ void integer_atomics(unsigned int* counters, int* extremes, unsigned long long* big,
                                           const int* x, unsigned int* bits, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int block_count = __syncthreads_count(1);  // every thread of the block, before any returns
    if (i >= n) return;
    atomicAdd(&counters[0], 1);   // int literal into an unsigned counter
    atomicInc(&counters[1], 9u);  // wraps to 0 after 9
    atomicOr(&counters[2], 1u << (i % 32));
    atomicMax(&extremes[0], x[i]);
    atomicMin(&extremes[1], x[i]);
    atomicAdd(&big[0], (unsigned long long)x[i] * x[i]);
    atomicAdd_block(&counters[3], 2u);
    if (i == 0) {
        bits[0] = __brev(1u);
        bits[1] = (unsigned int)__clz(1);
        bits[2] = (unsigned int)__ffs(8);
        bits[3] = (unsigned int)__float2int_rn(2.5f);
        bits[4] = __float_as_uint(1.0f);
        bits[5] = (unsigned int)(__uint_as_float(0x40000000u) == 2.0f);
        bits[6] = (unsigned int)block_count;
    }
}

// Fast-math intrinsics (the simulator computes them accurately).
extern "C" __global__ void fast_math(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] =
            __expf(x[i]) + __sinf(x[i]) * __cosf(x[i]) + __fdividef(x[i], 2.0f) + __logf(1.0f + x[i] * x[i]);
}
