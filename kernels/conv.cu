// 2-D convolution (cross-correlation, as in every deep learning library), forward and backward.
//
//   x (N, C, H, W), weight (F, C / groups, kh, kw), b (F,), y (N, F, Ho, Wo)
//   y[n, f, ho, wo] = b[f] + sum over c < C / groups, i < kh, j < kw of
//                     weight[f, c, i, j] * x[n, g * Cg + c, ho * sh - ph + i, wo * sw - pw + j]
//   with Cg = C / groups, Fg = F / groups, g = f / Fg the group of filter f, and x = 0 outside the image
//   (zero padding ph, pw); Ho = (H + 2 ph - kh) / sh + 1, Wo = (W + 2 pw - kw) / sw + 1.
//
// Two ways to compute it:
//   * direct ("naive"): conv2d_forward_naive, conv2d_backward_input_naive, conv2d_backward_weight_naive,
//     one thread per output value, the formula above written out;
//   * im2col + GEMM ("fast"): im2col copies every receptive field into a column of a matrix, so the
//     convolution becomes one matrix product (gemm_tiled in gemm.cu); col2im is its adjoint, used in the
//     backward pass. swap_axes01 moves between the GEMM's (F, N, P) layout and NCHW.
// The bias gradient is bias_grad in reduce.cu. Every kernel is a gather: each thread computes its own
// output value and writes it once, so there are no atomics and results are deterministic.
// Sizes are int; flat indices are long long because N * C * H * W can pass 2^31.

// Decode a flat index into (a, b, c, d) for a C-contiguous array of shape (A, B, Cdim, D).
__device__ void unravel4(long long index, int B, int Cdim, int D, int* a, int* b, int* c, int* d)
{
    *d = (int)(index % D);
    index /= D;
    *c = (int)(index % Cdim);
    index /= Cdim;
    *b = (int)(index % B);
    *a = (int)(index / B);
}

// Thread mapping: one thread per output element y[n, f, ho, wo] (1-D grid over N * F * Ho * Wo); the
// thread sums over the Cg * kh * kw inputs of its receptive field.
template <typename T>
__global__ void conv2d_forward_naive(const T* x, const T* weight, const T* b, T* y, int N, int C, int H, int W,
                                     int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo, int F,
                                     int groups)
{
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)N * F * Ho * Wo) return;
    int n, f, ho, wo;
    unravel4(index, F, Ho, Wo, &n, &f, &ho, &wo);
    const int Cg = C / groups;
    const int g = f / (F / groups);

    T sum = b[f];
    for (int c = 0; c < Cg; ++c) {
        for (int i = 0; i < kh; ++i) {
            const int h = ho * sh - ph + i;
            if (h < 0 || h >= H) continue;  // zero padding
            for (int j = 0; j < kw; ++j) {
                const int w = wo * sw - pw + j;
                if (w < 0 || w >= W) continue;
                const long long x_at = (((long long)n * C + g * Cg + c) * H + h) * W + w;
                const long long w_at = (((long long)f * Cg + c) * kh + i) * kw + j;
                sum += weight[w_at] * x[x_at];
            }
        }
    }
    y[index] = sum;
}

// dx[n, c, h, w] = sum over the filters f of c's group and the offsets (i, j) with h = ho * sh - ph + i and
// w = wo * sw - pw + j for some output position (ho, wo) of dy[n, f, ho, wo] * weight[f, c % Cg, i, j].
// Thread mapping: one thread per input element dx[n, c, h, w] (1-D grid over N * C * H * W); the thread
// gathers from every output position whose receptive field contains (h, w).
template <typename T>
__global__ void conv2d_backward_input_naive(const T* dy, const T* weight, T* dx, int N, int C, int H, int W,
                                            int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo,
                                            int F, int groups)
{
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)N * C * H * W) return;
    int n, c, h, w;
    unravel4(index, C, H, W, &n, &c, &h, &w);
    const int Cg = C / groups;
    const int Fg = F / groups;
    const int g = c / Cg;

    T sum = 0;
    for (int f = g * Fg; f < (g + 1) * Fg; ++f) {
        for (int i = 0; i < kh; ++i) {
            const int h_scaled = h + ph - i;  // = ho * sh if output row ho sees input row h at offset i
            if (h_scaled < 0 || h_scaled % sh != 0 || h_scaled / sh >= Ho) continue;
            const int ho = h_scaled / sh;
            for (int j = 0; j < kw; ++j) {
                const int w_scaled = w + pw - j;
                if (w_scaled < 0 || w_scaled % sw != 0 || w_scaled / sw >= Wo) continue;
                const int wo = w_scaled / sw;
                const long long dy_at = (((long long)n * F + f) * Ho + ho) * Wo + wo;
                const long long w_at = (((long long)f * Cg + c % Cg) * kh + i) * kw + j;
                sum += dy[dy_at] * weight[w_at];
            }
        }
    }
    dx[index] = sum;
}

