"""Global average pooling: each channel's feature map averaged to one number (Lin, Chen & Yan 2014).

Shapes: x (N, C, H, W) -> y (N, C, 1, 1), so that a Flatten after it gives (N, C) for the classifier, as
ResNet does instead of AlexNet's large fully connected layers (the output size no longer depends on H, W).

Forward and backward::

    y[n, c, 0, 0]  = (1 / (H·W)) Σ_{h, w} x[n, c, h, w]
    dx[n, c, h, w] = dy[n, c, 0, 0] / (H·W)          every pixel contributed with the same weight 1/(H·W)

Kernels (``kernels/global_pool.cu``, gpu and sim): ``global_avg_pool_forward`` (one thread per (n, c)) and
``global_avg_pool_backward`` (one thread per input element).
"""

from __future__ import annotations

import numpy as np

from scratchnet.device import Device
from scratchnet.layers.base import Layer


class GlobalAvgPool2D(Layer):
    """Average of each channel over all its positions: (N, C, H, W) -> (N, C, 1, 1). No parameters."""

    kernel_file = "global_pool.cu"

    def __init__(self, *, device: str | Device = "cpu", dtype=np.float32):
        super().__init__(device=device, dtype=dtype)

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4 or shape[2] < 1 or shape[3] < 1:
            self._fail_shape("(N, C, H, W) with H, W >= 1", shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        self.check_input_shape(tuple(input_shape))
        return (input_shape[0], input_shape[1], 1, 1)

    def torch_equivalent(self, torch):
        return torch.nn.AdaptiveAvgPool2d(1)

    # --- cpu: NumPy ----------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        self._save_for_backward(x_shape=x.shape)
        return x.mean(axis=(2, 3), keepdims=True)  # (N, C, 1, 1)

    def _backward_numpy(self, dy):
        N, C, H, W = self._saved().x_shape
        return np.broadcast_to(dy / (H * W), (N, C, H, W)).copy()  # (N, C, H, W)

    # --- gpu and sim: kernels/global_pool.cu ---------------------------------------------------------
    def _forward_kernels(self, x, training):
        N, C, H, W = x.shape
        y = self.device.empty((N, C, 1, 1), self.dtype)
        kernel = self._kernel("global_avg_pool_forward")
        kernel.launch_1d(y.size, (x, y, N, C, H, W))
        self._save_for_backward(x_shape=x.shape)
        return y

    def _backward_kernels(self, dy):
        N, C, H, W = self._saved().x_shape
        dx = self.device.empty((N, C, H, W), self.dtype)
        kernel = self._kernel("global_avg_pool_backward")
        kernel.launch_1d(dx.size, (dy, dx, N, C, H, W))
        return dx
