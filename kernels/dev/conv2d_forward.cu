// 2-D convolution forward (cross-correlation, as in every deep-learning library), from a direct loop to
// an implicit GEMM: the numbered versions of the kernel harness (python -m scratchnet.kernel_bench conv2d).
//
//   x: (N, C, H, W), weight: (F, C, KH, KW), bias: (F,), y: (N, F, OH, OW), NCHW, row-major
//   y[n, f, oh, ow] = bias[f] + sum_{c, kh, kw} weight[f, c, kh, kw] * x[n, c, oh*S - P + kh, ow*S - P + kw]
//   with x = 0 outside the image (zero padding), OH = (H + 2*P - KH) / S + 1 (and OW alike).
//
// The launch geometry of each version is in scratchnet/kernel_bench.py, next to its name.

// Version 1: direct, naive. One thread per output element, flattened in (n, f, oh, ow) order, ow fastest.
// Thread mapping (launch): 1-D, ceil(N*F*OH*OW / 256) blocks of 256 threads.
// Writes are coalesced (neighbouring threads write neighbouring ow), but every thread reads its whole
// C*KH*KW input window and filter from global memory: each input element is read up to F*KH*KW times
// (from L1/L2 at best), and the loop does one multiply-add per two loads.
template <typename T>
__global__ void conv2d_forward_v1_direct(const T* x, const T* weight, const T* bias, T* y, int N, int C,
                                         int H, int W, int F, int KH, int KW, int S, int P, int OH, int OW) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)N * F * OH * OW;
    if (i >= total) return;
    int ow = (int)(i % OW);
    int oh = (int)((i / OW) % OH);
    int f = (int)((i / ((long long)OW * OH)) % F);
    long long n = i / ((long long)OW * OH * F);
    T acc = bias[f];
    for (int c = 0; c < C; ++c) {
        const T* x_plane = x + (n * C + c) * H * W;
        const T* weight_filter = weight + ((long long)f * C + c) * KH * KW;
        for (int kh = 0; kh < KH; ++kh) {
            int h = oh * S - P + kh;
            if (h < 0 || h >= H) continue;
            for (int kw = 0; kw < KW; ++kw) {
                int w = ow * S - P + kw;
                if (w < 0 || w >= W) continue;
                acc += weight_filter[kh * KW + kw] * x_plane[(long long)h * W + w];
            }
        }
    }
    y[i] = acc;
}

// Version 2: direct, with the input tile and the filters in shared memory. A block of 16 x 16 threads
// computes a 16 x 16 tile of output pixels for one image and V2_FB = 8 output channels; each thread keeps
// 8 accumulators (one per channel) in registers. For each input channel c the block copies the input patch
// its tile needs ((16-1)*S + KH rows by (16-1)*S + KW columns) and the 8 filters' KH x KW
// weights into shared memory, then every thread computes from shared memory.
// Thread mapping (launch): block (16, 16), grid (ceil(OW / 16), ceil(OH / 16), N * ceil(F / 8)),
//                            dynamic shared memory ((15*S + KH) * (15*S + KW) + 8*KH*KW) * sizeof(T).
// Each input element is now read from global memory about once per 8 output channels (not once per
// output that uses it), and each weight once per block; a loaded input value feeds 8 multiply-adds.
#define V2_TILE 16
#define V2_FB 8

// The dynamic shared memory of v2 (sized by the launch): one buffer with a single element type for every
// template instance, viewed as T inside the kernel.
extern __shared__ double conv_v2_smem[];

template <typename T>
__global__ void conv2d_forward_v2_smem(const T* x, const T* weight, const T* bias, T* y, int N, int C, int H,
                                       int W, int F, int KH, int KW, int S, int P, int OH, int OW) {
    T* patch = reinterpret_cast<T*>(conv_v2_smem);  // (patch_h, patch_w) input patch of channel c
    int patch_h = (V2_TILE - 1) * S + KH, patch_w = (V2_TILE - 1) * S + KW;
    T* filters = patch + patch_h * patch_w;  // (V2_FB, KH, KW) weights of channel c

    int f_groups = (F + V2_FB - 1) / V2_FB;
    int n = blockIdx.z / f_groups, f0 = (blockIdx.z % f_groups) * V2_FB;
    int oh0 = blockIdx.y * V2_TILE, ow0 = blockIdx.x * V2_TILE;
    int oh = oh0 + threadIdx.y, ow = ow0 + threadIdx.x;
    int tid = threadIdx.y * V2_TILE + threadIdx.x;
    int h0 = oh0 * S - P, w0 = ow0 * S - P;  // top-left input pixel of the patch

    T acc[V2_FB];
    for (int j = 0; j < V2_FB; ++j) acc[j] = (f0 + j < F) ? bias[f0 + j] : T(0);

    for (int c = 0; c < C; ++c) {
        const T* x_plane = x + ((long long)n * C + c) * H * W;
        for (int e = tid; e < patch_h * patch_w; e += V2_TILE * V2_TILE) {  // coalesced along patch rows
            int h = h0 + e / patch_w, w = w0 + e % patch_w;
            patch[e] = (h >= 0 && h < H && w >= 0 && w < W) ? x_plane[(long long)h * W + w] : T(0);
        }
        for (int e = tid; e < V2_FB * KH * KW; e += V2_TILE * V2_TILE) {
            int j = e / (KH * KW), k = e % (KH * KW);
            filters[e] = (f0 + j < F) ? weight[((long long)(f0 + j) * C + c) * KH * KW + k] : T(0);
        }
        __syncthreads();  // patch and filters complete
        for (int kh = 0; kh < KH; ++kh) {
            for (int kw = 0; kw < KW; ++kw) {
                T v = patch[(threadIdx.y * S + kh) * patch_w + threadIdx.x * S + kw];
                for (int j = 0; j < V2_FB; ++j) acc[j] += filters[(j * KH + kh) * KW + kw] * v;
            }
        }
        __syncthreads();  // everyone is done before the next channel overwrites the buffers
    }
    if (oh < OH && ow < OW) {
        for (int j = 0; j < V2_FB && f0 + j < F; ++j) {
            y[(((long long)n * F + f0 + j) * OH + oh) * OW + ow] = acc[j];
        }
    }
}

