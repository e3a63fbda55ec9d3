// 2-D convolution (cross-correlation, as in every deep learning library), forward and backward.
//
//   x (N, C, H, W), weight (F, C / G, KH, KW), bias (F,), y (N, F, OH, OW)
//   y[n, f, oh, ow] = bias[f] + sum over c < C / G, kh < KH, kw < KW of
//                     weight[f, c, kh, kw] * x[n, g * Cg + c, oh * SH - PH + kh, ow * SW - PW + kw]
//   with Cg = C / G, Fg = F / G, g = f / Fg the group of filter f, and x = 0 outside the image
//   (zero padding PH, PW); OH = (H + 2 PH - KH) / SH + 1, OW = (W + 2 PW - KW) / SW + 1.
//
// Two ways to compute it:
//   * direct ("naive"): conv2d_forward_naive, conv2d_backward_input_naive, conv2d_backward_weight_naive,
//     one thread per output value, the formula above written out;
//   * im2col + GEMM ("fast"): im2col copies every receptive field into a column of a matrix, so the
//     convolution becomes one matrix product (gemm_blocked.cu); col2im is its adjoint, used in the
//     backward pass. swap_axes01 moves between the GEMM's (F, N, P) layout and NCHW.
// The bias gradient is bias_grad in reduce.cu. Every kernel is a gather: each thread computes its own
// output value and writes it once, so there are no atomics and results are deterministic.
// Sizes are int; flat indices are long long because N * C * H * W can pass 2^31.

// Decode a flat index i into (a, b, c, d) for a C-contiguous array of shape (A, B, Cdim, D).
__device__ void unravel4(long long i, int B, int Cdim, int D, int* a, int* b, int* c, int* d) {
    *d = (int)(i % D);
    i /= D;
    *c = (int)(i % Cdim);
    i /= Cdim;
    *b = (int)(i % B);
    *a = (int)(i / B);
}

// The output position that reads input position `in` at kernel offset k, along one axis, or -1 if none:
// in = out * S - P + k  <=>  out = (in + P - k) / S, when that division is exact and 0 <= out < OUT.
__device__ int output_reading(int in, int k, int S, int P, int OUT) {
    const int shifted = in + P - k;
    if (shifted < 0 || shifted % S != 0 || shifted / S >= OUT) return -1;
    return shifted / S;
}

// Thread mapping: one thread per output element y[n, f, oh, ow] (1-D grid over N * F * OH * OW); the
// thread sums over the Cg * KH * KW inputs of its receptive field.
template <typename T>
__global__ void conv2d_forward_naive(const T* x, const T* weight, const T* bias, T* y, int N, int C, int H,
                                     int W, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
                                     int F, int G) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * F * OH * OW) return;
    int n, f, oh, ow;
    unravel4(i, F, OH, OW, &n, &f, &oh, &ow);
    const int Cg = C / G;
    const int g = f / (F / G);

    T sum = bias[f];
    for (int c = 0; c < Cg; ++c) {
        for (int kh = 0; kh < KH; ++kh) {
            const int h = oh * SH - PH + kh;
            if (h < 0 || h >= H) continue;  // zero padding
            for (int kw = 0; kw < KW; ++kw) {
                const int w = ow * SW - PW + kw;
                if (w < 0 || w >= W) continue;
                const long long x_at = (((long long)n * C + g * Cg + c) * H + h) * W + w;
                const long long weight_at = (((long long)f * Cg + c) * KH + kh) * KW + kw;
                sum += weight[weight_at] * x[x_at];
            }
        }
    }
    y[i] = sum;
}

// dx[n, c, h, w] = sum over the filters f of c's group and the offsets (kh, kw) with
//                  h = oh * SH - PH + kh and w = ow * SW - PW + kw for some output position (oh, ow)
//                  of dy[n, f, oh, ow] * weight[f, c % Cg, kh, kw].
// Thread mapping: one thread per input element dx[n, c, h, w] (1-D grid over N * C * H * W); the thread
// gathers from every output position whose receptive field contains (h, w).
template <typename T>
__global__ void conv2d_backward_input_naive(const T* dy, const T* weight, T* dx, int N, int C, int H, int W,
                                            int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
                                            int F, int G) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * H * W) return;
    int n, c, h, w;
    unravel4(i, C, H, W, &n, &c, &h, &w);
    const int Cg = C / G;
    const int Fg = F / G;
    const int g = c / Cg;

    T sum = 0;
    for (int f = g * Fg; f < (g + 1) * Fg; ++f) {
        for (int kh = 0; kh < KH; ++kh) {
            const int oh = output_reading(h, kh, SH, PH, OH);
            if (oh < 0) continue;
            for (int kw = 0; kw < KW; ++kw) {
                const int ow = output_reading(w, kw, SW, PW, OW);
                if (ow < 0) continue;
                const long long dy_at = (((long long)n * F + f) * OH + oh) * OW + ow;
                const long long weight_at = (((long long)f * Cg + c % Cg) * KH + kh) * KW + kw;
                sum += dy[dy_at] * weight[weight_at];
            }
        }
    }
    dx[i] = sum;
}

