// What several kernel files need, written once. Every kernels/*.cu that uses it starts with
//
//   #include "common.cuh"
//
// NVRTC (scratchnet/_cuda/nvrtc.py), CuPy (scratchnet/cupy_backend.py) and the simulator
// (scratchnet/sim/compiler.py) all compile with kernels/ on the include path. NVRTC has no standard
// headers (no <cmath>, no <limits>), so the helpers below are written from the built-in math functions.
#pragma once

// The side of gemm_tiled's and gemm_bias's square tiles: blocks of TILE x TILE threads (Python reads it
// from here: cuda_defines("common.cuh")["TILE"]).
#define TILE 16

// ceil(a / b) for a >= 0 and b > 0: how many blocks of b cover a.
__device__ inline int cdiv(int a, int b) { return (a + b - 1) / b; }

// Element (r, c) of a row-major matrix X of rows x cols, stored as it is (transpose == 0) or transposed
// (transpose == 1: X is stored cols x rows) -- op(A) and op(B) of a GEMM, without copying a matrix.
template <typename T>
__device__ T load_op(const T* X, int r, int c, int rows, int cols, int transpose) {
    return transpose ? X[(long long)c * rows + r] : X[(long long)r * cols + c];
}

// -infinity, where a max-reduction starts: -1/0 is exact in IEEE arithmetic.
template <typename T>
__device__ T minus_infinity() {
    return -T(1) / T(0);
}

// Per-type math: a template kernel calls exp_of(v) and gets expf for float, exp for double (the float
// call to exp would compute in double, slowly on most GPUs).
__device__ inline float exp_of(float v) { return expf(v); }
__device__ inline double exp_of(double v) { return exp(v); }
__device__ inline float log_of(float v) { return logf(v); }
__device__ inline double log_of(double v) { return log(v); }
__device__ inline float sqrt_of(float v) { return sqrtf(v); }
__device__ inline double sqrt_of(double v) { return sqrt(v); }
__device__ inline float pow_of(float base, float exponent) { return powf(base, exponent); }
__device__ inline double pow_of(double base, double exponent) { return pow(base, exponent); }
