// The pieces of a residual block that are not layers of their own. Used by scratchnet/layers/residual.py.
//
//   add:       y = a + b                      (main branch + shortcut; its backward passes dy to both)
//   shortcut "option A" (He et al. 2016), from x (N, C, H, W) to (N, F, OH, OW), F >= C:
//     forward:  y[n, f, oh, ow] = x[n, f - P, oh S, ow S]   when 0 <= f - P < C, else 0
//     backward: dx[n, c, h, w]  = dy[n, c + P, h / S, w / S] when S divides h and w, else 0
//   with stride S (OH = ceil(H / S), OW = ceil(W / S)) and P = (F - C) / 2 zero channels before the copy.

// One thread per element i < count.
template <typename T>
__global__ void residual_add(const T* a, const T* b, T* y, long long count) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) y[i] = a[i] + b[i];
}

// One thread per output element i < N * F * OH * OW.
template <typename T>
__global__ void shortcut_pad_forward(const T* x, T* y, int N, int C, int H, int W, int F, int OH, int OW,
                                     int S, int P) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * F * OH * OW) return;
    const int ow = (int)(i % OW);
    const int oh = (int)(i / OW % OH);
    const int f = (int)(i / ((long long)OW * OH) % F);
    const long long n = i / ((long long)OW * OH * F);
    const int c = f - P;
    y[i] = (c >= 0 && c < C) ? x[((n * C + c) * H + (long long)oh * S) * W + (long long)ow * S] : T(0);
}

// One thread per input element i < N * C * H * W (a gather: each input pixel reads the one output it fed).
template <typename T>
__global__ void shortcut_pad_backward(const T* dy, T* dx, int N, int C, int H, int W, int F, int OH, int OW,
                                      int S, int P) {
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long long)N * C * H * W) return;
    const int w = (int)(i % W);
    const int h = (int)(i / W % H);
    const int c = (int)(i / ((long long)W * H) % C);
    const long long n = i / ((long long)W * H * C);
    const bool kept = h % S == 0 && w % S == 0;
    dx[i] = kept ? dy[((n * F + c + P) * OH + h / S) * OW + w / S] : T(0);
}
