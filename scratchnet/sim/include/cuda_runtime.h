// cuda_runtime.h for the CUDA simulator: what a kernel file needs from it is in cuda_sim.h (force-included).
#pragma once
