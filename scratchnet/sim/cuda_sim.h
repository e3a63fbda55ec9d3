// cuda_sim.h: the CUDA built-ins, for a .cu file compiled by the host C++ compiler.
//
// The simulator compiles an unmodified kernel file with `-include cuda_sim.h`. Everything a kernel may use
// without an #include on a GPU is defined here: the index variables, the function qualifiers, shared
// memory, barriers, atomics, warp shuffles and votes, vector types, intrinsics and the math functions.
// `#include <cooperative_groups.h>` finds the simulator's own version (include/ next to this file). The
// scheduler that runs the threads is runtime.cpp, its own translation unit, so that no macro of a kernel file
// (`#define T 16`) can reach it; see scratchnet/sim/__init__.py for how the pieces fit together.
#pragma once

#include <assert.h>  // NVRTC gives kernels assert() without an #include
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>  // memcpy and memset, which device code may call without an #include
#include <time.h>    // clock(), which device code may call without an #include

#include <cmath>
#include <string>
#include <type_traits>

// The simulator presents itself as a compute capability 8.0 (A100-class) device: code guarded by
// `#if __CUDA_ARCH__ >= 800` takes its device path, as it would under NVRTC for sm_80.
#define __CUDACC__ 1
#define __CUDA_ARCH__ 800
#define __NVCC__ 1
// Defined only here: for the rare code that cannot run on the simulator at all (inline PTX assembly).
#define SCRATCHNET_SIM 1

// Code that synchronises by definition (atomics, shuffles, votes) stays out of a checked build's
// instrumentation (runtime.cpp, "the checks"), so that it is never reported as a race.
#define SIM_UNCHECKED __attribute__((no_sanitize_thread))

// ---- qualifiers ------------------------------------------------------------------------------------------
// Kernels and device functions are ordinary host functions. The signature scan (compiler.py) preprocesses
// a file with SCRATCHNET_SIM_SCAN defined, so that each kernel keeps a mark it can find.
#ifdef SCRATCHNET_SIM_SCAN
#define __global__ __scratchnet_kernel__
#else
#define __global__
#endif
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Not `static`: g++ would treat a static variable the file never writes as a constant and fold its
// reads, but `__constant__` memory is set from the host (SimModule.get_global). `used` keeps it, and keeps
// g++ from that folding for one declared `static __constant__`.
#define __constant__ __attribute__((used))
#define __managed__
// __shared__ memory is one copy per block, shared by the block's threads. Each OS thread of the pool runs
// one block at a time, so a variable with one copy per OS thread is exactly that. `thread_local` also fits
// `extern __shared__ float smem[];`, the dynamic shared memory, which the generated wrapper defines at file
// scope with the largest size a launch may ask for: written at file scope or inside a kernel, the
// declaration names that one array (`extern` at block scope refers to the namespace-scope variable). g++
// needs -fno-extern-tls-init for the second placement (compiler.py says why).
#define __shared__ thread_local
// A checked build puts one of these before and after each static __shared__ declaration (compiler.py's
// with_shared_redzones): 64 bytes that no kernel may touch, so that a thread running off either end of a
// shared array lands in a redzone rather than in the neighbouring array. `used`: kept though never read.
#define SIM_SHARED_REDZONE(n) \
    [[maybe_unused]] static thread_local __attribute__((used)) unsigned char sim_shared_redzone_##n[64];

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// ---- vector types ----------------------------------------------------------------------------------------
// CUDA's built-in vectors, with its alignment (a float4 load is one 16-byte access) and make_* functions.
// vector_traits gives the element type and lane count of each (float4: float, 4), for kernel signatures.
namespace sim_rt {
template <class T>
struct vector_traits {
    using element = T;
    static constexpr int lanes = 1;
};
}  // namespace sim_rt
#define SIM_VECTOR_TRAITS(name, T, n)    \
    template <>                          \
    struct sim_rt::vector_traits<name> { \
        using element = T;               \
        static constexpr int lanes = n;  \
    };
#define SIM_VECTOR2(name, T, align)                                   \
    struct __attribute__((aligned(align))) name {                     \
        T x, y;                                                       \
    };                                                                \
    inline name make_##name(T x, T y) { return name{x, y}; }          \
    SIM_VECTOR_TRAITS(name, T, 2)
#define SIM_VECTOR3(name, T)                                          \
    struct name {                                                     \
        T x, y, z;                                                    \
    };                                                                \
    inline name make_##name(T x, T y, T z) { return name{x, y, z}; }  \
    SIM_VECTOR_TRAITS(name, T, 3)
#define SIM_VECTOR4(name, T, align)                                              \
    struct __attribute__((aligned(align))) name {                                \
        T x, y, z, w;                                                            \
    };                                                                           \
    inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }     \
    SIM_VECTOR_TRAITS(name, T, 4)
