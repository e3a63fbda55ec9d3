// Kernels for initcheck on arrays from sim.empty (allocated, never written): test_sim_initcheck.py.

// Every thread writes its element; thread 7 first reads its own, which no one wrote before.
extern "C" __global__ void read_before_write(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (i == 7) y[i] = y[i] + 1.0f;
    else y[i] = 0.0f;
}

// Writes, then reads back what the same thread wrote: correct.
extern "C" __global__ void write_then_read(const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    y[i] = x[i];
    y[i] = 2.0f * y[i];
}

extern "C" __global__ void fill(float* y, float value, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = value;
}

// One thread sums x[0 .. n-1] in order, so the first byte never written is the first one it reads.
extern "C" __global__ void serial_sum(const float* x, float* total, int n) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += x[i];
    *total = sum;
}
