// cuda_fp16.h for the CUDA simulator: __half and __half2 as storage types, with CUDA's conversions
// (cuda_sim.h's SIM_FLOAT16_TYPES, shared with cuda_bf16.h, as are the arithmetic intrinsics __hadd, __hmul,
// ...). A __half* kernel parameter takes a NumPy float16 array.
#pragma once

SIM_FLOAT16_TYPES(__half, __half2, ieee_half_format, half)
typedef __half half;
typedef __half2 half2;

inline __half __int2half_rn(int x) { return __half(x); }
inline int __half2int_rz(__half h) { return (int)float(h); }
inline __half2 __halves2half2(__half low, __half high) { return {low, high}; }
inline __half2 __float22half2_rn(float2 v) { return {__half(v.x), __half(v.y)}; }
inline __half __low2half(__half2 h) { return h.x; }
inline __half __high2half(__half2 h) { return h.y; }
inline __half2 __hadd2(__half2 a, __half2 b) { return {__hadd(a.x, b.x), __hadd(a.y, b.y)}; }
inline __half2 __hmul2(__half2 a, __half2 b) { return {__hmul(a.x, b.x), __hmul(a.y, b.y)}; }
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) { return {__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)}; }