SIM_VECTOR2(char2, signed char, 2)
SIM_VECTOR4(char4, signed char, 4)
SIM_VECTOR2(uchar2, unsigned char, 2)
SIM_VECTOR4(uchar4, unsigned char, 4)
SIM_VECTOR2(short2, short, 4)
SIM_VECTOR4(short4, short, 8)
SIM_VECTOR2(ushort2, unsigned short, 4)
SIM_VECTOR4(ushort4, unsigned short, 8)
SIM_VECTOR2(int2, int, 8)
SIM_VECTOR3(int3, int)
SIM_VECTOR4(int4, int, 16)
SIM_VECTOR2(uint2, unsigned int, 8)
SIM_VECTOR4(uint4, unsigned int, 16)
SIM_VECTOR2(longlong2, long long, 16)
SIM_VECTOR2(ulonglong2, unsigned long long, 16)
SIM_VECTOR2(float2, float, 8)
SIM_VECTOR3(float3, float)
SIM_VECTOR4(float4, float, 16)
SIM_VECTOR2(double2, double, 16)
SIM_VECTOR_TRAITS(uint3, unsigned int, 3)
inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) { return uint3{x, y, z}; }
#undef SIM_VECTOR2
#undef SIM_VECTOR3
#undef SIM_VECTOR4
#undef SIM_VECTOR_TRAITS

namespace sim_rt {
// The state of the thread that is running now on this OS thread (each OS thread of the pool runs its own
// block). The scheduler writes it before it resumes a thread.
struct ThreadState {
    uint3 thread_idx;
    uint3 block_idx;
    dim3 block_dim;
    dim3 grid_dim;
};
// Every simulated thread runs on a fiber stack inside a region of kFiberRegionBytes aligned to its size
// (runtime.cpp). Near the region's top, at an offset that depends on the region's address, a header holds a
// pointer to the ThreadState of the OS thread that owns the stack. So the state is found from the stack
// pointer alone, with no thread-local lookup: threadIdx in an inner loop costs a few instructions. (The
// offset varies so that the headers of a block's many stacks do not all compete for the same cache set.)
// In gdb: `print sim_rt::current_state()`.
constexpr uintptr_t kFiberRegionBytes = uintptr_t(1) << 20;
SIM_UNCHECKED inline uintptr_t stack_pointer() {
    uintptr_t sp;
#if defined(__x86_64__)
    asm("movq %%rsp, %0" : "=r"(sp));
#else
    asm("mov %0, sp" : "=r"(sp));
#endif
    return sp;
}
// The address of the header of the region holding `address`: two pointers, to the Scheduler (runtime.cpp)
// and to the ThreadState.
SIM_UNCHECKED inline void* const* fiber_header(uintptr_t address) {
    uintptr_t base = address & ~(kFiberRegionBytes - 1);
    uintptr_t offset = kFiberRegionBytes - 16 - (base / kFiberRegionBytes % 64) * 1088;
    return reinterpret_cast<void* const*>(base + offset);
}
SIM_UNCHECKED inline ThreadState& current_state() {
    return *static_cast<ThreadState*>(fiber_header(stack_pointer())[1]);
}
// Where a barrier or warp function was called in the kernel's source, for reports (file:line): as a default
// argument, `Site site = Site()` is the caller's file and line.
struct Site {
    const char* file;
    int line;
    constexpr Site(const char* file_ = __builtin_FILE(), int line_ = __builtin_LINE()) : file(file_), line(line_) {}
};
void syncthreads(Site site);                     // block-wide barrier; `site` tells barrier sites apart
void syncwarp(unsigned int mask, Site site);     // barrier of the lanes of this warp named in `mask`
void grid_sync(Site site);                       // cooperative groups' grid.sync()
bool cooperative_launch();                       // the launch runs every block at once (grid.sync() works)
unsigned long long* warp_slots();                // one 8-byte exchange slot per thread of the block
unsigned int lane_id();                          // linear thread index % 32
unsigned int warp_base();                        // linear index of lane 0 of this warp
unsigned int thread_rank();                      // linear thread index in the block
unsigned int warp_lanes();                       // the lanes of this warp that exist in the block
unsigned int converged_lanes(const char* file, int line);  // the lanes reaching this call site together
[[noreturn]] void trap(const char* what, const char* file, int line);  // ends the launch with an error
}  // namespace sim_rt

#define threadIdx (::sim_rt::current_state().thread_idx)
#define blockIdx (::sim_rt::current_state().block_idx)
#define blockDim (::sim_rt::current_state().block_dim)
#define gridDim (::sim_rt::current_state().grid_dim)
#define warpSize 32

