// GEMM, C = A @ B, from naive to register-blocked without bank conflicts: the numbered versions of the kernel harness
// (python -m scratchnet.kernel_bench gemm), in the style of llm.c's dev/cuda and siboehm/SGEMM_CUDA.
//
//   A: (M, K), B: (K, N), C: (M, N), all row-major.   C[m, n] = sum_k A[m, k] * B[k, n]
//
// Every version computes the same thing; what changes is how threads map to the outputs and where the
// operands are read from. Each version handles any M, N, K (edge tiles are bounds-checked and padded with
// zeros), so the harness can validate them on odd sizes. The launch geometry of each version is in
// scratchnet/kernel_bench.py, next to its name.

// Version 1: naive. One thread per element of C, with threadIdx.x walking down the ROWS of C.
// Thread mapping (launch): block (V1_BLOCK, V1_BLOCK) = (32, 32), grid (ceil(M / 32), ceil(N / 32)).
// The 32 threads of a warp have consecutive m and the same n, so each load of A[m, k] touches 32
// different cache lines (addresses K elements apart) and so does each store of C[m, n]: the memory
// system moves 32 lines to deliver 32 useful numbers. B[k, n] is the same address for the whole warp.
// __launch_bounds__(threads) on every version: the compiler must fit the registers of that many threads in
// one block. Without it gemm_v1_naive<double> takes 64 registers x 1024 threads on sm_75, the whole
// register file, and any growth would make the launch fail with "too many resources requested".
#define V1_BLOCK 32  // v1 and v2: blocks of V1_BLOCK x V1_BLOCK threads
#define V1_THREADS (V1_BLOCK * V1_BLOCK)

template <typename T>
__global__ __launch_bounds__(V1_THREADS) void gemm_v1_naive(const T* A, const T* B, T* C, int M, int N,
                                                            int K) {
    int m = blockIdx.x * blockDim.x + threadIdx.x;
    int n = blockIdx.y * blockDim.y + threadIdx.y;
    if (m < M && n < N) {
        T acc = T(0);
        for (int k = 0; k < K; ++k) {
            acc += A[(long long)m * K + k] * B[(long long)k * N + n];
        }
        C[(long long)m * N + n] = acc;
    }
}

// Version 2: coalesced. The same arithmetic, with threadIdx.x walking along the COLUMNS of C.
// Thread mapping (launch): block (32, 32), grid (ceil(N / 32), ceil(M / 32)).
// Now a warp reads 32 consecutive B[k, n] (one or two cache lines), reads one broadcast A[m, k] and
// writes 32 consecutive C[m, n]. Same FLOPs, many fewer memory transactions (siboehm: 1.3% -> 8.5% of
// cuBLAS on an A6000). Every A and B element is still read from global memory (or L1/L2) K times.
template <typename T>
__global__ __launch_bounds__(V1_THREADS) void gemm_v2_coalesced(const T* A, const T* B, T* C, int M, int N,
                                                                int K) {
    int n = blockIdx.x * blockDim.x + threadIdx.x;
    int m = blockIdx.y * blockDim.y + threadIdx.y;
    if (m < M && n < N) {
        T acc = T(0);
        for (int k = 0; k < K; ++k) {
            acc += A[(long long)m * K + k] * B[(long long)k * N + n];
        }
        C[(long long)m * N + n] = acc;
    }
}

// Version 3: shared-memory tiling. A block computes a 32 x 32 tile of C. It walks along K in steps of 32:
// the block loads a 32 x 32 tile of A and one of B into shared memory (each thread one element of each,
// coalesced), waits at a barrier, then every thread does 32 multiply-adds from shared memory.
// Thread mapping (launch): block (32, 32), grid (ceil(N / 32), ceil(M / 32)).
// Each global element is now loaded once per tile instead of once per output: 32x less global traffic.
// The limit moves to shared memory: 2 shared loads per multiply-add.
#define V3_TILE 32
#define V3_THREADS (V3_TILE * V3_TILE)

