"""ReLU: the rectified linear unit (Nair & Hinton 2010; the non-linearity AlexNet made standard).

Forward, element-wise on an input of any shape::

    y = max(x, 0)

Backward: the slope is 1 where x > 0 and 0 elsewhere (we take 0 at the kink x = 0, as PyTorch does)::

    dL/dx = dL/dy * [y > 0]

``y > 0`` exactly where ``x > 0``, so the layer keeps its output ``y`` for backward rather than ``x``.

Kernels (``kernels/relu.cu``, gpu and sim): ``relu_forward`` and ``relu_backward``, one thread per element.
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers.base import Layer


class ReLU(Layer):
    """``y = max(x, 0)`` element-wise; input and output of any shape."""

    kernel_file = "relu.cu"

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def torch_equivalent(self, torch):
        return torch.nn.ReLU()

    # --- cpu: NumPy ------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        y = np.maximum(x, 0)
        self._save_for_backward(y=y)
        return y

    def _backward_numpy(self, dy):
        return dy * (self._saved().y > 0)

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
