"""Flatten: the bridge from the convolutional part of a network to its fully connected part.

Forward: (N, C, H, W) -> (N, C*H*W), or more generally (N, d1, d2, ...) -> (N, d1*d2*...), keeping the batch
axis and laying each example out in C (row-major) order, as ``torch.flatten(x, 1)`` does::

    y[n, (c*H + h)*W + w] = x[n, c, h, w]

Backward: the same numbers moved back into the input's shape, dL/dx = reshape(dL/dy, x.shape).

No kernel: reshaping a C-contiguous array only changes how its memory is indexed, on every device.
"""

from __future__ import annotations

import math

from scratchnet.layers.base import Layer


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...)."""

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) < 2:
            self._fail_shape("(N, ...) with at least 2 dimensions", shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], math.prod(input_shape[1:]))

    def torch_equivalent(self, torch):
        return torch.nn.Flatten()

    def _forward_numpy(self, x, training):
        self._save_for_backward(input_shape=tuple(x.shape))
        return x.reshape(self.output_shape(x.shape))

    def _backward_numpy(self, dy):
        return dy.reshape(self._saved().input_shape)

    # gpu and sim arrays reshape the same way (a C-contiguous array stays C-contiguous).
    _forward_kernels = _forward_numpy
    _backward_kernels = _backward_numpy
