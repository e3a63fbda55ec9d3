"""The CUDA simulator: correct results, and every check failing the way it should.

Most kernels here live in one small source (``SOURCE``) compiled once for the whole file. The tiled GEMM
comes from ``kernels/gemm.cu`` (``gemm_tiled``); a test then removes one of its ``__syncthreads()`` and
shows that the simulator turns the race into a wrong result.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from scratchnet import sim
from scratchnet.errors import DeviceError, KernelLaunchError
from scratchnet.sim import compiler, parse_kernels

pytestmark = pytest.mark.sim

KERNELS = Path(__file__).resolve().parent.parent / "kernels"

SOURCE = r"""
// y = max(x, 0); one thread per element.
template <typename T>
__global__ void relu(const T* x, T* y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > T(0) ? x[i] : T(0);
}

// Writes y[0 .. n], one element too many.
extern "C" __global__ void write_one_past(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) y[i] = 1.0f;
}

// Writes y[-1].
extern "C" __global__ void write_before(float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i - 1] = 1.0f;
}

// Threads of the upper half return early; the others wait at a barrier that can never complete.
extern "C" __global__ void divergent_barrier(float* y) {
    if (threadIdx.x >= blockDim.x / 2) return;
    __syncthreads();
    y[threadIdx.x] = 1.0f;
}

// Thread 0 of each block stores the block index in shared memory; everyone copies it out after a barrier.
extern "C" __global__ void shared_per_block(int* out) {
    __shared__ int owner;
    if (threadIdx.x == 0) owner = blockIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = owner;
}

// Sum of x by atomics; float and double.
template <typename T>
__global__ void atomic_sum(const T* x, T* total, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) atomicAdd(total, x[i]);
}

// Each thread writes its global (x, y, z) coordinates, for a 3-D grid of 3-D blocks.
extern "C" __global__ void coordinates(int* out, int width, int height) {
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    int z = blockIdx.z * blockDim.z + threadIdx.z;
    long long i = ((long long)z * height + y) * width + x;
    out[3 * i] = x;
    out[3 * i + 1] = y;
    out[3 * i + 2] = z;
}

// Every thread stores its index in the same place: the last one to run wins.
extern "C" __global__ void last_writer(int* out) {
    out[0] = blockIdx.x * blockDim.x + threadIdx.x;
}

// Reduction of each warp with __shfl_down_sync, as in CUDA's reduction samples.
extern "C" __global__ void warp_sums(const float* x, float* sums) {
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) sums[(blockIdx.x * blockDim.x + threadIdx.x) / 32] = v;
}

// Odd lanes return before the shuffle that the even lanes wait in.
extern "C" __global__ void divergent_warp(float* x) {
    if (threadIdx.x % 2) return;
    x[threadIdx.x] = __shfl_down_sync(0xffffffffu, x[threadIdx.x], 2);
}

// Writes through a pointer declared const.
extern "C" __global__ void write_const(const float* x) {
    const_cast<float*>(x)[threadIdx.x] = 0.0f;
}

// Dereferences a null pointer.
extern "C" __global__ void crash(float* y) {
    float* nowhere = nullptr;
    y[threadIdx.x] = nowhere[threadIdx.x + 1000];
}

extern "C" __global__ void hello(int n) {
    if (threadIdx.x == 0) printf("hello from block %d of %d\n", (int)blockIdx.x, n);
}

