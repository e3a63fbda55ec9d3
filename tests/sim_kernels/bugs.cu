// One bug of each class the simulator's checks find (tests/test_sim_checks.py), next to its fixed twin
// where one makes sense. Every kernel here is valid CUDA (NVRTC compiles it); the bugs are at run time.
#define TILE 16

// Reads x[i + 1]: one element past the end for the last thread.
extern "C" __global__ void read_one_past(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 1];
}

// Reads x[i + 100000]: far outside the array, where no guard zone reaches.
extern "C" __global__ void read_far_away(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i + 100000];
}

// Writes one element past the end of the dynamic shared memory the launch asked for.
extern "C" __global__ void dynamic_shared_overflow(float* y) {
    extern __shared__ float buffer[];
    buffer[threadIdx.x + 1] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = buffer[threadIdx.x];
}

// Transposes an n x n matrix through a shared tile; with_barrier = 0 drops the __syncthreads() between
// writing the tile and reading it transposed (the classic missing barrier).
extern "C" __global__ void transpose(const float* x, float* y, int n, int with_barrier) {
    __shared__ float tile[TILE][TILE + 1];
    int row = blockIdx.y * TILE + threadIdx.y, col = blockIdx.x * TILE + threadIdx.x;
    tile[threadIdx.y][threadIdx.x] = x[row * n + col];
    if (with_barrier) __syncthreads();
    int out_row = blockIdx.x * TILE + threadIdx.y, out_col = blockIdx.y * TILE + threadIdx.x;
    y[out_row * n + out_col] = tile[threadIdx.x][threadIdx.y];
}

// Two static shared arrays side by side; thread 3 writes first[index]: 16 is one past its end, -1 one before
// its start, both usually inside the neighbouring array.
extern "C" __global__ void shared_neighbours(float* y, int index) {
    __shared__ float first[16];
    __shared__ float second[16];
    const int t = threadIdx.x;
    first[t] = t;
    second[t] = 2 * t;
    __syncthreads();
    if (t == 3) first[index] = 7;
    __syncthreads();
    y[t] = first[t] + second[t];
}

// Only the first half of the block fills the shared array; everyone reads it.
extern "C" __global__ void uninitialised_shared(float* y) {
    __shared__ float s[64];
    if (threadIdx.x < 32) s[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = s[threadIdx.x];
}

// Odd and even threads wait at two different barriers.
extern "C" __global__ void two_barriers(float* y) {
    if (threadIdx.x % 2) {
        y[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        y[threadIdx.x] = 2.0f;
        __syncthreads();
    }
}

// A shuffle whose mask names lanes 0-15 only, taken by every lane of the warp.
extern "C" __global__ void wrong_mask(float* x) {
    x[threadIdx.x] = __shfl_xor_sync(0x0000ffffu, x[threadIdx.x], 1);
}
