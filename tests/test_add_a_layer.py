"""A new layer from scratch, as "How to add a layer" in docs/contributing.md walks through it: LeakyReLU."""

from __future__ import annotations

import numpy as np

from scratchnet.layers import Layer
from scratchnet.testing import KernelSource, LayerContract, LayerSpec

# 1. The kernels: one thread per element i < count. (A finished layer keeps them in kernels/<family>.cu.)
LEAKY_RELU_CU = KernelSource(
    """
template <typename T>
__global__ void leaky_relu_forward(const T* x, T* y, T slope, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        y[i] = x[i] > T(0) ? x[i] : slope * x[i];
    }
}

template <typename T>
__global__ void leaky_relu_backward(const T* x, const T* dy, T* dx, T slope, long long count) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < count) {
        dx[i] = x[i] > T(0) ? dy[i] : slope * dy[i];
    }
}
""",
    filename="leaky_relu.cu",
)


# 2. The layer: the math in the docstring, the NumPy path, the kernel path.
class LeakyReLU(Layer):
    """y = x where x > 0, else slope · x (any shape).

    Backward: dL/dx = dL/dy · (1 where x > 0, else slope).
    """

    def __init__(self, slope: float = 0.01, *, device="cpu", dtype=np.float32):
        super().__init__(device=device, dtype=dtype)
        self.slope = slope

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def torch_equivalent(self, torch):  # the parity tests and the bench ask the layer; torch is passed in
        return torch.nn.LeakyReLU(self.slope)

    def _forward_numpy(self, x, training):
        self._save_for_backward(x=x)  # kept only when backward will need it
        return np.where(x > 0, x, self.slope * x)

    def _backward_numpy(self, dy):
        x = self._saved().x
        return np.where(x > 0, dy, self.slope * dy)

    def _forward_kernels(self, x, training):
        self._save_for_backward(x=x)
        y = self.device.empty(x.shape, self.dtype)
        LEAKY_RELU_CU.kernel(self.device, "leaky_relu_forward", self.dtype).launch_1d(
            x.size, (x, y, self.slope, x.size)
        )
        return y

    def _backward_kernels(self, dy):
        x = self._saved().x
        dx = self.device.empty(dy.shape, self.dtype)
        LEAKY_RELU_CU.kernel(self.device, "leaky_relu_backward", self.dtype).launch_1d(
            dy.size, (x, dy, dx, self.slope, dy.size)
        )
        return dx


# 3. The spec: how to build the layer and what to feed it. The whole contract comes with it.
def away_from_the_kink(shape, rng):
    """|x| >= 0.1: a finite difference at x = 0 would straddle the two slopes."""
    x = rng.standard_normal(shape)
    return np.sign(x) * (0.1 + np.abs(x))


class TestLeakyReLU(LayerContract):
    spec = LayerSpec(
        make=lambda device, dtype: LeakyReLU(0.1, device=device, dtype=dtype),
        input_shape=(2, 3, 4),
        make_input=away_from_the_kink,
        reference=lambda layer, x: np.maximum(x, 0) + layer.slope * np.minimum(x, 0),  # apart from the layer
    )