// 64 KiB of static shared memory: more than a block may have.
extern "C" __global__ void too_much_shared(float* y) {
    __shared__ float big[16384];
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    y[threadIdx.x] = big[threadIdx.x];
}
"""
TEMPLATES = [
    "relu<float>",
    "relu<double>",
    "atomic_sum<float>",
    "atomic_sum<double>",
]


@pytest.fixture(scope="module")
def module():
    return sim.load_module(SOURCE, TEMPLATES, filename="test_sim_kernels.cu")


# --- results ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ctype, dtype", [("float", np.float32), ("double", np.float64)])
def test_template_kernel_matches_numpy(module, ctype, dtype):
    relu = module.get_function(f"relu<{ctype}>")
    x = np.random.default_rng(0).standard_normal(1000).astype(dtype)
    y = np.full_like(x, np.nan)
    relu((4,), (256,), (x, y, np.int64(x.size)))
    np.testing.assert_array_equal(y, np.maximum(x, 0))


@pytest.mark.parametrize("ctype, dtype", [("float", np.float32), ("double", np.float64)])
def test_atomic_add(module, ctype, dtype):
    x = np.random.default_rng(1).uniform(0, 1, 3000).astype(dtype)
    total = np.zeros(1, dtype)
    module.get_function(f"atomic_sum<{ctype}>")((12,), (256,), (x, total, np.int32(x.size)))
    np.testing.assert_allclose(total[0], x.sum(dtype=np.float64), rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_3d_grid_and_block(module):
    block, grid = (4, 3, 2), (2, 3, 5)
    width, height, depth = 8, 9, 10
    out = np.full((depth, height, width, 3), -1, np.int32)
    module.get_function("coordinates")(grid, block, (out, np.int32(width), np.int32(height)))
    z, y, x = np.meshgrid(np.arange(depth), np.arange(height), np.arange(width), indexing="ij")
    np.testing.assert_array_equal(out, np.stack([x, y, z], axis=-1))


def test_warp_shuffle_reduction(module):
    x = np.random.default_rng(2).standard_normal(256).astype(np.float32)
    sums = np.zeros(8, np.float32)
    module.get_function("warp_sums")((2,), (128,), (x, sums))
    np.testing.assert_allclose(sums, x.reshape(8, 32).sum(axis=1), rtol=1e-5)


def test_in_place_launch_sees_one_buffer(module):
    """x passed as both input and output must stay one buffer (the guard copies group aliases)."""
    x = np.array([-1.0, 2.0, -3.0, 4.0], np.float32)
    module.get_function("relu<float>")((1,), (32,), (x, x, np.int64(4)))
    np.testing.assert_array_equal(x, [0, 2, 0, 4])


def test_printf_reaches_stdout(module, capfd):
    module.get_function("hello")((2,), (32,), (np.int32(2),))
    out = capfd.readouterr().out
    assert "hello from block 0 of 2" in out and "hello from block 1 of 2" in out


# --- shared memory ------------------------------------------------------------------------------------------
def test_shared_memory_is_per_block(module):
    out = np.full(4 * 64, -1, np.int32)
    module.get_function("shared_per_block")((4,), (64,), (out,))
    np.testing.assert_array_equal(out, np.repeat(np.arange(4), 64))


def test_static_shared_memory_limit(module):
    assert module.get_function("too_much_shared").static_shared_bytes == 65536
    with pytest.raises(KernelLaunchError, match=r"asks for 65536 bytes of shared memory.*48 KiB"):
        module.get_function("too_much_shared")((1,), (32,), (np.zeros(32, np.float32),))


# --- dynamic shared memory: declared inside the kernel or at file scope -------------------------------------
# CUDA code declares `extern __shared__` arrays either way; templates use raw bytes cast to T (a typed
# `extern __shared__ T s[]` would be one array with two types), extern "C" kernels a typed array.
SHARED_SOURCE = r"""
extern __shared__ unsigned char file_scope_raw[];
extern __shared__ float file_scope_f32[];
extern __shared__ double file_scope_f64[];

// Each block reverses its slice of x through the shared array s (blockDim.x elements): thread t stores
// x[i] in s[t] and, after the barrier, reads s[blockDim.x - 1 - t], which another thread stored.
template <typename T>
__device__ void reverse_through(T* s, const T* x, T* y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    s[threadIdx.x] = x[i];
    __syncthreads();
    y[i] = s[blockDim.x - 1 - threadIdx.x];
}

template <typename T>
__global__ void reverse_in_body(const T* x, T* y) {
    extern __shared__ __align__(16) unsigned char in_body_raw[];
    reverse_through(reinterpret_cast<T*>(in_body_raw), x, y);
}