// dweight[f, c, kh, kw] = sum over n, oh, ow of
//                         dy[n, f, oh, ow] * x[n, g * Cg + c, oh * SH - PH + kh, ow * SW - PW + kw].
// Thread mapping: one thread per weight element (1-D grid over F * Cg * KH * KW); the thread sums over the
// batch and every output position.
template <typename T>
__global__ void conv2d_backward_weight_naive(const T* dy, const T* x, T* dweight, int N, int C, int H, int W,
                                             int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
                                             int F, int G) {
    const int Cg = C / G;
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)F * Cg * KH * KW) return;
    int f, c, kh, kw;
    unravel4(i, Cg, KH, KW, &f, &c, &kh, &kw);
    const int g = f / (F / G);

    T sum = 0;
    for (int n = 0; n < N; ++n) {
        for (int oh = 0; oh < OH; ++oh) {
            const int h = oh * SH - PH + kh;
            if (h < 0 || h >= H) continue;
            for (int ow = 0; ow < OW; ++ow) {
                const int w = ow * SW - PW + kw;
                if (w < 0 || w >= W) continue;
                const long long dy_at = (((long long)n * F + f) * OH + oh) * OW + ow;
                const long long x_at = (((long long)n * C + g * Cg + c) * H + h) * W + w;
                sum += dy[dy_at] * x[x_at];
            }
        }
    }
    dweight[i] = sum;
}

// cols_batch_first[(c, kh, kw), (n, oh, ow)] = x[n, c, oh * SH - PH + kh, ow * SW - PW + kw]
// (0 in the padding): cols_batch_first is (C * KH * KW, N * OH * OW), the batch first in each column index;
// row (c, kh, kw) is input channel c seen through kernel offset (kh, kw), column (n, oh, ow) is one
// receptive field. Groups need nothing here: the rows of group g are the contiguous block c in
// [g Cg, (g + 1) Cg), i.e. cols_batch_first is already the stack (G, Cg KH KW, N OH OW).
// Thread mapping (Caffe's im2col_gpu): one thread per (c, n, oh, ow), a 1-D grid over C * N * OH * OW. The
// thread works out its receptive field once (the divisions that decode an index cost more than the copy),
// then copies its KH * KW values into rows (c, kh, kw) of column (n, oh, ow). For each (kh, kw),
// consecutive threads take consecutive ow, so they read neighbouring inputs and write neighbouring outputs.
template <typename T>
__global__ void im2col(const T* x, T* cols_batch_first, int N, int C, int H, int W, int KH, int KW, int SH,
                       int SW, int PH, int PW, int OH, int OW) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long columns = (long long)N * OH * OW;
    if (i >= C * columns) return;
    const int c = (int)(i / columns);
    const long long column = i % columns;  // (n, oh, ow)
    const int ow = (int)(column % OW);
    const int oh = (int)(column / OW % OH);
    const int n = (int)(column / ((long long)OW * OH));
    const int h0 = oh * SH - PH, w0 = ow * SW - PW;  // the top-left corner of the receptive field
    const T* image = x + ((long long)n * C + c) * H * W;
    T* out = cols_batch_first + (long long)c * KH * KW * columns + column;  // row (c, 0, 0)
    for (int kh = 0; kh < KH; ++kh) {
        const int h = h0 + kh;
        for (int kw = 0; kw < KW; ++kw) {
            const int w = w0 + kw;
            const bool inside = h >= 0 && h < H && w >= 0 && w < W;
            *out = inside ? image[(long long)h * W + w] : T(0);
            out += columns;  // the next row, (c, kh, kw + 1)
        }
    }
}

// The adjoint of im2col: dx[n, c, h, w] = sum of dcols_batch_first[(c, kh, kw), (n, oh, ow)] over every
// (kh, kw, oh, ow) that im2col read x[n, c, h, w] into (as Chainer's col2im_gpu).
// Thread mapping: one thread per input element dx[n, c, h, w] (1-D grid over N * C * H * W), gathering its
// at most KH * KW contributions; no two threads write the same element, so no atomics are needed.
template <typename T>
__global__ void col2im(const T* dcols_batch_first, T* dx, int N, int C, int H, int W, int KH, int KW, int SH,
                       int SW, int PH, int PW, int OH, int OW) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * H * W) return;
    int n, c, h, w;
    unravel4(i, C, H, W, &n, &c, &h, &w);
    const long long columns = (long long)N * OH * OW;

    T sum = 0;
    for (int kh = 0; kh < KH; ++kh) {
        const int oh = output_reading(h, kh, SH, PH, OH);
        if (oh < 0) continue;
        for (int kw = 0; kw < KW; ++kw) {
            const int ow = output_reading(w, kw, SW, PW, OW);
            if (ow < 0) continue;
            const long long row = ((long long)c * KH + kh) * KW + kw;
            const long long column = ((long long)n * OH + oh) * OW + ow;
            sum += dcols_batch_first[row * columns + column];
        }
    }
    dx[i] = sum;
}

// y[b, a, p] = x[a, b, p]: swap the first two axes of a (A, B, positions) array. The GEMM produces the
// convolution's output as (F, N, OH * OW); swap_axes01 turns it into NCHW, and turns dy back.
// Thread mapping: one thread per output element y[b, a, p] (1-D grid over B * A * positions); consecutive
// threads write consecutive p and read consecutive p.
template <typename T>
__global__ void swap_axes01(const T* x, T* y, int A, int B, long long positions) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)A * B * positions) return;
    const long long p = i % positions;
    const long long a = (i / positions) % A;
    const long long b = i / (positions * A);
    y[i] = x[(a * B + b) * positions + p];
}
