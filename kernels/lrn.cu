// Local response normalisation across channels (Krizhevsky et al. 2012). Used by scratchnet/layers/lrn.py.
//
// x, y, scale, dy, dx: (N, C, H, W), element i = (n*C + c)*HW + s with HW = H*W and s = h*W + w.
// The window of channel c is W(c) = [c - before, c + after] clipped to [0, C - 1], with before = size / 2 and
// after = (size - 1) / 2 (PyTorch's placement).
//   scale_c = k + alpha * sum_{c' in W(c)} x_c'^2
//   y_c     = x_c * scale_c^(-beta)
//   dx_j    = dy_j * scale_j^(-beta) - 2 alpha beta x_j * sum_{i : j in W(i)} dy_i * y_i / scale_i
// where j in W(i) <=> i in [j - after, j + before].

#include "common.cuh"  // pow_of

// Thread mapping: one thread per element i < count = N*C*H*W; it reads the (at most size) elements of its
// channel window, which lie HW apart in memory. Writes y and, for the backward pass, scale.
template <typename T>
__global__ void lrn_forward(const T* x, T* y, T* scale, long long count, int C, long long HW, int before,
                            int after, T alpha, T beta, T k) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int c = (int)((i / HW) % C);
    const T* x_channel0 = x + (i - c * HW);  // the same (n, h, w) in channel 0
    int first = max(c - before, 0), last = min(c + after, C - 1);
    T sum_sq = T(0);
    for (int cc = first; cc <= last; ++cc) {
        T v = x_channel0[cc * HW];
        sum_sq += v * v;
    }
    T s = k + alpha * sum_sq;
    scale[i] = s;
    y[i] = x[i] * pow_of(s, -beta);
}

// Thread mapping: one thread per element i < count, the j of dx_j above (a gather over the channels whose
// window contains it, no atomics).
template <typename T>
__global__ void lrn_backward(const T* x, const T* y, const T* scale, const T* dy, T* dx, long long count,
                             int C, long long HW, int before, int after, T alpha, T beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;  // element j of the formula
    if (i >= count) return;
    int c = (int)((i / HW) % C);
    long long channel0 = i - c * HW;
    int first = max(c - after, 0), last = min(c + before, C - 1);
    T cross = T(0);
    for (int cc = first; cc <= last; ++cc) {
        long long at = channel0 + cc * HW;  // the same (n, h, w) in channel cc
        cross += dy[at] * y[at] / scale[at];
    }
    dx[i] = dy[i] * pow_of(scale[i], -beta) - T(2) * alpha * beta * x[i] * cross;
}
