// Softmax cross-entropy loss, its gradient, and top-k accuracy counts. Used by scratchnet/layers/loss.py.
//
// logits z: (N, K) row-major; labels t: (N,) int64 class ids. For each row n, with m = max_k z[n, k]:
//   probs[n, k]  = exp(z[n, k] - m) / S,     S = sum_k exp(z[n, k] - m)     (subtracting m avoids overflow)
//   row_loss[n]  = log(S) - (z[n, t_n] - m)  = -log probs[n, t_n]
//   loss         = (1/N) sum_n row_loss[n]
//   dloss/dz     = (probs - onehot(t)) / N

// -infinity, where a max-reduction starts, without <cmath> (NVRTC has no standard headers).
template <typename T>
__device__ T minus_infinity() {
    return -T(1) / T(0);
}

__device__ inline float exp_of(float v) { return expf(v); }
__device__ inline double exp_of(double v) { return exp(v); }
__device__ inline float log_of(float v) { return logf(v); }
__device__ inline double log_of(double v) { return log(v); }

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

// One BLOCK per row n = blockIdx.x (grid N), blockDim.x threads (a power of two <= 256) sharing the row:
// thread t handles columns k = t, t + blockDim.x, ... Two block reductions give the row max and the sum of
// exponentials. Writes probs (N, K) for the backward pass and row_loss (N,), NaN for a label outside [0, K).
template <typename T>
__global__ void softmax_xent_forward(const T* logits, const long long* labels, T* probs, T* row_loss,
                                     int n_classes) {
    __shared__ T partial[SOFTMAX_MAX_THREADS];
    long long row_start = (long long)blockIdx.x * n_classes;
    const T* z = logits + row_start;
    T* p = probs + row_start;

    T local_max = minus_infinity<T>();
    for (int k = threadIdx.x; k < n_classes; k += blockDim.x) {
        local_max = z[k] > local_max ? z[k] : local_max;
    }
    T row_max = block_reduce(partial, local_max, true);

    T local_sum = T(0);
    for (int k = threadIdx.x; k < n_classes; k += blockDim.x) {
        p[k] = exp_of(z[k] - row_max);  // unnormalised for now; each thread rescales its own columns below
        local_sum += p[k];
    }
    T sum = block_reduce(partial, local_sum, false);

    for (int k = threadIdx.x; k < n_classes; k += blockDim.x) {
        p[k] /= sum;
    }
    if (threadIdx.x == 0) {
        long long t = labels[blockIdx.x];
        bool valid = t >= 0 && t < n_classes;
        row_loss[blockIdx.x] = valid ? log_of(sum) - (z[t] - row_max) : T(0) / T(0);  // NaN flags a bad label
    }
}

// A single block of SOFTMAX_MAX_THREADS threads: thread t sums rows t, t + blockDim.x, ... in a fixed order,
// then a tree reduction; the mean goes to mean[0]. Deterministic (no atomics), unlike a sum by atomicAdd.
template <typename T>
__global__ void softmax_xent_mean(const T* row_loss, T* mean, long long n_rows) {
    __shared__ T partial[SOFTMAX_MAX_THREADS];
    T local_sum = T(0);
    for (long long i = threadIdx.x; i < n_rows; i += blockDim.x) {
        local_sum += row_loss[i];
    }
    T total = block_reduce(partial, local_sum, false);
    if (threadIdx.x == 0) {
        mean[0] = total / T(n_rows);
    }
}

// One thread per element i < N*K of dlogits, i = n*K + k: (probs - onehot(t)) / N.
template <typename T>
__global__ void softmax_xent_backward(const T* probs, const long long* labels, T* dlogits, long long n_elements,
                                      int n_classes, long long n_rows) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_elements) return;
    long long n = i / n_classes;
    int k = (int)(i % n_classes);
    T onehot = labels[n] == k ? T(1) : T(0);
    dlogits[i] = (probs[i] - onehot) / T(n_rows);
}

// One thread per row n < N: the rank of the true label's logit, i.e. how many classes come before it when the
// row is sorted by decreasing logit, ties going to the lower index (as argmax picks the first maximum):
//   rank = #{j : z[j] > z[t]} + #{j < t : z[j] == z[t]}.
// The prediction is top-k correct iff rank < k. An invalid label gets rank -1, a row holding a NaN INT_MAX.
template <typename T>
__global__ void label_rank(const T* logits, const long long* labels, int* rank, long long n_rows, int n_classes) {
    long long n = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= n_rows) return;
    long long t = labels[n];
    if (t < 0 || t >= n_classes) {
        rank[n] = -1;
        return;
    }
    const T* z = logits + n * n_classes;
    T target = z[t];
    int before = 0;
    for (int j = 0; j < n_classes; ++j) {
        if (z[j] != z[j]) {  // a NaN logit: the row is never correct (rank beyond every k)
            before = 0x7fffffff;
            break;
        }
        before += z[j] > target || (z[j] == target && j < t);
    }
    rank[n] = before;
}

// One BLOCK per bucket b = blockIdx.x, SOFTMAX_MAX_THREADS threads: counts[b] = #{n : rank[n] == b - 1}, so
// counts[0] counts invalid labels and counts[1 + r] the rows of rank r. Threads count strided rows, then a
// tree reduction (deterministic).
extern "C" __global__ void rank_histogram(const int* rank, long long* counts, long long n_rows) {
    __shared__ long long partial[SOFTMAX_MAX_THREADS];
    int wanted = (int)blockIdx.x - 1;
    long long local_count = 0;
    for (long long n = threadIdx.x; n < n_rows; n += blockDim.x) {
        local_count += rank[n] == wanted;
    }
    long long total = block_reduce(partial, local_count, false);
    if (threadIdx.x == 0) {
        counts[blockIdx.x] = total;
    }
}