// ---- synchronisation -------------------------------------------------------------------------------------
// __syncthreads() is a macro so that the barrier knows its source line: threads waiting at two different
// __syncthreads() (one in an if, one in its else) are a barrier divergence, not one barrier.
#define __syncthreads() ::sim_rt::syncthreads(::sim_rt::Site(__FILE__, __LINE__))
inline void __syncwarp(unsigned int mask = 0xffffffffu, ::sim_rt::Site site = ::sim_rt::Site()) {
    ::sim_rt::syncwarp(mask, site);
}
namespace sim_rt {
// Every thread publishes its predicate, the block meets, everyone reads all, and the block meets again so
// that no slot is overwritten before everybody has read it.
template <class Combine>
SIM_UNCHECKED inline int block_vote(int predicate, Site site, Combine combine) {
    unsigned long long* slots = warp_slots();
    slots[thread_rank()] = predicate != 0;
    syncthreads(site);
    const dim3& b = current_state().block_dim;
    unsigned int n = b.x * b.y * b.z;
    int count = 0;
    for (unsigned int t = 0; t < n; ++t) count += (int)slots[t];
    syncthreads(site);
    return combine(count, (int)n);
}
}  // namespace sim_rt
#define __syncthreads_count(p) ::sim_rt::block_vote((p), ::sim_rt::Site(__FILE__, __LINE__), [](int count, int) { return count; })
#define __syncthreads_and(p) ::sim_rt::block_vote((p), ::sim_rt::Site(__FILE__, __LINE__), [](int count, int n) { return int(count == n); })
#define __syncthreads_or(p) ::sim_rt::block_vote((p), ::sim_rt::Site(__FILE__, __LINE__), [](int count, int) { return int(count > 0); })
#define __trap() ::sim_rt::trap("__trap() was called", __FILE__, __LINE__)
// The threads of a block take turns on one OS thread, so they always see each other's writes; blocks on
// other OS threads get a real fence.
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() {}
inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __nanosleep(unsigned int) {}
// The GPU's cycle counters; here nanoseconds of a monotonic clock (clock() is the C library's, in
// microseconds of processor time). Differences measure time, though not the GPU's.
inline long long clock64() {
    timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

// ---- cache-hinted loads and stores: plain accesses here ----------------------------------------------------
#define SIM_LOAD(name) \
    template <class T> \
    inline T name(const T* p) { return *p; }
#define SIM_STORE(name) \
    template <class T> \
    inline void name(T* p, T value) { *p = value; }
SIM_LOAD(__ldg)
SIM_LOAD(__ldcg)
SIM_LOAD(__ldca)
SIM_LOAD(__ldcs)
SIM_LOAD(__ldlu)
SIM_LOAD(__ldcv)
SIM_STORE(__stwb)
SIM_STORE(__stcg)
SIM_STORE(__stcs)
SIM_STORE(__stwt)
#undef SIM_LOAD
#undef SIM_STORE

// ---- atomics ---------------------------------------------------------------------------------------------
// CUDA's overload set (not templates, so that atomicAdd(unsigned*, 1) converts the 1 as nvcc does). Threads
// of one block switch only at barriers, but blocks run at the same time on several OS threads: the __atomic
// builtins make each update one indivisible step for them too.
namespace sim_rt {
template <class T, class F>
SIM_UNCHECKED inline T atomic_update(T* address, F f) {  // read-modify-write with a compare-and-swap loop
    T old = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(address, &old, f(old), false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
template <class T, class F>
SIM_UNCHECKED inline T atomic_update_float(T* address, F f) {  // the same on the bits of a float or double
    using Bits = std::conditional_t<sizeof(T) == 4, unsigned int, unsigned long long>;
    Bits old = atomic_update(reinterpret_cast<Bits*>(address), [&](Bits bits) {
        T value;
        __builtin_memcpy(&value, &bits, sizeof value);
        value = f(value);
        __builtin_memcpy(&bits, &value, sizeof value);
        return bits;
    });
    T result;
    __builtin_memcpy(&result, &old, sizeof result);
    return result;
}
}  // namespace sim_rt
#define SIM_ATOMIC_INTEGER(T)                                                                                  \
    SIM_UNCHECKED inline T atomicAdd(T* a, T v) { return __atomic_fetch_add(a, v, __ATOMIC_RELAXED); }                    \
    SIM_UNCHECKED inline T atomicSub(T* a, T v) { return __atomic_fetch_sub(a, v, __ATOMIC_RELAXED); }                    \
    SIM_UNCHECKED inline T atomicAnd(T* a, T v) { return __atomic_fetch_and(a, v, __ATOMIC_RELAXED); }                    \
    SIM_UNCHECKED inline T atomicOr(T* a, T v) { return __atomic_fetch_or(a, v, __ATOMIC_RELAXED); }                      \
    SIM_UNCHECKED inline T atomicXor(T* a, T v) { return __atomic_fetch_xor(a, v, __ATOMIC_RELAXED); }                    \
    SIM_UNCHECKED inline T atomicExch(T* a, T v) { return __atomic_exchange_n(a, v, __ATOMIC_RELAXED); }                  \
    SIM_UNCHECKED inline T atomicMin(T* a, T v) { return ::sim_rt::atomic_update(a, [v](T old) { return v < old ? v : old; }); } \
    SIM_UNCHECKED inline T atomicMax(T* a, T v) { return ::sim_rt::atomic_update(a, [v](T old) { return old < v ? v : old; }); } \
    SIM_UNCHECKED inline T atomicCAS(T* a, T compare, T v) {                                                                 \
        __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);               \
        return compare;                                                                                        \
    }
SIM_ATOMIC_INTEGER(int)
SIM_ATOMIC_INTEGER(unsigned int)
SIM_ATOMIC_INTEGER(long long)
SIM_ATOMIC_INTEGER(unsigned long long)
#undef SIM_ATOMIC_INTEGER
SIM_UNCHECKED inline unsigned short atomicCAS(unsigned short* a, unsigned short compare, unsigned short v) {
    __atomic_compare_exchange_n(a, &compare, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}
SIM_UNCHECKED inline float atomicAdd(float* a, float v) { return ::sim_rt::atomic_update_float(a, [v](float o) { return o + v; }); }
SIM_UNCHECKED inline double atomicAdd(double* a, double v) {
    return ::sim_rt::atomic_update_float(a, [v](double o) { return o + v; });
}
SIM_UNCHECKED inline float atomicExch(float* a, float v) { return ::sim_rt::atomic_update_float(a, [v](float) { return v; }); }
// atomicInc/atomicDec wrap around at `limit`, as on the GPU.
SIM_UNCHECKED inline unsigned int atomicInc(unsigned int* a, unsigned int limit) {
    return ::sim_rt::atomic_update(a, [limit](unsigned int old) { return old >= limit ? 0u : old + 1; });
}
SIM_UNCHECKED inline unsigned int atomicDec(unsigned int* a, unsigned int limit) {
    return ::sim_rt::atomic_update(a, [limit](unsigned int old) { return old == 0 || old > limit ? limit : old - 1; });
}
// The _block and _system variants differ on a GPU only in which threads see the update atomically.
#define SIM_ATOMIC_SCOPES(name)                                                                 \
    template <class... A>                                                                       \
    inline auto name##_block(A... a) { return name(a...); }                                     \
    template <class... A>                                                                       \
    inline auto name##_system(A... a) { return name(a...); }
SIM_ATOMIC_SCOPES(atomicAdd)
SIM_ATOMIC_SCOPES(atomicSub)
SIM_ATOMIC_SCOPES(atomicExch)
SIM_ATOMIC_SCOPES(atomicMin)
SIM_ATOMIC_SCOPES(atomicMax)
SIM_ATOMIC_SCOPES(atomicInc)
SIM_ATOMIC_SCOPES(atomicDec)
SIM_ATOMIC_SCOPES(atomicCAS)
SIM_ATOMIC_SCOPES(atomicAnd)
SIM_ATOMIC_SCOPES(atomicOr)
SIM_ATOMIC_SCOPES(atomicXor)
#undef SIM_ATOMIC_SCOPES
#ifdef SIM_CHECKED
// A checked build reports each atomic to the runtime (memcheck, initcheck, and racecheck: an atomic and a
// plain access of two threads race, two atomics do not), from the kernel's own code so that the report
// names the kernel's line.
namespace sim_rt {
void atomic_access(void* address, size_t size);
template <class T>
__attribute__((always_inline)) inline T* atomic_checked(T* address) {
    atomic_access((void*)address, sizeof(T));
    return address;
}
}  // namespace sim_rt
#define atomicAdd(address, ...) atomicAdd(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicSub(address, ...) atomicSub(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicExch(address, ...) atomicExch(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicMin(address, ...) atomicMin(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicMax(address, ...) atomicMax(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicInc(address, ...) atomicInc(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicDec(address, ...) atomicDec(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicCAS(address, ...) atomicCAS(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicAnd(address, ...) atomicAnd(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicOr(address, ...) atomicOr(::sim_rt::atomic_checked(address), __VA_ARGS__)
#define atomicXor(address, ...) atomicXor(::sim_rt::atomic_checked(address), __VA_ARGS__)
#endif

// ---- warp shuffles, votes, reductions and matches -------------------------------------------------------
// Each lane named in `mask` publishes 8 bytes in its slot, those lanes meet at a warp barrier, each reads
// the slots it needs, and they meet again so that no slot is overwritten before everybody has read it.
// Lanes outside `mask` may be anywhere (a shuffle inside `if (lane < 16)` with mask 0xffff is correct CUDA).
namespace sim_rt {
template <class T>
SIM_UNCHECKED inline unsigned long long to_slot(T value) {
    static_assert(sizeof(T) <= 8, "warp functions move at most 8 bytes");
    unsigned long long bits = 0;
    __builtin_memcpy(&bits, &value, sizeof(T));
    return bits;
}
template <class T>
SIM_UNCHECKED inline T from_slot(unsigned long long bits) {
    T value;
    __builtin_memcpy(&value, &bits, sizeof(T));
    return value;
}
// `read(slots, lanes)` sees this warp's 32 slots and the lanes of `mask` that exist in the block (each
// `read` is SIM_UNCHECKED too: the slots are the scheduler's, not the kernel's memory).
template <class Read>
SIM_UNCHECKED inline auto warp_exchange(unsigned int mask, unsigned long long bits, Site site, Read read) {
    unsigned long long* slots = warp_slots() + warp_base();
    slots[lane_id()] = bits;
    syncwarp(mask, site);
    auto result = read(static_cast<const unsigned long long*>(slots), mask & warp_lanes());
    syncwarp(mask, site);
    return result;
}
template <class T>
SIM_UNCHECKED inline T shuffle(unsigned int mask, T value, int source_lane_in_segment, int width, Site site) {
    unsigned int segment_start = lane_id() - lane_id() % (unsigned int)width;
    return warp_exchange(mask, to_slot(value), site, [&](const unsigned long long* slots, unsigned int) SIM_UNCHECKED {
        bool inside = source_lane_in_segment >= 0 && source_lane_in_segment < width;
        return inside ? from_slot<T>(slots[segment_start + (unsigned int)source_lane_in_segment]) : value;
    });
}
// The bit of each lane of `mask` whose predicate is non-zero.
SIM_UNCHECKED inline unsigned int ballot(unsigned int mask, int predicate, Site site) {
    return warp_exchange(mask, predicate != 0, site, [](const unsigned long long* slots, unsigned int lanes) SIM_UNCHECKED {
        unsigned int bits = 0;
        for (unsigned int lane = 0; lane < 32; ++lane)
            if ((lanes >> lane & 1u) && slots[lane]) bits |= 1u << lane;
        return bits;
    });
}
// `op` over the values of the lanes of `mask` (__reduce_*_sync).
template <class T, class Op>
SIM_UNCHECKED inline T warp_reduce(unsigned int mask, T value, Op op, Site site) {
    return warp_exchange(mask, to_slot(value), site, [&](const unsigned long long* slots, unsigned int lanes) SIM_UNCHECKED {
        T total = value;
        for (unsigned int lane = 0; lane < 32; ++lane)
            if ((lanes >> lane & 1u) && lane != lane_id()) total = op(total, from_slot<T>(slots[lane]));
        return total;
    });
}
// The lanes of `mask` whose value has the same bits as this lane's (__match_*_sync).
template <class T>
SIM_UNCHECKED inline unsigned int lanes_matching(unsigned int mask, T value, Site site) {
    return warp_exchange(mask, to_slot(value), site, [](const unsigned long long* slots, unsigned int lanes) SIM_UNCHECKED {
        unsigned int same = 0;
        for (unsigned int lane = 0; lane < 32; ++lane)
            if ((lanes >> lane & 1u) && slots[lane] == slots[lane_id()]) same |= 1u << lane;
        return same;
    });
}
}  // namespace sim_rt

// Each takes the caller's source line as a last, defaulted argument (sim_rt::Site) for reports.
#define SIM_SITE ::sim_rt::Site site = ::sim_rt::Site()
template <class T>
inline T __shfl_sync(unsigned int mask, T value, int source_lane, int width = 32, SIM_SITE) {
    return ::sim_rt::shuffle(mask, value, ((source_lane % width) + width) % width, width, site);
}
template <class T>
inline T __shfl_down_sync(unsigned int mask, T value, unsigned int delta, int width = 32, SIM_SITE) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(mask, value, lane + (int)delta, width, site);
}
template <class T>
inline T __shfl_up_sync(unsigned int mask, T value, unsigned int delta, int width = 32, SIM_SITE) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(mask, value, lane - (int)delta, width, site);
}
template <class T>
inline T __shfl_xor_sync(unsigned int mask, T value, int lane_mask, int width = 32, SIM_SITE) {
    int lane = (int)(::sim_rt::lane_id() % (unsigned int)width);
    return ::sim_rt::shuffle(mask, value, lane ^ lane_mask, width, site);
}
inline unsigned int __ballot_sync(unsigned int mask, int predicate, SIM_SITE) {
    return ::sim_rt::ballot(mask, predicate, site);
}
inline int __any_sync(unsigned int mask, int predicate, SIM_SITE) { return ::sim_rt::ballot(mask, predicate, site) != 0; }
inline int __all_sync(unsigned int mask, int predicate, SIM_SITE) {
    return ::sim_rt::ballot(mask, predicate, site) == (mask & ::sim_rt::warp_lanes());
}
// The sm_80 warp reductions; the sum wraps around as unsigned arithmetic does.
inline unsigned int __reduce_add_sync(unsigned int mask, unsigned int value, SIM_SITE) {
    return ::sim_rt::warp_reduce(mask, value, [](unsigned int a, unsigned int b) { return a + b; }, site);
}
inline int __reduce_add_sync(unsigned int mask, int value, SIM_SITE) {
    return (int)__reduce_add_sync(mask, (unsigned int)value, site);
}
template <class T>
inline T __reduce_min_sync(unsigned int mask, T value, SIM_SITE) {
    static_assert(std::is_same_v<T, int> || std::is_same_v<T, unsigned int>, "__reduce_min_sync takes int or unsigned");
    return ::sim_rt::warp_reduce(mask, value, [](T a, T b) { return b < a ? b : a; }, site);
}
template <class T>
inline T __reduce_max_sync(unsigned int mask, T value, SIM_SITE) {
    static_assert(std::is_same_v<T, int> || std::is_same_v<T, unsigned int>, "__reduce_max_sync takes int or unsigned");
    return ::sim_rt::warp_reduce(mask, value, [](T a, T b) { return a < b ? b : a; }, site);
}
inline unsigned int __reduce_and_sync(unsigned int mask, unsigned int value, SIM_SITE) {
    return ::sim_rt::warp_reduce(mask, value, [](unsigned int a, unsigned int b) { return a & b; }, site);
}
inline unsigned int __reduce_or_sync(unsigned int mask, unsigned int value, SIM_SITE) {
    return ::sim_rt::warp_reduce(mask, value, [](unsigned int a, unsigned int b) { return a | b; }, site);
}
inline unsigned int __reduce_xor_sync(unsigned int mask, unsigned int value, SIM_SITE) {
    return ::sim_rt::warp_reduce(mask, value, [](unsigned int a, unsigned int b) { return a ^ b; }, site);
}
template <class T>
inline unsigned int __match_any_sync(unsigned int mask, T value, SIM_SITE) {
    return ::sim_rt::lanes_matching(mask, value, site);
}
template <class T>
inline unsigned int __match_all_sync(unsigned int mask, T value, int* predicate, SIM_SITE) {
    unsigned int lanes = mask & ::sim_rt::warp_lanes();
    *predicate = ::sim_rt::lanes_matching(mask, value, site) == lanes;
    return *predicate ? lanes : 0u;
}
// The lanes of this warp that reach this call site together: each waits here until every lane of its warp
// has either arrived or stopped elsewhere (at a barrier, or returned), as lanes that diverged would on a GPU.
inline unsigned int __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
    return ::sim_rt::converged_lanes(file, line);
}
inline unsigned int __lanemask_lt() { return (1u << ::sim_rt::lane_id()) - 1u; }