template <typename T>
__global__ __launch_bounds__(V3_THREADS) void gemm_v3_tiled(const T* A, const T* B, T* C, int M, int N,
                                                            int K) {
    __shared__ T As[V3_TILE][V3_TILE];
    __shared__ T Bs[V3_TILE][V3_TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int m = blockIdx.y * V3_TILE + ty;
    int n = blockIdx.x * V3_TILE + tx;
    T acc = T(0);
    for (int k0 = 0; k0 < K; k0 += V3_TILE) {
        As[ty][tx] = (m < M && k0 + tx < K) ? A[(long long)m * K + k0 + tx] : T(0);
        Bs[ty][tx] = (k0 + ty < K && n < N) ? B[(long long)(k0 + ty) * N + n] : T(0);
        __syncthreads();  // the whole tile is loaded before anyone reads it
        for (int k = 0; k < V3_TILE; ++k) {
            acc += As[ty][k] * Bs[k][tx];
        }
        __syncthreads();  // everyone is done with this tile before it is overwritten
    }
    if (m < M && n < N) {
        C[(long long)m * N + n] = acc;
    }
}

// Version 4: 1-D register blocking. A block of 512 threads computes a 64 x 64 tile of C; each thread
// computes V4_TM = 8 outputs in one column (rows r*8 .. r*8+7). Per step along K, a thread loads one
// B value from shared memory into a register and reuses it for 8 multiply-adds with 8 values of A.
// Thread mapping (launch): block (512,), grid (ceil(N / 64), ceil(M / 64)).
// Shared-memory loads per multiply-add drop from 2 to about 1.1, and each thread has 8 independent
// accumulators, so the arithmetic pipelines stay busy (siboehm: 12.8% -> 36.5% of cuBLAS).
#define V4_BM 64
#define V4_BN 64
#define V4_BK 8
#define V4_TM 8
#define V4_THREADS (V4_BM * V4_BN / V4_TM)  // 512: one thread per V4_TM outputs of the tile

template <typename T>
__global__ __launch_bounds__(V4_THREADS) void gemm_v4_blocktile_1d(const T* A, const T* B, T* C, int M, int N,
                                                                   int K) {
    __shared__ T As[V4_BM * V4_BK];  // (BM, BK) tile of A
    __shared__ T Bs[V4_BK * V4_BN];  // (BK, BN) tile of B
    int tid = threadIdx.x;
    int block_row = blockIdx.y * V4_BM, block_col = blockIdx.x * V4_BN;
    // This thread's outputs: rows thread_row*TM + i of the tile, column thread_col.
    int thread_col = tid % V4_BN, thread_row = tid / V4_BN;
    // Each of the 512 threads loads one element of the A tile and one of the B tile.
    int a_row = tid / V4_BK, a_col = tid % V4_BK;
    int b_row = tid / V4_BN, b_col = tid % V4_BN;

    T acc[V4_TM];
    for (int i = 0; i < V4_TM; ++i) acc[i] = T(0);

    for (int k0 = 0; k0 < K; k0 += V4_BK) {
        int m = block_row + a_row, k = k0 + a_col;
        As[a_row * V4_BK + a_col] = (m < M && k < K) ? A[(long long)m * K + k] : T(0);
        k = k0 + b_row;
        int n = block_col + b_col;
        Bs[b_row * V4_BN + b_col] = (k < K && n < N) ? B[(long long)k * N + n] : T(0);
        __syncthreads();
        for (int dot = 0; dot < V4_BK; ++dot) {
            T b = Bs[dot * V4_BN + thread_col];  // one shared load, reused V4_TM times
            for (int i = 0; i < V4_TM; ++i) {
                acc[i] += As[(thread_row * V4_TM + i) * V4_BK + dot] * b;
            }
        }
        __syncthreads();
    }
    int n = block_col + thread_col;
    for (int i = 0; i < V4_TM; ++i) {
        int m = block_row + thread_row * V4_TM + i;
        if (m < M && n < N) {
            C[(long long)m * N + n] = acc[i];
        }
    }
}

// Version 5: 2-D register blocking. A block of 256 threads computes a 128 x 128 tile of C; each thread an
// 8 x 8 sub-tile. Per step along K a thread loads 8 values of A and 8 of B into registers and does
// 8 * 8 = 64 multiply-adds with them (an outer product), so shared-memory loads per multiply-add drop to
// 16 / 64 = 0.25. The A tile is stored transposed in shared memory (As[k][m]) so that a thread's 8 values
// of A are consecutive, like its 8 values of B.
// Thread mapping (launch): block (256,), grid (ceil(N / 128), ceil(M / 128)).
// Each global element is loaded once per 128-wide tile (4x fewer loads than v3), and the 64 accumulators
// live in registers (siboehm: 68.7% of cuBLAS). Large tiles waste work when M or N is small.
#define V5_BM 128
#define V5_BN 128
#define V5_BK 8
#define V5_TM 8
#define V5_TN 8
#define V5_THREADS ((V5_BM / V5_TM) * (V5_BN / V5_TN))

template <typename T>
__global__ __launch_bounds__(V5_THREADS) void gemm_v5_blocktile_2d(const T* A, const T* B, T* C, int M, int N,
                                                                   int K) {
    __shared__ T As[V5_BK * V5_BM];  // A tile, transposed: As[k * BM + m]
    __shared__ T Bs[V5_BK * V5_BN];  // B tile: Bs[k * BN + n]
    int tid = threadIdx.x;
    int block_row = blockIdx.y * V5_BM, block_col = blockIdx.x * V5_BN;
    // This thread's 8 x 8 sub-tile starts at row thread_row * TM, column thread_col * TN of the tile.
    int thread_col = tid % (V5_BN / V5_TN), thread_row = tid / (V5_BN / V5_TN);

    T acc[V5_TM][V5_TN];
    for (int i = 0; i < V5_TM; ++i)
        for (int j = 0; j < V5_TN; ++j) acc[i][j] = T(0);
    T reg_a[V5_TM];
    T reg_b[V5_TN];

    for (int k0 = 0; k0 < K; k0 += V5_BK) {
        // 256 threads load the 128 x 8 A tile and the 8 x 128 B tile, 4 elements each, coalesced.
        for (int e = tid; e < V5_BM * V5_BK; e += V5_THREADS) {
            int r = e / V5_BK, c = e % V5_BK;
            int m = block_row + r, k = k0 + c;
            As[c * V5_BM + r] = (m < M && k < K) ? A[(long long)m * K + k] : T(0);
        }
        for (int e = tid; e < V5_BK * V5_BN; e += V5_THREADS) {
            int r = e / V5_BN, c = e % V5_BN;
            int k = k0 + r, n = block_col + c;
            Bs[r * V5_BN + c] = (k < K && n < N) ? B[(long long)k * N + n] : T(0);
        }
        __syncthreads();
        for (int dot = 0; dot < V5_BK; ++dot) {
            for (int i = 0; i < V5_TM; ++i) reg_a[i] = As[dot * V5_BM + thread_row * V5_TM + i];
            for (int j = 0; j < V5_TN; ++j) reg_b[j] = Bs[dot * V5_BN + thread_col * V5_TN + j];
            for (int i = 0; i < V5_TM; ++i)
                for (int j = 0; j < V5_TN; ++j) acc[i][j] += reg_a[i] * reg_b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < V5_TM; ++i) {
        int m = block_row + thread_row * V5_TM + i;
        for (int j = 0; j < V5_TN; ++j) {
            int n = block_col + thread_col * V5_TN + j;
            if (m < M && n < N) {
                C[(long long)m * N + n] = acc[i][j];
            }
        }
    }
}

// Version 6: no shared-memory bank conflicts. Version 5's arithmetic, with two changes to where values lie
// and who reads them. Shared memory is 32 banks of 4-byte words (word w in bank w % 32); one pass delivers
// one word from each bank, so a warp's access takes one pass per 128 bytes when its lanes' words lie in
// different banks (or are the same word), and k passes when one bank must deliver k different words: a
// k-way conflict. Version 5 has two (python -m scratchnet.kernel_bench gemm --device sim counts them):
// * Its A tile store, As[c][r]: a warp's lanes read 8 consecutive k of 4 rows (coalesced) and store them
//   8 rows of As apart, 128 values: 8 lanes in one bank (8-way). Here every row of As is padded by
//   V6_PAD_BYTES = 16 bytes (4 floats, 2 doubles), so the 8 rows start 4 banks apart.
// * Its B loads, Bs[dot][thread_col * 8 + j]: 16 threads 8 values apart meet in the same banks (4-way in
//   float, 8-way in double). Here thread (thread_row, thread_col) computes rows thread_row + 16 i and
//   columns thread_col + 16 j of the tile instead of 8 consecutive ones, so a warp reads 16 consecutive
//   values (and writes 16 consecutive columns of C, coalesced).
// The loop over the tile's k is unrolled on the GPU (the simulator's host compiler has no #pragma unroll).
// kernels/gemm_blocked.cu, which the layers use, makes the same two changes to its 64 x 64 tiles.
// Thread mapping (launch): block (256,), grid (ceil(N / 128), ceil(M / 128)).
#define V6_BM 128
#define V6_BN 128
#define V6_BK 8
#define V6_TM 8
#define V6_TN 8
#define V6_ROWS (V6_BM / V6_TM)  // 16 thread rows
#define V6_COLS (V6_BN / V6_TN)  // 16 thread columns
#define V6_THREADS (V6_ROWS * V6_COLS)
#define V6_PAD_BYTES 16  // after each row of the A tile

template <typename T>
__global__ __launch_bounds__(V6_THREADS) void gemm_v6_conflict_free(const T* A, const T* B, T* C, int M,
                                                                    int N, int K) {
    __shared__ T As[V6_BK][V6_BM + V6_PAD_BYTES / sizeof(T)];  // A tile, transposed, rows padded
    __shared__ T Bs[V6_BK][V6_BN];                             // B tile
    int tid = threadIdx.x;
    int block_row = blockIdx.y * V6_BM, block_col = blockIdx.x * V6_BN;
    // This thread's 8 x 8 outputs: rows thread_row + 16 i, columns thread_col + 16 j of the tile.
    int thread_col = tid % V6_COLS, thread_row = tid / V6_COLS;

    T acc[V6_TM][V6_TN];
    for (int i = 0; i < V6_TM; ++i)
        for (int j = 0; j < V6_TN; ++j) acc[i][j] = T(0);
    T reg_a[V6_TM];
    T reg_b[V6_TN];

    for (int k0 = 0; k0 < K; k0 += V6_BK) {
        for (int e = tid; e < V6_BM * V6_BK; e += V6_THREADS) {
            int r = e / V6_BK, c = e % V6_BK;
            int m = block_row + r, k = k0 + c;
            As[c][r] = (m < M && k < K) ? A[(long long)m * K + k] : T(0);
        }
        for (int e = tid; e < V6_BK * V6_BN; e += V6_THREADS) {
            int r = e / V6_BN, c = e % V6_BN;
            int k = k0 + r, n = block_col + c;
            Bs[r][c] = (k < K && n < N) ? B[(long long)k * N + n] : T(0);
        }
        __syncthreads();
#ifndef SCRATCHNET_SIM
#pragma unroll
#endif
        for (int dot = 0; dot < V6_BK; ++dot) {
            for (int i = 0; i < V6_TM; ++i) reg_a[i] = As[dot][thread_row + V6_ROWS * i];
            for (int j = 0; j < V6_TN; ++j) reg_b[j] = Bs[dot][thread_col + V6_COLS * j];
            for (int i = 0; i < V6_TM; ++i)
                for (int j = 0; j < V6_TN; ++j) acc[i][j] += reg_a[i] * reg_b[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < V6_TM; ++i) {
        int m = block_row + thread_row + V6_ROWS * i;
        for (int j = 0; j < V6_TN; ++j) {
            int n = block_col + thread_col + V6_COLS * j;
            if (m < M && n < N) {
                C[(long long)m * N + n] = acc[i][j];
            }
        }
    }
}