// Version 3: implicit GEMM. The convolution is the matrix product
//   Y (F, N*OH*OW) = Wm (F, C*KH*KW) @ X_col (C*KH*KW, N*OH*OW)
// where X_col is the im2col matrix (column p = one output pixel, row k = (c, kh, kw) of its window).
// The kernel never writes X_col to memory: while loading a tile of X_col into shared memory it computes
// each element's input address (the "implicit" in implicit GEMM). The product is a register-blocked
// tiled GEMM (as gemm_v5_blocktile_2d): a block of 256 threads computes a 64 (filters) x 64 (pixels)
// tile; each thread 4 x 4 outputs, strided by 16 so that neighbouring threads write neighbouring pixels.
// Thread mapping (launch): block (256,), grid (ceil(N*OH*OW / 64), ceil(F / 64)).
// Compared with v2, every input value loaded into shared memory feeds 4 multiply-adds per shared load
// and the work is one big GEMM however small H and W are (no idle threads on 10 x 10 outputs); compared
// with explicit im2col + GEMM, it saves writing and re-reading the KH*KW-times larger X_col.
#define V3_BM 64
#define V3_BN 64
#define V3_BK 8
#define V3_TM 4
#define V3_TN 4
#define V3_ROWS (V3_BM / V3_TM)  // 16 thread rows
#define V3_COLS (V3_BN / V3_TN)  // 16 thread columns
#define V3_THREADS (V3_ROWS * V3_COLS)

template <typename T>
__global__ void conv2d_forward_v3_implicit_gemm(const T* x, const T* weight, const T* bias, T* y, int N,
                                                int C, int H, int W, int F, int KH, int KW, int S, int P,
                                                int OH, int OW) {
    __shared__ T Ws[V3_BK * V3_BM];  // weight tile, transposed: Ws[k * BM + f]
    __shared__ T Xs[V3_BK * V3_BN];  // X_col tile: Xs[k * BN + p]
    int gemm_k = C * KH * KW;
    long long pixels = (long long)N * OH * OW;  // number of output pixels (columns of the GEMM)
    int tid = threadIdx.x;
    int f_base = blockIdx.y * V3_BM;
    long long p_base = (long long)blockIdx.x * V3_BN;
    // Thread (row, col) owns filters f_base + row + 16*i and pixels p_base + col + 16*j (i, j < 4).
    int col = tid % V3_COLS, row = tid / V3_COLS;

    T acc[V3_TM][V3_TN];
    for (int i = 0; i < V3_TM; ++i)
        for (int j = 0; j < V3_TN; ++j) acc[i][j] = T(0);

    for (int k0 = 0; k0 < gemm_k; k0 += V3_BK) {
        for (int e = tid; e < V3_BM * V3_BK; e += V3_THREADS) {
            int r = e / V3_BK, c = e % V3_BK;
            int f = f_base + r, k = k0 + c;
            Ws[c * V3_BM + r] = (f < F && k < gemm_k) ? weight[(long long)f * gemm_k + k] : T(0);
        }
        for (int e = tid; e < V3_BK * V3_BN; e += V3_THREADS) {
            int r = e / V3_BN, c = e % V3_BN;
            int k = k0 + r;
            long long p = p_base + c;
            T v = T(0);
            if (k < gemm_k && p < pixels) {
                // Row k of X_col is (channel, kh, kw); column p is (image, oh, ow).
                int ch = k / (KH * KW), kh = (k / KW) % KH, kw = k % KW;
                long long n = p / ((long long)OH * OW);
                int q = (int)(p % ((long long)OH * OW));
                int h = (q / OW) * S - P + kh, w = (q % OW) * S - P + kw;
                if (h >= 0 && h < H && w >= 0 && w < W) v = x[((n * C + ch) * H + h) * W + w];
            }
            Xs[r * V3_BN + c] = v;
        }
        __syncthreads();
        for (int dot = 0; dot < V3_BK; ++dot) {
            T reg_weight[V3_TM], reg_x[V3_TN];
            for (int i = 0; i < V3_TM; ++i) reg_weight[i] = Ws[dot * V3_BM + row + V3_ROWS * i];
            for (int j = 0; j < V3_TN; ++j) reg_x[j] = Xs[dot * V3_BN + col + V3_COLS * j];
            for (int i = 0; i < V3_TM; ++i)
                for (int j = 0; j < V3_TN; ++j) acc[i][j] += reg_weight[i] * reg_x[j];
        }
        __syncthreads();
    }
    for (int j = 0; j < V3_TN; ++j) {
        long long p = p_base + col + V3_COLS * j;
        if (p >= pixels) continue;
        long long n = p / ((long long)OH * OW);
        long long q = p % ((long long)OH * OW);
        for (int i = 0; i < V3_TM; ++i) {
            int f = f_base + row + V3_ROWS * i;
            if (f < F) y[(n * F + f) * OH * OW + q] = acc[i][j] + bias[f];
        }
    }
}