// ---- bit and conversion intrinsics -----------------------------------------------------------------------
inline int __popc(unsigned int x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
    return __builtin_bswap32(x);
}
inline unsigned long long __brevll(unsigned long long x) {
    return ((unsigned long long)__brev((unsigned int)x) << 32) | __brev((unsigned int)(x >> 32));
}
inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
inline unsigned int __umul24(unsigned int a, unsigned int b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }
inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return (long long)(((__int128)a * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int shift) {
    return (unsigned int)((((unsigned long long)hi << 32 | lo) << (shift & 31)) >> 32);
}
inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int shift) {
    return (unsigned int)(((unsigned long long)hi << 32 | lo) >> (shift & 31));
}
inline unsigned int __sad(int x, int y, unsigned int z) { return z + (unsigned int)(x > y ? x - y : y - x); }
inline unsigned int __usad(unsigned int x, unsigned int y, unsigned int z) { return z + (x > y ? x - y : y - x); }
inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
inline int __float2int_rz(float x) { return (int)truncf(x); }
inline int __float2int_rd(float x) { return (int)floorf(x); }
inline int __float2int_ru(float x) { return (int)ceilf(x); }
inline unsigned int __float2uint_rn(float x) { return (unsigned int)nearbyintf(x); }
inline unsigned int __float2uint_rz(float x) { return (unsigned int)truncf(x); }
inline long long __float2ll_rn(float x) { return (long long)nearbyintf(x); }
inline long long __float2ll_rz(float x) { return (long long)truncf(x); }
inline float __int2float_rn(int x) { return (float)x; }
inline float __uint2float_rn(unsigned int x) { return (float)x; }
inline int __double2int_rn(double x) { return (int)nearbyint(x); }
inline int __double2int_rz(double x) { return (int)trunc(x); }
inline float __double2float_rn(double x) { return (float)x; }
inline double __int2double_rn(int x) { return (double)x; }
// Round-to-nearest arithmetic is what the host does; the other rounding modes are approximated by it.
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fmaf_rz(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
inline float __frsqrt_rn(float a) { return 1.0f / sqrtf(a); }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return sqrt(a); }

