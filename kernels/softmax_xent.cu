// Softmax cross-entropy loss, its gradient, and top-k accuracy counts. Used by scratchnet/layers/loss.py.
//
// logits z: (N, K) row-major; labels t: (N,) int64 class ids. For each row n, with m = max_k z[n, k]:
//   probs[n, k]  = exp(z[n, k] - m) / S,     S = sum_k exp(z[n, k] - m)     (subtracting m avoids overflow)
//   row_loss[n]  = log(S) - (z[n, t_n] - m)  = -log probs[n, t_n]
//   loss         = (1/N) sum_n row_loss[n]
//   dloss/dz     = (probs - onehot(t)) / N

#include "common.cuh"  // minus_infinity, exp_of, log_of

// Tree reduction over the threads of a block; every thread calls it with its own value and gets the block's
// max (take_max) or sum back. partial[] is shared memory of blockDim.x entries; blockDim.x a power of two.
// Each round halves the number of active threads: thread t adds (or maxes) in the value of t + stride.
template <typename T>
__device__ T block_reduce(T* partial, T value, bool take_max) {
    unsigned int tid = threadIdx.x;
    partial[tid] = value;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (tid < stride) {
            T other = partial[tid + stride];
            partial[tid] = take_max ? (other > partial[tid] ? other : partial[tid]) : partial[tid] + other;
        }
        __syncthreads();
    }
    T total = partial[0];
    __syncthreads();  // every thread has read partial[0] before the buffer is reused
    return total;
}

#define SOFTMAX_MAX_THREADS 256  // largest block (a power of two) the kernels below accept

// Thread mapping: one BLOCK per row n = blockIdx.x (grid N), blockDim.x threads (a power of two <= 256)
// sharing the row: thread t handles columns k = t, t + blockDim.x, ... Two block reductions give the row max
// and the sum of exponentials. Writes probs (N, K) for the backward pass and row_loss (N,), NaN for a label
// outside [0, K).
template <typename T>
__global__ void softmax_xent_forward(const T* logits, const long long* labels, T* probs, T* row_loss, int K) {
    __shared__ T partial[SOFTMAX_MAX_THREADS];
    long long row_start = (long long)blockIdx.x * K;
    const T* z = logits + row_start;
    T* p = probs + row_start;

    T local_max = minus_infinity<T>();
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        local_max = z[k] > local_max ? z[k] : local_max;
    }
    T row_max = block_reduce(partial, local_max, true);

    T local_sum = T(0);
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        p[k] = exp_of(z[k] - row_max);  // unnormalised for now; each thread rescales its own columns below
        local_sum += p[k];
    }
    T sum = block_reduce(partial, local_sum, false);

    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        p[k] /= sum;
    }
    if (threadIdx.x == 0) {
        long long t = labels[blockIdx.x];
        bool valid = t >= 0 && t < K;
        row_loss[blockIdx.x] = valid ? log_of(sum) - (z[t] - row_max) : T(0) / T(0);  // NaN flags a bad label
    }
}

// Thread mapping: a single block of SOFTMAX_MAX_THREADS threads: thread t sums rows t, t + blockDim.x, ... in
// a fixed order, then a tree reduction; the mean goes to mean[0]. Deterministic (no atomics), unlike a sum by
// atomicAdd.
template <typename T>
__global__ void softmax_xent_mean(const T* row_loss, T* mean, long long N) {
    __shared__ T partial[SOFTMAX_MAX_THREADS];
    T local_sum = T(0);
    for (long long i = threadIdx.x; i < N; i += blockDim.x) {
        local_sum += row_loss[i];
    }
    T total = block_reduce(partial, local_sum, false);
    if (threadIdx.x == 0) {
        mean[0] = total / T(N);
    }
}

// Thread mapping: one thread per element i < N*K of dlogits, i = n*K + k: (probs - onehot(t)) / N.
template <typename T>
__global__ void softmax_xent_backward(const T* probs, const long long* labels, T* dlogits, long long count,
                                      int K, long long N) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    long long n = i / K;
    int k = (int)(i % K);
    T onehot = labels[n] == k ? T(1) : T(0);
    dlogits[i] = (probs[i] - onehot) / T(N);
}

// Thread mapping: one thread per row n < N: the rank of the true label's logit, i.e. how many classes come
// before it when the row is sorted by decreasing logit, ties going to the lower index (as argmax picks the
// first maximum):
//   rank = #{j : z[j] > z[t]} + #{j < t : z[j] == z[t]}.
// The prediction is top-k correct iff rank < k. An invalid label gets rank -1, a row holding a NaN INT_MAX.
template <typename T>
__global__ void label_rank(const T* logits, const long long* labels, int* rank, long long N, int K) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    long long t = labels[n];
    if (t < 0 || t >= K) {
        rank[n] = -1;
        return;
    }
    const T* z = logits + n * K;
    T target = z[t];
    int before = 0;
    for (int j = 0; j < K; ++j) {
        if (z[j] != z[j]) {  // a NaN logit: the row is never correct (rank beyond every k)
            before = 0x7fffffff;
            break;
        }
        before += z[j] > target || (z[j] == target && j < t);
    }
    rank[n] = before;
}

// Thread mapping: one BLOCK per bucket b = blockIdx.x, SOFTMAX_MAX_THREADS threads: counts[b] = #{n : rank[n]
// == b - 1}, so counts[0] counts invalid labels and counts[1 + r] the rows of rank r. Threads count strided
// rows, then a tree reduction (deterministic).
extern "C" __global__ void rank_histogram(const int* rank, long long* counts, long long N) {
    __shared__ long long partial[SOFTMAX_MAX_THREADS];
    int wanted = (int)blockIdx.x - 1;
    long long local_count = 0;
    for (long long n = threadIdx.x; n < N; n += blockDim.x) {
        local_count += rank[n] == wanted;
    }
    long long total = block_reduce(partial, local_count, false);
    if (threadIdx.x == 0) {
        counts[blockIdx.x] = total;
    }
}
