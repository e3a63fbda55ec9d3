// ReLU, forward and backward. Used by scratchnet/layers/activation.py.
//
//   forward:  y = max(x, 0)
//   backward: dx = dy where y > 0, else 0   (the slope is taken as 0 at x = 0)

// Thread mapping: one thread per element i < count (a 1-D grid over the flattened array).
// Written as "x < 0 ? 0 : x" so that a NaN passes through (as in NumPy and PyTorch) instead of becoming 0.
template <typename T>
__global__ void relu_forward(const T* x, T* y, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        y[i] = x[i] < T(0) ? T(0) : x[i];
    }
}

// Thread mapping: one thread per element i < count. Reads the forward output y: y > 0 exactly where x > 0.
template <typename T>
__global__ void relu_backward(const T* y, const T* dy, T* dx, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        dx[i] = y[i] > T(0) ? dy[i] : T(0);
    }
}