// ---- math ------------------------------------------------------------------------------------------------
// <math.h> gives expf, logf, sqrtf, powf, fmaxf, ... and the float overloads of exp, log, sqrt, ... in the
// global namespace, as CUDA does. These are the CUDA-only extras; the fast-math intrinsics (__expf, ...)
// are the accurate functions here, so results may differ from a GPU in the last bits.
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x), *c = cosf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.7071067811865476); }
// Reinterpretations of the bits of a value as another type of the same size.
namespace sim_rt {
template <class To, class From>
inline To bit_cast(From value) {
    static_assert(sizeof(To) == sizeof(From), "bit casts keep the size");
    To result;
    __builtin_memcpy(&result, &value, sizeof result);
    return result;
}
}  // namespace sim_rt
inline int __float_as_int(float x) { return ::sim_rt::bit_cast<int>(x); }
inline float __int_as_float(int i) { return ::sim_rt::bit_cast<float>(i); }
inline unsigned int __float_as_uint(float x) { return ::sim_rt::bit_cast<unsigned int>(x); }
inline float __uint_as_float(unsigned int i) { return ::sim_rt::bit_cast<float>(i); }
inline long long __double_as_longlong(double x) { return ::sim_rt::bit_cast<long long>(x); }
inline double __longlong_as_double(long long i) { return ::sim_rt::bit_cast<double>(i); }

