"""Private: how a ``.cu`` source becomes a checked kernel launch, on ``gpu`` and on ``sim``.

One launch, followed from the layer to the hardware (or the simulator)::

    kernel = device.kernel("relu.cu", "relu_forward", np.float32)     # scratchnet/device.py
    kernel.launch_1d(n, (x, y, n))

1. ``Device.kernel`` finds ``kernels/relu.cu`` (:mod:`.sources`, which also reads the ``#define``
   constants Python shares with the kernels) and compiles the whole file once per device: on ``gpu``
   through :mod:`scratchnet.cupy_backend` (``cupy.RawModule``, which calls NVRTC; every CuPy or CUDA failure
   becomes a ``DeviceError`` with a hint), on ``sim`` through :func:`scratchnet.sim.load_module` (the host
   C++ compiler).
2. :mod:`.signature` models the C signature of every ``__global__`` kernel as the host C++ compiler
   compiled it; the compiler pass is the simulator's build (:func:`scratchnet.sim.parse_kernels`, cached),
   which :func:`scratchnet.device.load_kernels` calls, so the launch knows that
   ``relu_forward<float>`` takes ``(const float*, float*, long long)``.
3. :class:`.launch.Kernel` checks each launch against that signature (argument count; arrays on the right
   device, C-contiguous, of the pointer's element type; each scalar cast to exactly its C type, refusing
   values that do not fit; CUDA's grid, block and shared-memory limits from :mod:`.limits`), and only then
   calls the compiled kernel: a ``cupy.RawKernel`` on ``gpu``, the simulator's kernel object (same call
   interface) on ``sim``. The device counts the launch in ``Device.launches``.

:mod:`.nvrtc` compiles sources with NVRTC directly (no GPU needed), so CI proves that every kernel compiles
for real GPU architectures, and reads how many registers each kernel needs there.

This package is the base that the simulator (:mod:`scratchnet.sim`) and the CuPy backend
(:mod:`scratchnet.cupy_backend`) build on: it imports neither (``tests/test_architecture.py``).
"""
