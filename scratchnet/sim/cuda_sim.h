// cuda_sim.h: the CUDA built-ins, for a .cu file compiled by the host C++ compiler.
//
// The simulator compiles an unmodified kernel file with `-include cuda_sim.h`. Everything a kernel may use
// without an #include on a GPU is defined here: the index variables, the function qualifiers, shared
// memory, barriers, atomics, warp shuffles and the math functions. The scheduler that runs the threads is
// in runtime.cpp; see scratchnet/sim/__init__.py for how the pieces fit together.
#pragma once

#include <math.h>
#include <stdint.h>
#include <stdio.h>

#include <cmath>
#include <type_traits>

// ---- qualifiers ------------------------------------------------------------------------------------------
// Kernels and device functions are ordinary host functions.
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static
// __shared__ memory is one copy per block, shared by the block's threads. The simulator runs one block at
// a time on one OS thread, so a variable with static storage is exactly that. `thread_local` (rather than
// `static`) is used because it also fits `extern __shared__ float smem[];`, the dynamic shared memory,
// which the generated wrapper defines at file scope with the largest size a launch may ask for: written at
// file scope or inside a kernel, the declaration names that one array (`extern` at block scope refers to the
// namespace-scope variable). g++ needs -fno-extern-tls-init for the second placement (compiler.py says why).
#define __shared__ thread_local

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace sim_rt {
// The state of the thread that is running now. The scheduler writes it before it resumes a thread.
struct ThreadState {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
extern ThreadState current;
void syncthreads();                 // block-wide barrier: suspends this thread until all have arrived
void syncwarp();                    // barrier of the 32 threads of this warp
unsigned long long* warp_slots();   // one 8-byte exchange slot per thread of the block, for the shuffles
unsigned int lane_id();             // linear thread index % 32
unsigned int warp_base();           // linear index of lane 0 of this warp
}  // namespace sim_rt

#define threadIdx (::sim_rt::current.thread_idx)
#define blockIdx (::sim_rt::current.block_idx)
#define blockDim (::sim_rt::current.block_dim)
#define gridDim (::sim_rt::current.grid_dim)
#define warpSize 32

// ---- synchronisation -------------------------------------------------------------------------------------
inline void __syncthreads() { ::sim_rt::syncthreads(); }
inline void __syncwarp(unsigned int = 0xffffffffu) { ::sim_rt::syncwarp(); }
// Only one thread runs at a time, so memory is always coherent: fences have nothing to do.
inline void __threadfence() {}
inline void __threadfence_block() {}
template <class T>
inline T __ldg(const T* p) {
    return *p;
}

// ---- atomics ---------------------------------------------------------------------------------------------
// Threads switch only inside __syncthreads()/__syncwarp(), never in the middle of these functions, so a
// plain read-modify-write is atomic.
template <class T>
inline T atomicAdd(T* address, T value) {
    T old = *address;
    *address = old + value;
    return old;
}
template <class T>
inline T atomicSub(T* address, T value) {
    T old = *address;
    *address = old - value;
    return old;
}
template <class T>
inline T atomicExch(T* address, T value) {
    T old = *address;
    *address = value;
    return old;
}
template <class T>
inline T atomicMax(T* address, T value) {
    T old = *address;
    *address = old < value ? value : old;
    return old;
}
template <class T>
inline T atomicMin(T* address, T value) {
    T old = *address;
    *address = value < old ? value : old;
    return old;
}
template <class T>
inline T atomicCAS(T* address, T compare, T value) {
    T old = *address;
    *address = old == compare ? value : old;
    return old;
}

// ---- warp shuffles ---------------------------------------------------------------------------------------
// Each lane publishes its value in its slot, the warp meets at a barrier, each lane reads its partner's
// slot, and the warp meets again so that no slot is overwritten before everybody has read it.
namespace sim_rt {
template <class T>
inline T shuffle(T value, int source_lane_in_segment, int width) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long* slots = warp_slots();
    unsigned int lane = lane_id();
    unsigned int segment_start = lane - lane % (unsigned int)width;
    unsigned long long bits = 0;
    __builtin_memcpy(&bits, &value, sizeof(T));
    slots[warp_base() + lane] = bits;
    syncwarp();
    T result = value;
    if (source_lane_in_segment >= 0 && source_lane_in_segment < width) {
        bits = slots[warp_base() + segment_start + (unsigned int)source_lane_in_segment];
        __builtin_memcpy(&result, &bits, sizeof(T));
    }
    syncwarp();
    return result;
}
}  // namespace sim_rt

template <class T>
inline T __shfl_sync(unsigned int, T value, int source_lane, int width = 32) {
    return ::sim_rt::shuffle(value, ((source_lane % width) + width) % width, width);
}
template <class T>
inline T __shfl_down_sync(unsigned int, T value, unsigned int delta, int width = 32) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(value, lane + (int)delta, width);
}
template <class T>
inline T __shfl_up_sync(unsigned int, T value, unsigned int delta, int width = 32) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(value, lane - (int)delta, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned int, T value, int lane_mask, int width = 32) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(value, lane ^ lane_mask, width);
}

// ---- math ------------------------------------------------------------------------------------------------
// <math.h> gives expf, logf, sqrtf, powf, fmaxf, ... and the float overloads of exp, log, sqrt, ... in the
// global namespace, as CUDA does. These are the CUDA-only extras.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline int __float_as_int(float x) {
    int i;
    __builtin_memcpy(&i, &x, sizeof i);
    return i;
}
inline float __int_as_float(int i) {
    float x;
    __builtin_memcpy(&x, &i, sizeof x);
    return x;
}
inline long long __double_as_longlong(double x) {
    long long i;
    __builtin_memcpy(&i, &x, sizeof i);
    return i;
}
inline double __longlong_as_double(long long i) {
    double x;
    __builtin_memcpy(&x, &i, sizeof x);
    return x;
}

// CUDA's max/min: overloaded for every arithmetic pair, computing in the common type (fmax/fmin semantics
// for floating point, so a NaN operand loses as it does on the GPU).
template <class A, class B, std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> max(A a, B b) {
    using R = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<R>) {
        return std::fmax(R(a), R(b));
    } else {
        return R(a) < R(b) ? R(b) : R(a);
    }
}
template <class A, class B, std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>, int> = 0>
inline std::common_type_t<A, B> min(A a, B b) {
    using R = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<R>) {
        return std::fmin(R(a), R(b));
    } else {
        return R(b) < R(a) ? R(b) : R(a);
    }
}