// dweight[f, c, i, j] = sum over n, ho, wo of dy[n, f, ho, wo] * x[n, g * Cg + c, ho * sh - ph + i, wo * sw - pw + j].
// Thread mapping: one thread per weight element (1-D grid over F * Cg * kh * kw); the thread sums over
// the batch and every output position.
template <typename T>
__global__ void conv2d_backward_weight_naive(const T* dy, const T* x, T* dweight, int N, int C, int H, int W,
                                             int kh, int kw, int sh, int sw, int ph, int pw, int Ho, int Wo,
                                             int F, int groups)
{
    const int Cg = C / groups;
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)F * Cg * kh * kw) return;
    int f, c, i, j;
    unravel4(index, Cg, kh, kw, &f, &c, &i, &j);
    const int g = f / (F / groups);

    T sum = 0;
    for (int n = 0; n < N; ++n) {
        for (int ho = 0; ho < Ho; ++ho) {
            const int h = ho * sh - ph + i;
            if (h < 0 || h >= H) continue;
            for (int wo = 0; wo < Wo; ++wo) {
                const int w = wo * sw - pw + j;
                if (w < 0 || w >= W) continue;
                const long long dy_at = (((long long)n * F + f) * Ho + ho) * Wo + wo;
                const long long x_at = (((long long)n * C + g * Cg + c) * H + h) * W + w;
                sum += dy[dy_at] * x[x_at];
            }
        }
    }
    dweight[index] = sum;
}

// cols[(c, i, j), (n, ho, wo)] = x[n, c, ho * sh - ph + i, wo * sw - pw + j] (0 in the padding):
// cols is (C * kh * kw, N * Ho * Wo); row (c, i, j) is input channel c seen through kernel offset (i, j),
// column (n, ho, wo) is one receptive field. Groups need nothing here: the rows of group g are the
// contiguous block c in [g Cg, (g + 1) Cg), i.e. cols is already the stack (groups, Cg kh kw, N Ho Wo).
// Thread mapping: one thread per element of cols (1-D grid over C * kh * kw * N * Ho * Wo); consecutive
// threads take consecutive wo, so they read neighbouring inputs and write neighbouring outputs.
template <typename T>
__global__ void im2col(const T* x, T* cols, int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph,
                       int pw, int Ho, int Wo)
{
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long columns = (long long)N * Ho * Wo;
    if (index >= (long long)C * kh * kw * columns) return;
    const long long row = index / columns;  // (c, i, j)
    const long long column = index % columns;  // (n, ho, wo)
    const int j = (int)(row % kw);
    const int i = (int)(row / kw % kh);
    const int c = (int)(row / ((long long)kw * kh));
    const int wo = (int)(column % Wo);
    const int ho = (int)(column / Wo % Ho);
    const int n = (int)(column / ((long long)Wo * Ho));
    const int h = ho * sh - ph + i;
    const int w = wo * sw - pw + j;
    const bool inside = h >= 0 && h < H && w >= 0 && w < W;
    cols[index] = inside ? x[(((long long)n * C + c) * H + h) * W + w] : T(0);
}

// The adjoint of im2col: dx[n, c, h, w] = sum of dcols[(c, i, j), (n, ho, wo)] over every (i, j, ho, wo)
// that im2col read x[n, c, h, w] into (as Chainer's col2im_gpu).
// Thread mapping: one thread per input element dx[n, c, h, w] (1-D grid over N * C * H * W), gathering
// its at most kh * kw contributions; no two threads write the same element, so no atomics are needed.
template <typename T>
__global__ void col2im(const T* dcols, T* dx, int N, int C, int H, int W, int kh, int kw, int sh, int sw, int ph,
                       int pw, int Ho, int Wo)
{
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)N * C * H * W) return;
    int n, c, h, w;
    unravel4(index, C, H, W, &n, &c, &h, &w);
    const long long columns = (long long)N * Ho * Wo;

    T sum = 0;
    for (int i = 0; i < kh; ++i) {
        const int h_scaled = h + ph - i;  // = ho * sh when output row ho reads row h at kernel row i
        if (h_scaled < 0 || h_scaled % sh != 0 || h_scaled / sh >= Ho) continue;
        const int ho = h_scaled / sh;
        for (int j = 0; j < kw; ++j) {
            const int w_scaled = w + pw - j;
            if (w_scaled < 0 || w_scaled % sw != 0 || w_scaled / sw >= Wo) continue;
            const int wo = w_scaled / sw;
            const long long row = ((long long)c * kh + i) * kw + j;
            const long long column = ((long long)n * Ho + ho) * Wo + wo;
            sum += dcols[row * columns + column];
        }
    }
    dx[index] = sum;
}

// y[b, a, p] = x[a, b, p]: swap the first two axes of a (A, B, P) array. The GEMM produces the
// convolution's output as (F, N, Ho * Wo); swap_axes01 turns it into NCHW, and turns dy back.
// Thread mapping: one thread per output element y[b, a, p] (1-D grid over B * A * P); consecutive threads
// write consecutive p and read consecutive p.
template <typename T>
__global__ void swap_axes01(const T* x, T* y, int A, int B, long long P)
{
    const long long index = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (index >= (long long)A * B * P) return;
    const long long p = index % P;
    const long long a = (index / P) % A;
    const long long b = index / (P * A);
    y[index] = x[(a * B + b) * P + p];
}
