// Constructs that real-world CUDA uses (the sm_80 warp intrinsics, the clocks, memcpy in device code,
// dynamic shared memory of any type, 16-bit floats, constant memory, cooperative groups), written for the
// simulator's tests: each is checked against NumPy on the simulator and compiled by NVRTC for sm_80
// (tests/test_sim_real_cuda.py).
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace cg = cooperative_groups;

// Per warp, written by lane 0: the sum, minimum and maximum of x, the AND, OR and XOR of its bits, the
// first half-warp's sum (a partial mask), and whether all keys / 100 agree; per thread, the lanes sharing
// its key.
extern "C" __global__ void warp_reductions(const int* x, const int* keys, int* per_warp,
                                           unsigned int* matches) {
    int i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
    unsigned int bits = (unsigned int)x[i];
    int sum = __reduce_add_sync(0xffffffffu, x[i]);
    int smallest = __reduce_min_sync(0xffffffffu, x[i]), largest = __reduce_max_sync(0xffffffffu, x[i]);
    unsigned int all_bits = __reduce_and_sync(0xffffffffu, bits),
                 any_bits = __reduce_or_sync(0xffffffffu, bits);
    unsigned int odd_bits = __reduce_xor_sync(0xffffffffu, bits);
    int half_sum = lane < 16 ? __reduce_add_sync(0x0000ffffu, x[i]) : 0;
    matches[i] = __match_any_sync(0xffffffffu, keys[i]);
    int same = 0;
    unsigned int agreeing = __match_all_sync(0xffffffffu, keys[i] / 100, &same);
    if (lane == 0) {
        int* out = per_warp + 9 * (i / 32);
        out[0] = sum, out[1] = smallest, out[2] = largest, out[3] = (int)all_bits, out[4] = (int)any_bits;
        out[5] = (int)odd_bits, out[6] = half_sum, out[7] = same, out[8] = agreeing != 0u;
    }
}

// Each thread: the clock64() and clock() ticks that a loop took.
extern "C" __global__ void timed_loop(long long* ticks, float* sink) {
    long long start = clock64();
    unsigned int start32 = (unsigned int)clock();
    float v = 0.0f;
    for (int k = 0; k < 2000; ++k) v += sinf((float)k);
    sink[threadIdx.x] = v;
    ticks[2 * threadIdx.x] = clock64() - start;
    ticks[2 * threadIdx.x + 1] = (long long)((unsigned int)clock() - start32);
}

// llm.c's Packed128: 16 bytes moved through memcpy in device code.
template <class T>
struct alignas(16) Packed128 {
    static constexpr int size = 16 / sizeof(T);
    T payload[size];
    Packed128() = default;
    __device__ explicit Packed128(int4 bits) { memcpy(&payload, &bits, sizeof(bits)); }
    __device__ int4 get_bits() const {
        int4 bits;
        memcpy(&bits, &payload, sizeof(bits));
        return bits;
    }
};

// y = 2 x, four floats at a time through Packed128; `cleared` set to zero with memset.
extern "C" __global__ void packed_double(const float* x, float* y, float* cleared) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    Packed128<float> in(*reinterpret_cast<const int4*>(x + 4 * i));
    Packed128<float> out;
    for (int k = 0; k < Packed128<float>::size; ++k) out.payload[k] = 2.0f * in.payload[k];
    *reinterpret_cast<int4*>(y + 4 * i) = out.get_bits();
    memset(cleared + 4 * i, 0, 4 * sizeof(float));
}

