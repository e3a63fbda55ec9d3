// Kernel exercise 1: ReLU forward and backward, one thread per element.
//
// Forward:   y[i]  = max(x[i], 0)                       x, y: count elements (any shape, flattened)
// Backward:  dx[i] = dy[i] if x[i] > 0, else 0          x, dy, dx: count elements; the mask comes from the
//                                                       forward *input* x, not from dy
//
// Thread mapping (1-D): thread i = blockIdx.x * blockDim.x + threadIdx.x handles element i.
// Launch (the checker's): ceil(count / 256) blocks of 256 threads. count is rarely a multiple of 256, so the
// last block has threads with i >= count: they must not touch memory.

extern "C" __global__ void relu_forward(const float* x, float* y, long long count) {
    // TODO: write the body (see the comments above)
}

extern "C" __global__ void relu_backward(const float* x, const float* dy, float* dx, long long count) {
    // TODO: write the body (see the comments above)
}
