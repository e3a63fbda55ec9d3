// Bugs that a checked build must see although the compiler could prove each access in bounds (a __shared__
// scalar, the store half of `x += ...`, a shared array nothing writes, atomics), misaligned accesses, and
// correct kernels that must not be reported (tests/test_sim_unseen_bugs.py). Every kernel here is valid CUDA
// (NVRTC compiles it); the bugs are at run time.

// Every thread writes a __shared__ scalar with no barrier between the writes: a write-after-write race.
extern "C" __global__ void shared_scalar_race(int* y) {
    __shared__ int winner;
    winner = threadIdx.x;
    __syncthreads();
    y[threadIdx.x] = winner;
}

// Every thread of the block adds into the same element of y: a race on global memory inside a block.
extern "C" __global__ void global_sum_race(const float* x, float* y) {
    y[blockIdx.x] += x[blockIdx.x * blockDim.x + threadIdx.x];
}

// The sum of 64 floats, ending with a warp tail. synced = 0: the textbook tail, relying on the warp running in
// lockstep: lanes read what other lanes wrote with no __syncwarp() between (undefined since Volta: wrong
// sums). synced = 1: a __syncwarp() between the steps, as the CUDA samples now write it (correct).
extern "C" __global__ void warp_tail(const float* x, float* y, int synced) {
    __shared__ float sums[64];
    unsigned int t = threadIdx.x;
    sums[t] = x[t];
    __syncthreads();
    if (t < 32 && !synced) {
        volatile float* v = sums;
        v[t] += v[t + 32];
        v[t] += v[t + 16];
        v[t] += v[t + 8];
        v[t] += v[t + 4];
        v[t] += v[t + 2];
        v[t] += v[t + 1];
    }
    if (t < 32 && synced) {
        float v = sums[t] + sums[t + 32];
        for (unsigned int offset = 16; offset > 0; offset /= 2) {
            sums[t] = v;
            __syncwarp();
            if (t < offset) v += sums[t + offset];
            __syncwarp();
        }
        if (t == 0) sums[0] = v;
    }
    if (t == 0) *y = sums[0];
}

// Thread 0 resets the counter with a plain store while the others add to it atomically, with no barrier.
extern "C" __global__ void atomic_and_plain_store(int* count) {
    if (threadIdx.x == 0) count[0] = 0;
    atomicAdd(count, 1);
}

// Reads a shared array that no thread writes.
extern "C" __global__ void never_written_shared(float* y) {
    __shared__ float never[32];
    y[threadIdx.x] = never[threadIdx.x];
}

// Counts into 16 shared bins with 32 threads: the atomics of threads 16-31 land past the end of `bins`.
extern "C" __global__ void atomic_past_shared_end(int* y) {
    __shared__ int bins[16];
    if (threadIdx.x < 16) bins[threadIdx.x] = 0;
    __syncthreads();
    atomicAdd(&bins[threadIdx.x], 1);
    __syncthreads();
    if (threadIdx.x < 16) y[threadIdx.x] = bins[threadIdx.x];
}

// Copies float4s from x + 1 (4 bytes past a 16-byte boundary), or an int from bytes + 1: both fault on a
// GPU. which = 0 for the float4 copy, 1 for the int; 2 loads a misaligned float4 and adds its parts, which
// g++ turns into four float loads, each aligned: that one escapes the check.
extern "C" __global__ void misaligned(const float* x, const unsigned char* bytes, float* y, int which) {
    if (which == 0) {
        reinterpret_cast<float4*>(y)[threadIdx.x] = reinterpret_cast<const float4*>(x + 1)[threadIdx.x];
    } else if (which == 1) {
        y[threadIdx.x] = (float)*reinterpret_cast<const int*>(bytes + 1);
    } else {
        float4 v = *reinterpret_cast<const float4*>(x + 1);
        y[threadIdx.x] = v.x + v.y + v.z + v.w;
    }
}

// Correct: thread 0 fills a table at constant indices, everyone reads it at computed ones after a barrier.
extern "C" __global__ void constant_index_table(float* y) {
    __shared__ float table[4];
    if (threadIdx.x == 0) {
        table[0] = 1.0f;
        table[1] = 2.0f;
        table[2] = 3.0f;
        table[3] = 4.0f;
    }
    __syncthreads();
    y[threadIdx.x] = table[threadIdx.x % 4];
}

// Correct: the lanes that take the branch vote among themselves, with __activemask() as the mask.
extern "C" __global__ void ballot_in_branch(const float* x, int* y) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    y[i] = 0;
    if (x[i] > 0.0f) y[i] = __popc(__ballot_sync(__activemask(), 1));
}
