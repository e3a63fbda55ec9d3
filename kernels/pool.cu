// 2-D max- and average pooling, forward and backward. Used by scratchnet/layers/pool.py.
//
// Input x: (N, C, H, W); output y: (N, C, OH, OW) with OH = (H + 2*PH - KH) / SH + 1 (likewise OW).
// Output (oh, ow) looks at the KH x KW window whose top-left corner is (oh*SH - PH, ow*SW - PW); positions
// outside the input are padding and count as -infinity. argmax[n, c, oh, ow] records WHERE in its window the
// maximum was, as the row-major window offset kh*KW + kw: the first maximum in that order wins ties, exactly
// as in the NumPy code and in PyTorch, so every device routes the gradient to the same element.
// Average pooling divides each window's sum by KH*KW, padding counted as zeros (PyTorch's default).

#include "common.cuh"  // minus_infinity, cdiv

// The windows along one axis that contain input position h: window o covers rows o*S - P ... o*S - P + K - 1,
// so ceil((h + P - K + 1) / S) <= o <= floor((h + P) / S), clipped to [0, OUT - 1]; none when first > last
// (stride > kernel leaves rows in no window). max(.., 0) keeps cdiv's numerator non-negative.
__device__ inline void windows_containing(int h, int P, int K, int S, int OUT, int* first, int* last) {
    *first = cdiv(max(h + P - K + 1, 0), S);
    *last = min((h + P) / S, OUT - 1);
}

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

    int oh_first, oh_last, ow_first, ow_last;
    windows_containing(h, PH, KH, SH, OH, &oh_first, &oh_last);
    windows_containing(w, PW, KW, SW, OW, &ow_first, &ow_last);

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

// Thread mapping: one thread per OUTPUT element i < count = N*C*OH*OW, as maxpool_forward: the thread adds
// up the inputs of its window (padding adds nothing) and divides by KH*KW.
template <typename T>
__global__ void avgpool_forward(const T* x, T* y, long long count, int H, int W, int OH, int OW, int KH,
                                int KW, int SH, int SW, int PH, int PW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int ow = (int)(i % OW);
    int oh = (int)((i / OW) % OH);
    const T* x_plane = x + i / ((long long)OW * OH) * H * W;
    T sum = T(0);
    for (int h = max(oh * SH - PH, 0); h < min(oh * SH - PH + KH, H); ++h) {
        for (int w = max(ow * SW - PW, 0); w < min(ow * SW - PW + KW, W); ++w) sum += x_plane[h * W + w];
    }
    y[i] = sum / T(KH * KW);
}

// Thread mapping: one thread per INPUT element i < count = N*C*H*W, a gather as maxpool_backward: dx is the
// sum of dy over the windows that contain the element, divided by KH*KW; 0 for an element of no window.
template <typename T>
__global__ void avgpool_backward(const T* dy, T* dx, long long count, int H, int W, int OH, int OW, int KH,
                                 int KW, int SH, int SW, int PH, int PW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= count) return;
    int w = (int)(i % W);
    int h = (int)((i / W) % H);
    const T* dy_plane = dy + i / ((long long)W * H) * OH * OW;
    int oh_first, oh_last, ow_first, ow_last;
    windows_containing(h, PH, KH, SH, OH, &oh_first, &oh_last);
    windows_containing(w, PW, KW, SW, OW, &ow_first, &ow_last);
    T sum = T(0);
    for (int oh = oh_first; oh <= oh_last; ++oh) {
        for (int ow = ow_first; ow <= ow_last; ++ow) sum += dy_plane[oh * OW + ow];
    }
    dx[i] = sum / T(KH * KW);
}
