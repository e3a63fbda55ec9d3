// Max-pooling forward: the numbered versions of the kernel harness (python -m scratchnet.kernel_bench
// maxpool).
//
//   x: (N, C, H, W) -> y: (N, C, OH, OW), NCHW, row-major, KH x KW windows (square, KH = KW = K, in the
//   harness) y[n, c, oh, ow] = max over kh < KH, kw < KW of x[n, c, oh*S - P + kh, ow*S - P + kw] Padding
//   counts as -infinity (it never wins); OH = (H + 2*P - KH) / S + 1 (and OW alike). Ties go to the first
//   maximum in row-major window order (as PyTorch); NaN is not special-cased.
//
// Pooling does one comparison per loaded value, so it is limited by memory bandwidth, not arithmetic:
// the harness reports GB/s (bytes of x read + bytes of y written, per second). The launch geometry of
// each version is in scratchnet/kernel_bench.py, next to its name.

// The max over one window of one (n, c) plane. Starts from the first in-bounds element rather than from
// -infinity, so the kernels need no infinity constant (every window holds one when P < KH and P < KW).
template <typename T>
__device__ T window_max(const T* plane, int H, int W, int KH, int KW, int h0, int w0) {
    T best = T(0);
    bool found = false;
    for (int kh = 0; kh < KH; ++kh) {
        int h = h0 + kh;
        if (h < 0 || h >= H) continue;
        for (int kw = 0; kw < KW; ++kw) {
            int w = w0 + kw;
            if (w < 0 || w >= W) continue;
            T v = plane[h * W + w];
            if (!found || v > best) {  // strictly greater: ties keep the first maximum
                best = v;
                found = true;
            }
        }
    }
    return best;
}

// Version 1: naive. One thread per output element, but with the flat thread index decomposed in
// (n, oh, ow, c) order, channel fastest: the loop nest of an NHWC layout applied to NCHW data.
// Thread mapping (launch): 1-D, ceil(N*C*OH*OW / 256) blocks of 256 threads.
// Neighbouring threads work on neighbouring channels, whose planes are H*W elements apart: every load
// and store of a warp touches 32 different cache lines (uncoalesced).
template <typename T>
__global__ void maxpool_forward_v1_naive(const T* x, T* y, int N, int C, int H, int W, int KH, int KW, int S,
                                         int P, int OH, int OW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * OH * OW) return;
    int c = (int)(i % C);
    int ow = (int)((i / C) % OW);
    int oh = (int)((i / ((long long)C * OW)) % OH);
    long long n = i / ((long long)C * OW * OH);
    long long plane = n * C + c;
    y[(plane * OH + oh) * OW + ow] = window_max(x + plane * H * W, H, W, KH, KW, oh * S - P, ow * S - P);
}

// Version 2: coalesced. The same work, with the flat index decomposed in (n, c, oh, ow) order, ow fastest.
// Thread mapping (launch): 1-D, ceil(N*C*OH*OW / 256) blocks of 256 threads.
// A warp now writes 32 consecutive outputs and its loads fall in a few consecutive cache lines (S
// elements apart), so each line fetched from memory is used fully. Each element of x is read
// KH*KW/S^2 times on average (once for the usual KH = KW = S = 2), mostly from cache.
template <typename T>
__global__ void maxpool_forward_v2_coalesced(const T* x, T* y, int N, int C, int H, int W, int KH, int KW,
                                             int S, int P, int OH, int OW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * OH * OW) return;
    int ow = (int)(i % OW);
    int oh = (int)((i / OW) % OH);
    long long plane = i / ((long long)OW * OH);
    y[i] = window_max(x + plane * H * W, H, W, KH, KW, oh * S - P, ow * S - P);
}

// Version 3: one (n, c) plane per block row, 32-bit index math. blockIdx.y picks the plane (grid-striding
// when there are more than 65535 planes), the threads of blockIdx.x cover the OH*OW outputs of the plane.
// Thread mapping (launch): block (256,), grid (ceil(OH*OW / 256), min(N*C, 65535)).
// Memory access is as coalesced as v2, but the per-thread index arithmetic no longer needs three 64-bit
// divisions (a 64-bit integer division is a long software sequence on the GPU, which matters in a kernel
// that does so little else): the plane offset is computed once, the rest in 32 bits.
template <typename T>
__global__ void maxpool_forward_v3_planes(const T* x, T* y, int N, int C, int H, int W, int KH, int KW, int S,
                                          int P, int OH, int OW) {
    int q = blockIdx.x * blockDim.x + threadIdx.x;  // output index within the plane
    if (q >= OH * OW) return;
    int oh = q / OW, ow = q % OW;
    for (long long plane = blockIdx.y; plane < (long long)N * C; plane += gridDim.y) {
        y[plane * OH * OW + q] = window_max(x + plane * H * W, H, W, KH, KW, oh * S - P, ow * S - P);
    }
}