template <typename T>
__global__ void reverse_file_scope(const T* x, T* y) {
    reverse_through(reinterpret_cast<T*>(file_scope_raw), x, y);
}

extern "C" __global__ void reverse_in_body_f32(const float* x, float* y) {
    extern __shared__ float in_body_f32[];
    reverse_through(in_body_f32, x, y);
}

extern "C" __global__ void reverse_in_body_f64(const double* x, double* y) {
    extern __shared__ double in_body_f64[];
    reverse_through(in_body_f64, x, y);
}

extern "C" __global__ void reverse_file_scope_f32(const float* x, float* y) {
    reverse_through(file_scope_f32, x, y);
}

extern "C" __global__ void reverse_file_scope_f64(const double* x, double* y) {
    reverse_through(file_scope_f64, x, y);
}
"""
SHARED_CASES = [
    ("reverse_in_body<float>", "in_body_raw", np.float32),
    ("reverse_in_body<double>", "in_body_raw", np.float64),
    ("reverse_in_body_f32", "in_body_f32", np.float32),
    ("reverse_in_body_f64", "in_body_f64", np.float64),
    ("reverse_file_scope<float>", "file_scope_raw", np.float32),
    ("reverse_file_scope<double>", "file_scope_raw", np.float64),
    ("reverse_file_scope_f32", "file_scope_f32", np.float32),
    ("reverse_file_scope_f64", "file_scope_f64", np.float64),
]


@pytest.fixture(scope="module")
def shared_module():
    templates = [name for name, _, _ in SHARED_CASES if "<" in name]
    return sim.load_module(SHARED_SOURCE, templates, filename="test_sim_shared.cu")


@pytest.mark.parametrize("kernel, array, dtype", SHARED_CASES)
def test_dynamic_shared_memory(shared_module, kernel, array, dtype):
    """Both placements run (an array declared in a template kernel once crashed g++ builds) and use exactly
    the ``shared_mem`` bytes the launch gives them; one element less is a reported overrun."""
    block = 64
    x = np.arange(3 * block, dtype=dtype)
    y = np.zeros_like(x)
    reverse = shared_module.get_function(kernel)
    assert reverse.static_shared_bytes == 0  # dynamic shared memory is not counted as static
    reverse((3,), (block,), (x, y), shared_mem=block * x.itemsize)
    np.testing.assert_array_equal(y, x.reshape(3, block)[:, ::-1].ravel())

    too_small = (block - 1) * x.itemsize
    with pytest.raises(
        KernelLaunchError,
        match=rf"wrote past the end of the dynamic shared memory '{array}' \(shared_mem={too_small} "
        rf"bytes; a write at byte offset {too_small}\)",
    ):
        reverse((1,), (block,), (x[:block], y[:block]), shared_mem=too_small)


def test_dynamic_shared_memory_limit(shared_module):
    x = np.zeros(32, np.float32)
    with pytest.raises(KernelLaunchError, match=r"asks for 49156 bytes of shared memory.*48 KiB"):
        shared_module.get_function("reverse_in_body_f32")((1,), (32,), (x, x.copy()), shared_mem=49156)


def test_extern_shared_declarations_are_read():
    source = """/* two
    lines */ extern __shared__ float __align__(16) a[];
    extern __shared__ __align__(sizeof(T)) unsigned char b[];
    __global__ void k() { extern __shared__ alignas(8) volatile int c [ ]; extern __shared__ float a[]; }
    extern float __shared__ d[];  extern __shared__ ns::Pair<int, float4> e[];
    """
    assert compiler.dynamic_shared_arrays(source) == [
        ("float", "a"),
        ("unsigned char", "b"),
        ("volatile int", "c"),
        ("float", "d"),
        ("ns::Pair<int, float4>", "e"),
    ]


@pytest.mark.parametrize(
    "declarations, message",
    [
        (
            "/* one\ntwo */\nextern __shared__ float s[64];",
            r"line 3: cannot read .*'extern __shared__ float s\[64\]'",
        ),
        (
            "extern __shared__ float s[]; extern __shared__ double s[];",
            r"'s' is declared as both 'float' and 'double'",
        ),
    ],
)
def test_unreadable_extern_shared_declarations_are_refused(declarations, message):
    with pytest.raises(DeviceError, match=message):
        compiler.dynamic_shared_arrays(declarations)


# --- barriers and ordering ----------------------------------------------------------------------------------
def test_barrier_divergence_is_an_error_not_a_hang(module):
    with pytest.raises(KernelLaunchError, match=r"barrier divergence in block \(0,0,0\).*__syncthreads"):
        module.get_function("divergent_barrier")((1,), (64,), (np.zeros(64, np.float32),))


def test_warp_divergence_is_an_error(module):
    with pytest.raises(KernelLaunchError, match=r"warp divergence in block \(0,0,0\)"):
        module.get_function("divergent_warp")((1,), (32,), (np.zeros(32, np.float32),))


def test_order_is_shuffled_and_reproducible(module, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_SIM_THREADS", "1")  # blocks on two OS threads would interleave by chance

    def last(seed):
        sim.set_seed(seed)
        out = np.zeros(1, np.int32)
        module.get_function("last_writer")((8,), (128,), (out,))
        return int(out[0])

    winners = [last(seed) for seed in range(8)]
    assert len(set(winners)) > 1, "the last thread to run should depend on the seed"
    assert winners == [last(seed) for seed in range(8)], "the same seed should give the same order"
    assert set(winners) != {1023}, "threads should not run in index order"


def _gemm_source() -> tuple[str, str]:
    """The tiled GEMM of kernels/gemm.cu, or an equivalent one written here if that file has changed."""
    path = KERNELS / "gemm.cu"
    if path.is_file():
        source = path.read_text()
        if "gemm_tiled" in source and len(_barriers(source, "gemm_tiled")) == 2:
            return source, "kernels/gemm.cu"
    return FALLBACK_GEMM, "fallback"


FALLBACK_GEMM = r"""
#define TILE 16
template <typename T>
__global__ void gemm_tiled(const T* A, const T* B, T* C, int M, int N, int K, int trans_a, int trans_b)
{
    __shared__ T tile_a[TILE][TILE];
    __shared__ T tile_b[TILE][TILE];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    T sum = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        tile_a[ty][tx] = (row < M && k0 + tx < K) ? A[(long long)row * K + k0 + tx] : T(0);
        tile_b[ty][tx] = (k0 + ty < K && col < N) ? B[(long long)(k0 + ty) * N + col] : T(0);
        __syncthreads();
        for (int k = 0; k < TILE; ++k) sum += tile_a[ty][k] * tile_b[k][tx];
        __syncthreads();
    }
    if (row < M && col < N) C[(long long)row * N + col] = sum;
}
"""


def _barriers(source: str, kernel: str) -> list[re.Match]:
    """The ``__syncthreads();`` calls inside the body of ``kernel``."""
    start = source.index("{", re.search(rf"__global__\s+void\s+{kernel}\s*\(", source).end())
    depth, end = 0, start
    for end in range(start, len(source)):
        depth += {"{": 1, "}": -1}.get(source[end], 0)
        if depth == 0:
            break
    return [m for m in re.finditer(r"__syncthreads\(\)\s*;", source) if start < m.start() < end]


def _run_gemm(source: str, A, B):
    M, K = A.shape
    N = B.shape[1]
    C = np.zeros((M, N), np.float32)
    gemm = sim.load_module(source, ["gemm_tiled<float>"]).get_function("gemm_tiled<float>")
    gemm(((N + 15) // 16, (M + 15) // 16), (16, 16), (A, B, C, *map(np.int32, (M, N, K, 0, 0))))
    return C


@pytest.mark.parametrize("barrier", ["load", "reuse"])
def test_missing_barrier_in_tiled_gemm_gives_a_wrong_result(barrier):
    source, origin = _gemm_source()
    rng = np.random.default_rng(3)
    A = rng.standard_normal((40, 50)).astype(np.float32)  # K = 50: four tiles along K, so tiles are reused
    B = rng.standard_normal((50, 30)).astype(np.float32)
    expected = A.astype(np.float64) @ B
    np.testing.assert_allclose(_run_gemm(source, A, B), expected, rtol=1e-4, atol=1e-4, err_msg=origin)

    # Barrier "load" makes the tiles complete before they are read; "reuse" keeps the next iteration from
    # overwriting them while others still read them.
    removed = _barriers(source, "gemm_tiled")[0 if barrier == "load" else 1]
    broken = source[: removed.start()] + source[removed.end() :]
    error = np.abs(_run_gemm(broken, A, B) - expected).max()
    assert error > 1e-2, f"removing the {barrier} barrier of {origin} went unnoticed"


# --- argument checks ----------------------------------------------------------------------------------------
def test_python_int_for_int_parameter_is_refused(module):
    y = np.zeros(10, np.float32)
    with pytest.raises(
        KernelLaunchError,
        match=r"argument 'n' of write_one_past is 'int' but got a Python int.*np\.int32\(n\)",
    ):
        module.get_function("write_one_past")((1,), (32,), (y, 10))


def test_python_float_for_float_pointer_is_refused(module):
    with pytest.raises(KernelLaunchError, match=r"argument 'y' of write_one_past is 'float\*'.*Python float"):
        module.get_function("write_one_past")((1,), (32,), (1.0, np.int32(1)))


def test_wrong_array_dtype_is_refused(module):
    x = np.zeros(4, np.float64)
    with pytest.raises(
        KernelLaunchError, match=r"argument 'x' of relu<float> is 'const float\*' but got an array of float64"
    ):
        module.get_function("relu<float>")((1,), (32,), (x, np.zeros(4, np.float32), np.int64(4)))


def test_non_contiguous_array_is_refused(module):
    y = np.zeros((4, 4), np.float32)[:, ::2]
    with pytest.raises(KernelLaunchError, match=r"argument 'y' .* non-C-contiguous"):
        module.get_function("write_one_past")((1,), (32,), (y, np.int32(1)))


def test_wrong_argument_count_is_refused(module):
    with pytest.raises(KernelLaunchError, match=r"write_one_past takes 2 arguments \(y, n\), got 1"):
        module.get_function("write_one_past")((1,), (32,), (np.zeros(4, np.float32),))


@pytest.mark.parametrize(
    "block, message",
    [
        ((1025,), r"1025 threads, more than 1024"),
        ((1, 1, 65), r"block.z = 65 exceeds"),
        ((0,), r">= 1"),
    ],
)
def test_launch_limits(module, block, message):
    with pytest.raises(KernelLaunchError, match=message):
        module.get_function("last_writer")((1,), block, (np.zeros(1, np.int32),))


def test_unknown_kernel_name(module):
    with pytest.raises(KernelLaunchError, match=r"no kernel 'relu<int>'.*name_expressions"):
        module.get_function("relu<int>")


# --- memory errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [100, 300_000])  # every array is guarded, however large (1.2 MB here)
def test_write_one_past_the_end_is_reported(module, n):
    y = np.zeros(n, np.float32)
    with pytest.raises(KernelLaunchError, match=r"write_one_past wrote past the end of argument 'y'.*4 byte"):
        module.get_function("write_one_past")((n // 128 + 1,), (128,), (y, np.int32(n)))


def test_write_before_the_start_is_reported(module):
    y = np.zeros(100, np.float32)
    with pytest.raises(KernelLaunchError, match=r"write_before wrote before the start of argument 'y'"):
        module.get_function("write_before")((1,), (128,), (y, np.int32(100)))


def test_write_to_const_argument_is_reported(module):
    with pytest.raises(KernelLaunchError, match=r"write_const wrote to argument 'x' .*, declared const"):
        module.get_function("write_const")((1,), (4,), (np.ones(4, np.float32),))


def test_crash_is_reported_not_fatal(module):
    with pytest.raises(
        KernelLaunchError, match=r"crash crashed with a memory fault .* in block \(0,0,0\), thread"
    ):
        module.get_function("crash")((1,), (4,), (np.ones(4, np.float32),))
    test_template_kernel_matches_numpy(module, "float", np.float32)  # the module still works afterwards


# --- building -----------------------------------------------------------------------------------------------
def test_compile_error_shows_the_compiler_output():
    with pytest.raises(sim.CompileError, match=r"(?s)broken\.cu.*undeclared|not declared"):
        sim.load_module(
            'extern "C" __global__ void k(float* y) { y[0] = undeclared; }', [], filename="broken.cu"
        )


def test_compiler_warnings_are_shown():
    with pytest.warns(sim.SimCompilerWarning, match=r"(?s)unused\.cu.*unused"):
        sim.load_module(
            'extern "C" __global__ void k(float* y) { int spare; y[0] = 1; }', [], filename="unused.cu"
        )


@pytest.mark.parametrize("path", sorted(KERNELS.rglob("*.cu")), ids=lambda p: str(p.relative_to(KERNELS)))
def test_kernel_file_builds_without_warnings(path, recwarn):
    """Every project kernel file, with all its template instances, builds warning-free for the simulator."""
    source = path.read_text()
    templates = [name for name, signature in parse_kernels(source).items() if not signature.extern_c]
    module = sim.load_module(source, templates, filename=path.name)
    assert set(templates) <= set(module.build.kernel_names)
    compiler_warnings = [str(w.message) for w in recwarn if issubclass(w.category, sim.SimCompilerWarning)]
    assert not compiler_warnings, "\n".join(compiler_warnings)


@pytest.mark.slow  # compiles in a fresh cache
def test_build_cache_is_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRATCHNET_CACHE", str(tmp_path))
    source = 'extern "C" __global__ void fill(float* y, float v) { y[threadIdx.x] = v; }\n'
    first = sim.load_module(source, [])
    assert first.build.library.parent == tmp_path / "sim"

    def no_compiling(*args, **kwargs):
        raise AssertionError("the second load should not compile")

    monkeypatch.setattr(compiler, "_compile", no_compiling)
    second = sim.load_module(source, [])
    assert second.build.library == first.build.library
    y = np.zeros(8, np.float32)
    second.get_function("fill")((1,), (8,), (y, np.float32(2.5)))
    np.testing.assert_array_equal(y, 2.5)


def test_raw_module_and_raw_kernel_mirror_cupy():
    module = sim.RawModule(code=SOURCE, name_expressions=TEMPLATES)
    assert isinstance(module.get_function("relu<double>"), sim.SimKernel)
    kernel = sim.RawKernel('extern "C" __global__ void twice(float* y) { y[threadIdx.x] *= 2; }', "twice")
    y = np.arange(4, dtype=np.float32)
    kernel((1,), (4,), (y,))
    np.testing.assert_array_equal(y, [0, 2, 4, 6])


def test_device_kernel_end_to_end(tmp_path, monkeypatch):
    """``get_device("sim").kernel(...)`` compiles a file from the kernel folder and launches it."""
    import scratchnet.device as device_module

    (tmp_path / "scale_e2e.cu").write_text(
        "template <typename T>\n__global__ void scale(const T* x, T* y, T a, long long n) {\n"
        "    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;\n"
        "    if (i < n) y[i] = a * x[i];\n}\n"
    )
    monkeypatch.setattr(device_module, "kernel_dir", lambda: tmp_path)
    dev = device_module.get_device("sim")
    scale = dev.kernel("scale_e2e.cu", "scale", np.float64)
    x = dev.array(np.arange(1000, dtype=np.float64))
    y = dev.empty((1000,), np.float64)
    scale.launch_1d(1000, (x, y, 0.5, 1000))
    np.testing.assert_array_equal(dev.to_host(y), np.arange(1000) * 0.5)
