// Correct CUDA that a strict reading of the CUDA model calls racy or undefined, which GPUs run correctly: the
// simulator warns (BenignRaceWarning, BarrierSitesWarning) and checks="strict" refuses. Plus races and
// uninitialised reads whose reports must name the array (tests/test_sim_false_alarms.py). Valid CUDA for
// NVRTC.

// Every lane of each warp stores the warp's sum to the same element (llm.c's reductions do this: all lanes
// hold the same value after the reduction, so which lane's store lands does not matter).
extern "C" __global__ void every_lane_stores_the_sum(const int* x, int* sums) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    int sum = __reduce_add_sync(0xffffffffu, x[i]);
    sums[i / 32] = sum;
}

// One step of Rodinia's breadth-first search: each thread of the frontier marks its neighbours and sets the
// "not done" flag. Many threads store 1 to the same flag and to shared neighbours.
extern "C" __global__ void bfs_step(const int* frontier, const int* neighbours, int* next, int* not_done,
                                    int n) {
    int node = blockIdx.x * blockDim.x + threadIdx.x;
    if (node >= n || !frontier[node]) return;
    for (int k = 0; k < 2; ++k) next[neighbours[2 * node + k]] = 1;
    *not_done = 1;
}

// Two halves of the block wait at different __syncthreads() lines (SGEMM_CUDA's double buffering: one half
// loads the next tile while the other computes): every thread meets every other at each barrier on sm_70+.
extern "C" __global__ void two_halves(const float* x, float* y) {
    __shared__ float tile[64];
    unsigned int t = threadIdx.x;
    if (t < 32) {
        tile[t] = x[t];
        tile[t + 32] = x[t + 32];
        __syncthreads();
    } else {
        __syncthreads();
    }
    y[t] = tile[63 - t];
}

// Rodinia NW's pattern: the borders of a shared tile written at constant indices (thread 0 writes the
// corner), read at computed ones after a barrier.
extern "C" __global__ void constant_borders(const int* x, int* y) {
    __shared__ int tile[17][17];
    unsigned int t = threadIdx.x;
    if (t == 0) tile[0][0] = x[0];
    tile[t + 1][0] = x[t + 1];
    tile[0][t + 1] = x[t + 17];
    __syncthreads();
    y[t] = tile[t][0] + tile[0][t];
}

// Neighbours read each other's dynamic shared memory with no barrier: a race in the array `buffer`.
extern "C" __global__ void dynamic_shared_race(const float* x, float* y) {
    extern __shared__ float buffer[];
    unsigned int t = threadIdx.x;
    buffer[t] = x[t];
    y[t] = buffer[(t + 1) % blockDim.x];
}

// Each thread stores its own index into one flag: different values, a real race.
extern "C" __global__ void last_writer_wins(int* flag) { *flag = (int)threadIdx.x; }

// Not a false alarm: lane 0 returns while the other lanes wait for it at a __syncwarp() (synccheck, with
// both lines in the report).
extern "C" __global__ void lane_leaves_the_warp(float* y) {
    if (threadIdx.x == 0) return;
    y[threadIdx.x] = 1.0f;
    __syncwarp();
}
