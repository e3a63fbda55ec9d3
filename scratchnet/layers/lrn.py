"""LocalResponseNorm: AlexNet's normalisation across neighbouring channels (Krizhevsky et al. 2012, §3.3).

Shapes: x (N, C, H, W) -> y (N, C, H, W). At every (n, h, w), channel c is divided by a power of the
energy of the ``size`` channels around it (the paper writes a for our x and b for our y)::

    scale_c = k + α Σ_{c' ∈ near(c)} x_{c'}²      near(c) = [c - size//2, c + (size-1)//2] ∩ [0, C-1]
    y_c     = x_c · scale_c^(-β)

This is the paper's convention: α is NOT divided by ``size``. PyTorch and Caffe divide it (their α is
α·size in ours), so ``torch.nn.LocalResponseNorm(size, alpha * size, beta, k)`` computes the same thing;
the window near(c) is placed as PyTorch places it (size//2 channels before c, (size-1)//2 after).

Backward. y_i depends on x_j directly (i = j) and through scale_i whenever j ∈ near(i), with
∂scale_i/∂x_j = 2α x_j::

    ∂y_i/∂x_j = [i = j] scale_i^(-β) - β x_i scale_i^(-β-1) · 2α x_j [j ∈ near(i)]

    dx_j = Σ_i dy_i ∂y_i/∂x_j
         = dy_j scale_j^(-β) - 2αβ x_j Σ_{i : j ∈ near(i)} dy_i · y_i / scale_i

using x_i scale_i^(-β-1) = y_i / scale_i; and j ∈ near(i) <=> i ∈ [j - (size-1)//2, j + size//2]: the
cross-channel sum runs over the mirrored window.

Kernels (gpu and sim, ``kernels/lrn.cu``): ``lrn_forward`` and ``lrn_backward``, one thread per element.
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers.base import Layer


def _channel_window_sum(v: np.ndarray, before: int, after: int) -> np.ndarray:
    """out[:, c] = Σ v[:, c'] for c' from c - before to c + after (clipped to the channels that exist)."""
    out = v.copy()
    for d in range(1, before + 1):
        out[:, d:] += v[:, :-d]  # channel c - d, for c >= d
    for d in range(1, after + 1):
        out[:, :-d] += v[:, d:]  # channel c + d, for c + d < C
    return out


class LocalResponseNorm(Layer):
    """y = x / (k + α Σ_window x²)^β across ``size`` neighbouring channels; see the module docstring."""

    kernel_file = "lrn.cu"

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        k: float = 2.0,
        *,
        device="cpu",
        dtype=np.float32,
    ):
        super().__init__(device=device, dtype=dtype)
        if not (isinstance(size, int | np.integer) and size >= 1):
            raise ValueError(f"LocalResponseNorm: size must be a positive integer, got {size!r}")
        if k <= 0 or alpha < 0:
            raise ValueError(
                f"LocalResponseNorm: need k > 0 and alpha >= 0 (a positive scale), got k={k}, alpha={alpha}"
            )
        self.size, self.alpha, self.beta, self.k = int(size), float(alpha), float(beta), float(k)
        self.before, self.after = self.size // 2, (self.size - 1) // 2  # the window of channel c

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != 4:
            self._fail_shape("(N, C, H, W)", shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

    def torch_equivalent(self, torch):
        # PyTorch divides alpha by size; the paper, and this layer, do not.
        return torch.nn.LocalResponseNorm(self.size, self.alpha * self.size, self.beta, self.k)

    # --- cpu: NumPy ------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        scale = self.k + self.alpha * _channel_window_sum(x * x, self.before, self.after)  # (N, C, H, W)
        y = x * scale ** (-self.beta)
        self._save_for_backward(x=x, y=y, scale=scale)
        return y

    def _backward_numpy(self, dy):
        saved = self._saved()
        x, y, scale = saved.x, saved.y, saved.scale
        # Σ over the channels i whose window holds j: the mirrored window ((size-1)//2 before, size//2 after).
        cross = _channel_window_sum(dy * y / scale, self.after, self.before)
        return dy * scale ** (-self.beta) - 2 * self.alpha * self.beta * x * cross

    # --- gpu and sim: kernels/lrn.cu -------------------------------------------------------------
    def _layout(self, x) -> tuple:
        """(count, C, HW, before, after, alpha, beta): the sizes and constants both kernels take."""
        N, C, H, W = x.shape
        return (x.size, C, H * W, self.before, self.after, self.alpha, self.beta)

    def _forward_kernels(self, x, training):
        y = self.device.empty(x.shape, self.dtype)
        scale = self.device.empty(x.shape, self.dtype)
        kernel = self._kernel("lrn_forward")
        kernel.launch_1d(x.size, (x, y, scale, *self._layout(x), self.k))
        self._save_for_backward(x=x, y=y, scale=scale)
        return y

    def _backward_kernels(self, dy):
        saved = self._saved()
        dx = self.device.empty(dy.shape, self.dtype)
        kernel = self._kernel("lrn_backward")
        kernel.launch_1d(dx.size, (saved.x, saved.y, saved.scale, dy, dx, *self._layout(dx)))
        return dx