// The block's elements reversed through dynamic shared memory: float4 (the type written before
// __shared__, which CUDA allows) and long.
extern "C" __global__ void reverse_float4(const float4* x, float4* y) {
    extern float4 __shared__ vectors[];
    vectors[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = vectors[blockDim.x - 1 - threadIdx.x];
}
extern "C" __global__ void reverse_long(const long* x, long* y) {
    extern __shared__ long longs[];
    longs[threadIdx.x] = x[threadIdx.x];
    __syncthreads();
    y[threadIdx.x] = longs[blockDim.x - 1 - threadIdx.x];
}

// The index of the block's largest x (blockDim.x a power of two), a tree of (value, index) pairs in
// dynamic shared memory.
struct ValueIndex {
    float value;
    int index;
};
extern "C" __global__ void argmax(const float* x, int* best) {
    extern __shared__ ValueIndex pairs[];
    unsigned int t = threadIdx.x;
    pairs[t] = ValueIndex{x[t], (int)t};
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (t < stride && pairs[t + stride].value > pairs[t].value) pairs[t] = pairs[t + stride];
        __syncthreads();
    }
    if (t == 0) *best = pairs[0].index;
}

// Half precision as storage: y = a x + b computed in float; x rounded to bfloat16 and back; pairs of
// halves (x, 2x) and their sums.
extern "C" __global__ void sixteen_bit_floats(const __half* x, __half* y, const float* wide,
                                              __nv_bfloat16* narrow, float* widened, __half2* pairs,
                                              float* pair_sums, float a, float b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = __float2half(a * __half2float(x[i]) + b);
    narrow[i] = __float2bfloat16(wide[i]);
    widened[i] = __bfloat162float(narrow[i]);
    pairs[i] = __floats2half2_rn(wide[i], 2.0f * wide[i]);
    pair_sums[i] = __low2float(pairs[i]) + __high2float(pairs[i]);
}

// y = c0 + c1 x + c2 x^2 + c3 x^3, the coefficients set from the host; `launched_threads` counts the
// threads of every launch.
__constant__ float coefficients[4];
__device__ unsigned int launched_threads;
extern "C" __global__ void polynomial(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&launched_threads, 1u);
    if (i < n)
        y[i] = coefficients[0] + x[i] * (coefficients[1] + x[i] * (coefficients[2] + x[i] * coefficients[3]));
}

// Per thread, 10 ints: its rank in the block (as a thread_group), in its tile of 8 and the tile's size; then
// for the threads with a label >= 0 (the others write -1): rank and size of the coalesced group of such
// lanes of its warp, the size of its labeled partition, its rank in the binary partition by label parity,
// and the index of the group's first thread (a shuffle from rank 0); its rank in the grid and the grid's size.
extern "C" __global__ void group_ranks(const int* labels, int* out) {
    cg::thread_block block = cg::this_thread_block();
    cg::thread_group whole = block;
    cg::thread_group tile = cg::tiled_partition(block, 8);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    int* mine = out + 10 * i;
    mine[0] = (int)whole.thread_rank(), mine[1] = (int)tile.thread_rank(), mine[2] = (int)tile.size();
    tile.sync();
    for (int k = 3; k < 8; ++k) mine[k] = -1;
    if (labels[i] >= 0) {
        cg::coalesced_group active = cg::coalesced_threads();
        mine[3] = (int)active.thread_rank(), mine[4] = (int)active.size();
        mine[5] = (int)cg::labeled_partition(active, labels[i]).size();
        mine[6] = (int)cg::binary_partition(active, labels[i] % 2 == 0).thread_rank();
        mine[7] = active.shfl(i, 0);
    }
    cg::grid_group grid = cg::this_grid();
    mine[8] = (int)grid.thread_rank(), mine[9] = (int)grid.size();
}

// A two-phase sum over the whole grid with cooperative groups' grid.sync(): every block writes its partial
// sum, the grid meets, and block 0 adds them up (needs a cooperative launch).
extern "C" __global__ void grid_sum(const float* x, float* partial, float* total) {
    cg::grid_group grid = cg::this_grid();
    __shared__ float block_sum;
    if (threadIdx.x == 0) block_sum = 0.0f;
    __syncthreads();
    atomicAdd(&block_sum, x[grid.thread_rank()]);
    __syncthreads();
    if (threadIdx.x == 0) partial[blockIdx.x] = block_sum;
    grid.sync();
    if (grid.thread_rank() == 0) {
        float sum = 0.0f;
        for (unsigned int b = 0; b < gridDim.x; ++b) sum += partial[b];
        *total = sum;
    }
}
