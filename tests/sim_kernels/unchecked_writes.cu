// Out-of-bounds writes that a launch without checks must still report (tests/test_sim_guards.py): thread 5
// writes `reach` elements past the end of y (a negative reach: before its start). Near the array the write
// changes a guard byte; further away it lands in the guard pages and faults. Valid CUDA for NVRTC.
extern "C" __global__ void write_outside(float* y, int n, long long reach) {
    if (threadIdx.x == 5) y[reach < 0 ? reach : n - 1 + reach] = 1.0f;
}
