// Kernel exercise 2: max-pooling forward (with argmax) and backward, without padding.
//
// Forward:   y[n, c, oh, ow]      = max over kh < KH, kw < KW of x[n, c, oh * S + kh, ow * S + kw]
//            argmax[n, c, oh, ow] = h * W + w, the position of that maximum inside the (n, c) plane
//                                   (the first one in row-major order on ties)
//            x (N, C, H, W); y, argmax (N, C, OH, OW); OH = (H - KH) / S + 1, OW = (W - KW) / S + 1
// Backward:  dx[n, c, h, w] = sum of dy[n, c, oh, ow] over every window (oh, ow) whose argmax is h * W + w
//            dy (N, C, OH, OW), dx (N, C, H, W). Windows overlap when S < KH: one input can be the maximum
//            of several windows and then receives the sum of their gradients.
//
// Thread mapping (1-D), flat indices i with the last axis fastest:
//   forward:  one thread per OUTPUT element, i over N * C * OH * OW;
//   backward: one thread per INPUT element, i over N * C * H * W. Each thread gathers from the windows that
//             contain its input, so no two threads write the same dx element (no atomics needed).
// Launch (the checker's): ceil(elements / 128) blocks of 128 threads.

extern "C" __global__ void maxpool_forward(const float* x, float* y, int* argmax, int N, int C, int H, int W,
                                           int KH, int KW, int S, int OH, int OW) {
    // TODO: write the body (see the comments above)
}

extern "C" __global__ void maxpool_backward(const float* dy, const int* argmax, float* dx, int N, int C,
                                            int H, int W, int KH, int KW, int S, int OH, int OW) {
    // TODO: write the body (see the comments above)
}