// ---- 16-bit floating point: what cuda_fp16.h's __half and cuda_bf16.h's __nv_bfloat16 build on -------------
// Storage types (2 bytes, the bits in __x) that convert to and from float, rounding to nearest even as
// __float2half and __float2bfloat16 do. Arithmetic converts to float: `a * b` is a float, rounded when it is
// stored back into a half (a GPU rounds each half operation: the results may differ in the last bit).
namespace sim_rt {
struct ieee_half_format {
    static unsigned short from_float(float x) { return bit_cast<unsigned short>(static_cast<_Float16>(x)); }
    static float to_float(unsigned short bits) { return static_cast<float>(bit_cast<_Float16>(bits)); }
};
struct bfloat16_format {  // the high half of a float's bits
    static unsigned short from_float(float x) {
        unsigned int bits = bit_cast<unsigned int>(x);
        if ((bits & 0x7fffffffu) > 0x7f800000u) return (unsigned short)(bits >> 16 | 0x40u);  // a quiet NaN
        return (unsigned short)((bits + 0x7fffu + (bits >> 16 & 1u)) >> 16);
    }
    static float to_float(unsigned short bits) { return bit_cast<float>((unsigned int)bits << 16); }
};
template <class Format>
struct float16 {
    unsigned short __x;
    float16() = default;
    template <class T, std::enable_if_t<std::is_arithmetic_v<T>, int> = 0>
    float16(T value) : __x(Format::from_float(static_cast<float>(value))) {}
    operator float() const { return Format::to_float(__x); }
    float16& operator+=(float x) { return *this = float(*this) + x; }
    float16& operator-=(float x) { return *this = float(*this) - x; }
    float16& operator*=(float x) { return *this = float(*this) * x; }
    float16& operator/=(float x) { return *this = float(*this) / x; }
};
template <class T>
constexpr bool is_float16_v = std::is_base_of_v<float16<ieee_half_format>, T> || std::is_base_of_v<float16<bfloat16_format>, T>;
template <class T>
using if_float16 = std::enable_if_t<is_float16_v<T>, T>;
}  // namespace sim_rt
// The scalar type `name` in `format`, its pair type (x, y) and CUDA's conversions, spelled with `suffix`
// as cuda_fp16.h (half) and cuda_bf16.h (bfloat16) spell them: __float2half, __half2float, ...
#define SIM_FLOAT16_TYPES(name, pair, format, suffix)                                                        \
    struct name : ::sim_rt::float16<::sim_rt::format> {                                                      \
        using float16::float16;                                                                              \
    };                                                                                                       \
    struct __align__(4) pair {                                                                               \
        name x, y;                                                                                           \
    };                                                                                                       \
    template <>                                                                                              \
    struct sim_rt::vector_traits<pair> {                                                                     \
        using element = name;                                                                                \
        static constexpr int lanes = 2;                                                                      \
    };                                                                                                       \
    inline name __float2##suffix(float x) { return name(x); }                                                \
    inline name __float2##suffix##_rn(float x) { return name(x); }                                           \
    inline name __double2##suffix(double x) { return name(x); }                                              \
    inline float __##suffix##2float(name h) { return float(h); }                                             \
    inline unsigned short __##suffix##_as_ushort(name h) { return h.__x; }                                   \
    inline name __ushort_as_##suffix(unsigned short bits) {                                                  \
        name h;                                                                                              \
        h.__x = bits;                                                                                        \
        return h;                                                                                            \
    }                                                                                                        \
    inline pair __floats2##suffix##2_rn(float low, float high) { return {name(low), name(high)}; }           \
    inline pair __float2##suffix##2_rn(float x) { return {name(x), name(x)}; }                               \
    inline float2 __##suffix##22float2(pair h) { return make_float2(float(h.x), float(h.y)); }               \
    inline float __low2float(pair h) { return float(h.x); }                                                  \
    inline float __high2float(pair h) { return float(h.y); }
