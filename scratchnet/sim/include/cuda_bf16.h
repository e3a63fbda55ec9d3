// cuda_bf16.h for the CUDA simulator: __nv_bfloat16 and __nv_bfloat162 as storage types, with CUDA's
// conversions (cuda_sim.h's SIM_FLOAT16_TYPES, shared with cuda_fp16.h, as are the arithmetic intrinsics
// __hadd, __hmul, ...). NumPy has no bfloat16: a __nv_bfloat16* kernel parameter takes a uint16 array of the
// bits (the high half of each float32's bits, rounded to nearest even).
#pragma once

SIM_FLOAT16_TYPES(__nv_bfloat16, __nv_bfloat162, bfloat16_format, bfloat16)
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;
