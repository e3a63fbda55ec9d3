// Dropout, forward and backward. Used by scratchnet/layers/dropout.py, whose NumPy code draws the same masks.
//
// The mask comes from a counter-based hash: no random state lives on the GPU, every element's draw is a pure
// function of (seed, calls, i), so any device (and any thread order) gives the same bits:
//
//   mix64(z)   = SplitMix64's finalizer (below)
//   key        = mix64(seed + GOLDEN * (calls + 1))   // output number calls+1 of SplitMix64 seeded with seed
//   hash(i)    = mix64(key  + GOLDEN * (i + 1))       // output number i+1 of SplitMix64 seeded with key
//
// where i = first + (index of the element in x): the element's index in the whole batch, of which x may be
// one process's shard (data parallelism), so the masks do not depend on how the batch is split.
//   keep i  <=>  (hash(i) >> (64 - UNIFORM_BITS)) >= threshold,  threshold = ceil(p * 2^UNIFORM_BITS)
//
// i.e. u = (hash >> 40) / 2^24 is uniform on [0, 1) with UNIFORM_BITS = 24 bits and element i is kept
// iff u >= p. All arithmetic is on unsigned 64-bit integers, modulo 2^64.

#define SPLITMIX64_GOLDEN 0x9E3779B97F4A7C15ULL  // 2^64 / golden ratio: SplitMix64's increment
#define UNIFORM_BITS 24                          // bits of u: exactly representable in float32 too

__device__ unsigned long long splitmix64_mix(unsigned long long z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

// Thread mapping: one thread per element i < count. Writes y = x * mask and keeps mask (0 or
// scale = 1 / (1 - p)) for backward.
template <typename T>
__global__ void dropout_forward(const T* x, T* y, T* mask, unsigned long long seed, unsigned long long calls,
                                unsigned long long first, unsigned int threshold, T scale, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    unsigned long long key = splitmix64_mix(seed + SPLITMIX64_GOLDEN * (calls + 1ULL));
    unsigned long long hash =
        splitmix64_mix(key + SPLITMIX64_GOLDEN * (first + (unsigned long long)i + 1ULL));
    bool keep = (unsigned int)(hash >> (64 - UNIFORM_BITS)) >= threshold;
    T m = keep ? scale : T(0);
    mask[i] = m;
    y[i] = x[i] * m;
}

// Thread mapping: one thread per element i < count: dx = dy * mask (the same scaled mask as in forward).
template <typename T>
__global__ void dropout_backward(const T* dy, const T* mask, T* dx, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        dx[i] = dy[i] * mask[i];
    }
}