// The arithmetic and comparison intrinsics of both types (the cuda_fp16.h and cuda_bf16.h headers name the
// types, the pairs and the conversions).
template <class H> inline ::sim_rt::if_float16<H> __hadd(H a, H b) { return H(float(a) + float(b)); }
template <class H> inline ::sim_rt::if_float16<H> __hsub(H a, H b) { return H(float(a) - float(b)); }
template <class H> inline ::sim_rt::if_float16<H> __hmul(H a, H b) { return H(float(a) * float(b)); }
template <class H> inline ::sim_rt::if_float16<H> __hdiv(H a, H b) { return H(float(a) / float(b)); }
template <class H> inline ::sim_rt::if_float16<H> __hfma(H a, H b, H c) { return H(fmaf(float(a), float(b), float(c))); }
template <class H> inline ::sim_rt::if_float16<H> __hneg(H a) { return H(-float(a)); }
template <class H> inline ::sim_rt::if_float16<H> __habs(H a) { return H(fabsf(float(a))); }
template <class H> inline ::sim_rt::if_float16<H> __hmax(H a, H b) { return H(fmaxf(float(a), float(b))); }
template <class H> inline ::sim_rt::if_float16<H> __hmin(H a, H b) { return H(fminf(float(a), float(b))); }
template <class H> inline ::sim_rt::if_float16<H> hsqrt(H a) { return H(sqrtf(float(a))); }
template <class H> inline ::sim_rt::if_float16<H> hexp(H a) { return H(expf(float(a))); }
template <class H> inline ::sim_rt::if_float16<H> hlog(H a) { return H(logf(float(a))); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __heq(H a, H b) { return float(a) == float(b); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __hne(H a, H b) { return float(a) != float(b); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __hlt(H a, H b) { return float(a) < float(b); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __hle(H a, H b) { return float(a) <= float(b); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __hgt(H a, H b) { return float(a) > float(b); }
template <class H, class = ::sim_rt::if_float16<H>> inline bool __hge(H a, H b) { return float(a) >= float(b); }

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

// ---- what the generated wrapper uses after the kernel file -----------------------------------------------
// Defined here, before the kernel file, so that its macros cannot change them.
#include <cxxabi.h>

#include <cstdlib>
#include <typeinfo>
#include <utility>

namespace sim_rt {
struct KernelEntry {
    void (*thread_body)(void** args);  // runs one CUDA thread of the kernel
    std::string (*describe)();         // the parameter types (see describe_type)
};

// Calls `kernel` with the arguments packed as in cuLaunchKernel: args[i] points at the i-th value.
template <class... P, std::size_t... I>
SIM_UNCHECKED void invoke(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
    kernel(*static_cast<std::remove_reference_t<P>*>(args[I])...);
}
template <class... P>
SIM_UNCHECKED void invoke(void (*kernel)(P...), void** args) {
    invoke(kernel, args, std::index_sequence_for<P...>{});
}

template <class T>
std::string type_name() {
    int status = 0;
    char* name = abi::__cxa_demangle(typeid(T).name(), nullptr, nullptr, &status);
    std::string out = status == 0 ? name : typeid(T).name();
    std::free(name);
    return out;
}

// One parameter as "pointer|const|kind|size|lanes|name;": pointer is 0, 1 or 2 (a pointer to a pointer);
// const says the pointee is const; kind is b (bool), i, u, f, or V (any other type, size = its sizeof);
// for a CUDA vector type (float4) kind and size describe the element and lanes counts them; name is the
// C++ spelling of the (pointee) type without const, e.g. "float", "float4", "Params".
template <class T>
void describe_type(std::string& out) {
    using Pointee = std::remove_pointer_t<T>;
    using Base = std::remove_cv_t<Pointee>;
    using Element = typename vector_traits<Base>::element;
    int pointer = std::is_pointer_v<T> ? (std::is_pointer_v<Base> ? 2 : 1) : 0;
    out += std::to_string(pointer) + "|" + (std::is_pointer_v<T> && std::is_const_v<Pointee> ? "1" : "0") + "|";
    if constexpr (std::is_same_v<Element, bool>) {
        out += "b";
    } else if constexpr (std::is_base_of_v<float16<bfloat16_format>, Element>) {
        out += "u";  // NumPy has no bfloat16: its arrays are passed as uint16 bits
    } else if constexpr (std::is_floating_point_v<Element> || is_float16_v<Element>) {
        out += "f";
    } else if constexpr (std::is_integral_v<Element>) {
        out += std::is_signed_v<Element> ? "i" : "u";
    } else {
        out += "V";
    }
    if constexpr (std::is_void_v<Element>) {
        out += "|1|1|void;";
    } else {
        out += "|" + std::to_string(sizeof(Element)) + "|" + std::to_string(vector_traits<Base>::lanes) + "|" +
               type_name<Base>() + ";";
    }
}
template <class... P>
std::string describe(void (*)(P...)) {
    std::string out;
    (describe_type<P>(out), ...);
    return out;
}
}  // namespace sim_rt
