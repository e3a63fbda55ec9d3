// Helpers of the kernel harness's timing (scratchnet/kernel_bench.py). They matter on a GPU only: the
// simulator has no GPU clock (and runs no PTX assembly), so there spin() returns at once.
//
// Timing one short kernel with a pair of CUDA events also measures the host: if the CPU enqueues the
// launch after the GPU reached the start event, the gap counts as kernel time. So the harness first queues
// spin(), which keeps the GPU busy while the CPU enqueues every timed launch behind it (llm.c's
// dev/cuda/common.h does the same); the events then measure only the GPU's work.

// Thread mapping: launched as one thread (grid (1,), block (1,)); it waits for `nanoseconds` of the GPU's
// global timer and does nothing else.
extern "C" __global__ void spin(long long nanoseconds) {
#if defined(__CUDA_ARCH__) && !defined(SCRATCHNET_SIM)
    unsigned long long start, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    do {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    } while ((long long)(now - start) < nanoseconds);
#endif
}

// Thread mapping: any; does nothing. Launched back to back, it measures the cost of a launch itself.
extern "C" __global__ void empty_kernel() {}
