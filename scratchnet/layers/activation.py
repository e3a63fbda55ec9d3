"""ReLU: the rectified linear unit (Nair & Hinton 2010; the non-linearity AlexNet made standard).

Forward, element-wise on an input of any shape::

    y = max(x, 0)

Backward: the slope is 1 where x > 0 and 0 elsewhere (we take 0 at the kink x = 0, as PyTorch does)::

    dL/dx = dL/dy * [y > 0]

``y > 0`` exactly where ``x > 0``, so the layer keeps its output ``y`` for backward rather than ``x``.

On cpu, a large batch runs as one part per BLAS thread (:func:`~scratchnet.layers.batch_threads.batch_parts`),
each part writing its slice of the output.

Kernels (``kernels/relu.cu``, gpu and sim): ``relu_forward`` and ``relu_backward``, one thread per element.
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers.base import Layer
from scratchnet.layers.batch_threads import batch_parts


class ReLU(Layer):
    """``y = max(x, 0)`` element-wise; input and output of any shape."""

    kernel_file = "relu.cu"

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def torch_equivalent(self, torch):
        return torch.nn.ReLU()

    # --- cpu: NumPy ------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        y = np.empty_like(x)
        batch_parts(len(x), x.size)(lambda images: np.maximum(x[images], 0, out=y[images]))
        self._save_for_backward(y=y)
        return y

    def _backward_numpy(self, dy):
        y, dx = self._saved().y, np.empty_like(dy)
        batch_parts(len(dy), dy.size)(lambda images: np.multiply(dy[images], y[images] > 0, out=dx[images]))
        return dx

    # --- gpu and sim: kernels/relu.cu ------------------------------------------------------------
    def _forward_kernels(self, x, training):
        y = self.device.empty(x.shape, self.dtype)
        self._kernel("relu_forward").launch_1d(x.size, (x, y, x.size))
        self._save_for_backward(y=y)
        return y

    def _backward_kernels(self, dy):
        dx = self.device.empty(dy.shape, self.dtype)
        self._kernel("relu_backward").launch_1d(dy.size, (self._saved().y, dy, dx, dy.size))
        return dx
