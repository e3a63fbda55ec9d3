// Kernel exercise 9: a register-blocked matrix product, the main loop of kernels/gemm_blocked.cu.
//
// C (M, N) = A (M, K) @ B (K, N), row-major, as in exercises 3 and 4. In exercise 4 each thread computes
// one element of C and pays for each multiply-add with 2 loads from shared memory. Here each thread
// computes a THREAD_TILE x THREAD_TILE block of C (TM = TN = 4), kept in registers as acc[i][j]: per step
// along k it loads a fragment of its 4 values of A's tile and 4 of B's into registers, a[i] and b[j], and
// adds their outer product, acc[i][j] += a[i] * b[j]: 16 multiply-adds for 8 shared loads, 0.5 loads per
// multiply-add instead of 2. kernels/gemm_blocked.cu, the GEMM the layers launch, does the same with
// 64 x 64 block tiles and 8 x 8 per thread.
//
// Block tile: a block of BLOCK_SIDE x BLOCK_SIDE = 8 x 8 threads computes the 32 x 32 tile of C at
//   row0 = blockIdx.y * BLOCK_TILE, col0 = blockIdx.x * BLOCK_TILE.
// Thread mapping: thread (tx, ty) = (threadIdx.x, threadIdx.y) owns the 4 x 4 elements of C at
//   rows row0 + ty + BLOCK_SIDE * i, columns col0 + tx + BLOCK_SIDE * j (i, j < THREAD_TILE): acc[i][j].
// Its rows are 8 apart, not 4 consecutive ones, so that a warp's lanes read neighbouring values of a tile
// row (tx + 8 j for tx = 0..7), each from its own bank.
//
// The steps, for k0 = 0, TILE_K, 2 * TILE_K, ... < K:
// 1. The block copies the 32 x 32 tiles of A and B at k0 into shared memory, k-major (load_tile, given):
//      As[k][r] = A[row0 + r, k0 + k],   Bs[k][c] = B[k0 + k, col0 + c]   (0 outside the matrices).
// 2. __syncthreads(): both tiles are complete before anyone reads them.
// 3. For k < TILE_K: the fragments a[i] = As[k][ty + BLOCK_SIDE * i] and b[j] = Bs[k][tx + BLOCK_SIDE * j],
//    then acc[i][j] += a[i] * b[j] for every i, j < THREAD_TILE.
// 4. __syncthreads(): everyone has read the tiles before the next step's copy overwrites them.
// Finally the thread stores its block: C[row, col] = acc[i][j] for each of its (row, col) inside C. Every
// thread loads its share of the tiles and reaches every barrier, also a thread whose elements all lie
// outside C (the tiles hold 0 there, so its sums are 0 and it stores none of them).
//
// Bank conflicts: the checker requires every shared-memory access to be conflict-free. Shared memory is 32
// banks of 4-byte words (word w in bank w % 32). load_tile copies a row of A with a warp's 32 lanes reading
// 32 consecutive k (coalesced) and storing them down a column of As: As[k][r] for k = 0..31. With rows of
// 32 floats those 32 words are 32 apart, all in one bank: a 32-way conflict, 32 passes of the shared memory
// instead of one. With rows of TILE_STRIDE = 33 floats (one unused) they are 33 apart, in 32 banks.
//
// Launch (the checker's): blocks of (BLOCK_SIDE, BLOCK_SIDE) threads,
// grid (ceil(N / BLOCK_TILE), ceil(M / BLOCK_TILE)).

#define BLOCK_TILE 32                            // a block computes a BLOCK_TILE x BLOCK_TILE tile of C,
#define TILE_K 32                                // walking along K TILE_K steps at a time;
#define THREAD_TILE 4                            // each thread computes THREAD_TILE x THREAD_TILE of it
#define TILE_STRIDE (BLOCK_TILE + 1)             // a tile row in shared memory: 32 values and one unused
#define BLOCK_SIDE (BLOCK_TILE / THREAD_TILE)    // 8: blocks are BLOCK_SIDE x BLOCK_SIDE threads
#define BLOCK_THREADS (BLOCK_SIDE * BLOCK_SIDE)  // 64

// Given: copy the BLOCK_TILE x TILE_K tile at (row0, k0) of a matrix X (rows x K) into tile[k][r]. X is
// row-major, either as it is (element (r, k) at X[r * K + k]: A) or k-major (at X[k * rows + r]: B, which
// is the N x K matrix Bᵀ stored k-major). Thread t copies elements t, t + 64, ... of the tile in the order
// they lie in memory, so that consecutive threads read consecutive addresses. 0 outside X.
__device__ void load_tile(float (*tile)[TILE_STRIDE], const float* X, int rows, int K, int k_major, int row0,
                          int k0, int t) {
    for (int e = t; e < BLOCK_TILE * TILE_K; e += BLOCK_THREADS) {
        const int r = k_major ? e % BLOCK_TILE : e / TILE_K;
        const int k = k_major ? e / BLOCK_TILE : e % TILE_K;
        const int row = row0 + r, col = k0 + k;
        tile[k][r] = row < rows && col < K ? (k_major ? X[col * rows + row] : X[row * K + col]) : 0.0f;
    }
}

extern "C" __global__ void gemm_register_blocked(const float* A, const float* B, float* C, int M, int N,
                                                 int K) {
    // TODO: write the body (see the comments above): declare the tiles, As and Bs, and acc; the loop over
    //       k0 with load_tile(As, A, M, K, 0, row0, k0, t) and load_tile(Bs, B, N, K, 1, col0, k0, t),
    //       t = ty * BLOCK_SIDE + tx, and the two barriers; the fragments and their outer product; the store.
}
