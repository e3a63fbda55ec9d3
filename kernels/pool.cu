// 2-D max-pooling, forward and backward. Used by scratchnet/layers/pool.py.
//
// Input x: (N, C, H, W); output y: (N, C, OH, OW) with OH = (H + 2*PH - KH) / SH + 1 (likewise OW).
// Output (oh, ow) looks at the KH x KW window whose top-left corner is (oh*SH - PH, ow*SW - PW); positions
// outside the input are padding and count as -infinity. argmax[n, c, oh, ow] records WHERE in its window the
// maximum was, as the row-major window offset kh*KW + kw: the first maximum in that order wins ties, exactly
// as in the NumPy code and in PyTorch, so every device routes the gradient to the same element.

#include "common.cuh"  // minus_infinity, cdiv

// Thread mapping: one thread per OUTPUT element: i < count = N*C*OH*OW, decoded as
// i = ((n*C + c)*OH + oh)*OW + ow. The thread scans its window in row-major order and keeps the first
// maximum. A NaN replaces the running maximum (PyTorch's rule), so a NaN in the input shows up in the
// output instead of being skipped.
template <typename T>
__global__ void maxpool_forward(const T* x, T* y, int* argmax, long long count, int H, int W, int OH, int OW,
                                int KH, int KW, int SH, int SW, int PH, int PW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int ow = (int)(i % OW);
    int oh = (int)((i / OW) % OH);
    long long plane = i / ((long long)OW * OH);  // n*C + c: which (H, W) image of the input
    const T* x_plane = x + plane * H * W;
    int h0 = oh * SH - PH;  // top-left corner of the window (may lie in the padding)
    int w0 = ow * SW - PW;

    T best = minus_infinity<T>();
    int best_offset = -1;
    for (int kh = 0; kh < KH; ++kh) {
        for (int kw = 0; kw < KW; ++kw) {
            int h = h0 + kh, w = w0 + kw;
            bool inside = h >= 0 && h < H && w >= 0 && w < W;
            T v = inside ? x_plane[h * W + w] : minus_infinity<T>();
            if (best_offset < 0 || v > best || v != v) {  // first element, a strictly larger one, or NaN
                best = v;
                best_offset = kh * KW + kw;
            }
        }
    }
    y[i] = best;
    argmax[i] = best_offset;
}

// Thread mapping: one thread per INPUT element: i < count = N*C*H*W, decoded as i = ((n*C + c)*H + h)*W + w.
// A gather (no atomics, deterministic): the thread visits every window that contains (h, w) and adds dy
// of each window whose argmax is this element. With overlapping windows (stride < kernel) one input can
// receive gradient from several outputs; they accumulate.
// Window (oh, ow) contains row h when oh*SH - PH <= h <= oh*SH - PH + KH - 1, i.e.
// ceil((h + PH - KH + 1) / SH) <= oh <= floor((h + PH) / SH), clipped to [0, OH - 1] (likewise for w).
template <typename T>
__global__ void maxpool_backward(const T* dy, const int* argmax, T* dx, long long count, int H, int W, int OH,
                                 int OW, int KH, int KW, int SH, int SW, int PH, int PW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int w = (int)(i % W);
    int h = (int)((i / W) % H);
    long long plane = i / ((long long)W * H);
    const T* dy_plane = dy + plane * OH * OW;
    const int* argmax_plane = argmax + plane * OH * OW;

    // cdiv(a, b) is ceil(a / b) for a >= 0; max(.., 0) first keeps the numerator non-negative.
    int oh_first = cdiv(max(h + PH - KH + 1, 0), SH);
    int oh_last = min((h + PH) / SH, OH - 1);
    int ow_first = cdiv(max(w + PW - KW + 1, 0), SW);
    int ow_last = min((w + PW) / SW, OW - 1);

    T sum = T(0);
    for (int oh = oh_first; oh <= oh_last; ++oh) {
        for (int ow = ow_first; ow <= ow_last; ++ow) {
            int offset_in_window = (h - (oh * SH - PH)) * KW + (w - (ow * SW - PW));
            if (argmax_plane[oh * OW + ow] == offset_in_window) {
                sum += dy_plane[oh * OW + ow];
            }
        }
    }
    dx[i] = sum;
}
