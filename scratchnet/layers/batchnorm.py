"""Batch normalisation (Ioffe & Szegedy 2015): each channel normalised by statistics of the batch.

Shapes: ``BatchNorm2D`` takes x (N, C, H, W) and normalises each channel c over the n = N·H·W values
x[:, c, :, :]; ``BatchNorm1D`` takes x (N, C) (the features of a fully connected layer) with n = N. Below,
i runs over those n values of one channel; everything is per channel.

Forward in training, with the batch statistics (the variance is the biased one, divided by n)::

    μ = (1/n) Σ_i x_i            σ² = (1/n) Σ_i (x_i − μ)²          s = sqrt(σ² + eps)
    x̂_i = (x_i − μ) / s          y_i = γ x̂_i + β

and the running statistics, which evaluation uses instead of μ and σ², follow PyTorch's rule (momentum m,
and the *unbiased* variance σ² · n / (n − 1))::

    running_mean ← (1 − m) · running_mean + m · μ
    running_var  ← (1 − m) · running_var  + m · σ² · n / (n − 1)

n = 1 in training is an error (σ² would be 0 and n / (n − 1) infinite), as in PyTorch.

Backward in training. γ and β are ordinary per-channel parameters::

    dβ = Σ_i dy_i                 dγ = Σ_i dy_i x̂_i

For dx, μ and σ² depend on every x_i, so x_i reaches the loss along three paths: directly through x̂_i,
through μ and through σ². Write g_i = γ dy_i = dL/dx̂_i. With ∂μ/∂x_i = 1/n, ∂σ²/∂x_i = 2 (x_i − μ) / n::

    dL/dσ² = Σ_j g_j (x_j − μ) · (−½) s⁻³ = −(1 / 2s²) Σ_j g_j x̂_j
    dL/dμ  = −(1/s) Σ_j g_j  + dL/dσ² · (−2/n) Σ_j (x_j − μ)  = −(1/s) Σ_j g_j       (Σ_j (x_j − μ) = 0)
    dx_i   = g_i / s + dL/dσ² · 2 (x_i − μ) / n + dL/dμ / n
           = (1/s) (g_i − (1/n) Σ_j g_j − x̂_i (1/n) Σ_j g_j x̂_j)

and, in terms of the parameter gradients (the compact form the code uses)::

    dx_i = (γ / s) · (dy_i − dβ / n − x̂_i · dγ / n)

The two subtracted terms remove from dy its mean and its component along x̂: normalising makes the output
blind to shifting or scaling a channel's inputs, so the gradient has no such component either.

Evaluation (``training=False``) normalises with the running statistics, which are constants: then
y = γ (x − running_mean) / sqrt(running_var + eps) + β is a per-channel affine map and dx = (γ / s) dy
(kept for backward only when asked, ``keep_for_backward=True``, e.g. for saliency maps).

``running_mean`` and ``running_var`` are *buffers* (``layer.buffers``): state that is not trained (no
gradient, not in ``params``, untouched by SGD, not counted as parameters) but belongs to the model: they
are in ``model.state_dict()`` and in checkpoints, and a resumed run continues from them exactly.

Data parallelism: each rank computes μ and σ² over its own shard of the batch (as PyTorch's
DistributedDataParallel does by default), so the statistics are per rank and the result differs from one
process training on the whole batch. Synchronised (``layer.sync = world``, ``--sync-bn``; cpu), the ranks
follow PyTorch's SyncBatchNorm: they sum Σx and Σx² (and their counts) over the whole batch, so that every
rank normalises with μ = Σx / n and σ² = Σx² / n − μ² of all n values, and the backward sums the two sums it
needs, Σ g_j and Σ g_j x̂_j, over the whole batch too. Rank r's dy is the gradient of its own shard's mean
loss, which the gradient allreduce later weighs by w_r = N_r / N (its share of the batch); so rank r adds
w_r Σ dy and w_r Σ dy x̂ to those sums and divides the result by w_r, and the ranks together compute the
gradient of the whole batch's loss, whatever the shard sizes. dγ and dβ stay the rank's own: the gradient
allreduce weighs and sums them like every other parameter gradient.

Kernels (``kernels/batchnorm.cu``, gpu and sim): ``batchnorm_stats`` and ``batchnorm_backward_reduce``
(one block per channel, a block reduction over ``blockDim.x`` threads), ``batchnorm_forward``,
``batchnorm_backward_input`` (one thread per element) and ``batchnorm_update_running`` (one per channel).
"""

from __future__ import annotations

import numpy as np

from scratchnet.device import Device
from scratchnet.layers.base import Layer
from scratchnet.layers.batch_threads import batch_parts, one_part

# The per-channel sums run one block per channel with the block size of the bias gradient's reduction
# (#define REDUCE_THREADS in kernels/reduce.cu); batchnorm.cu's kernels work with any blockDim.x.
from scratchnet.layers.linear import REDUCE_THREADS


# --- NumPy: x viewed as (N, C, P), P = H·W (2-D) or 1 (1-D) ------------------------------------------------
# Each pass over x allocates at most one new array and works in place after that: at ResNet-20's sizes a
# fresh array per operator (x − μ, its square, its scaling...) cost as much as the arithmetic. The sums
# over n and p are einsums: ``np.einsum("ncp->c", a)`` adds along the contiguous p with vector registers,
# about three times as fast as ``a.sum(axis=(0, 2))``, and ``np.einsum("ncp,ncp->c", a, b)`` sums the
# products without storing them.
#
# Several cores: ``parts(work)`` runs ``work(images)`` on contiguous parts of the batch, one per thread
# (:func:`~scratchnet.layers.batch_threads.batch_parts`; :func:`one_part`, the whole batch, by default). A
# per-channel sum is the sum of the parts' partial sums, and the element-wise passes write their part of
# the output arrays, which are allocated once for the whole batch.
def _sum_over_parts(partial_sums: list):
    """Each sum over the parts of their partial sums: [(a₀, b₀), (a₁, b₁)] -> (a₀ + a₁, b₀ + b₁)."""
    return tuple(sum(sums) for sums in zip(*partial_sums, strict=True))


def batch_statistics(x3, centred, parts=one_part):
    """(μ, σ²) per channel of x3 (N, C, P): the mean and the biased variance over axes 0 and 2. Leaves
    x − μ in ``centred`` (N, C, P), which the forward then scales into x̂."""
    N, _, P = x3.shape
    (sum_x,) = _sum_over_parts(parts(lambda images: (np.einsum("ncp->c", x3[images]),)))
    mean = sum_x / (N * P)  # μ = (1/n) Σ x, (C,)

    def squares(images):  # Σ (x − μ)² over this part; two passes: no cancellation
        centred_part = np.subtract(x3[images], mean[:, None], out=centred[images])  # (b, C, P)
        return (np.einsum("ncp,ncp->c", centred_part, centred_part),)

    (sum_squares,) = _sum_over_parts(parts(squares))
    return mean, sum_squares / (N * P)  # σ² = (1/n) Σ (x − μ)², (C,)


def batchnorm_forward(x3, mean, var, gamma, beta, eps, parts=one_part, centred=None):
    """y (N, C, P) = γ (x − μ) / sqrt(σ² + eps) + β, per channel; also returns x̂ (N, C, P). ``centred``:
    x − μ where :func:`batch_statistics` left it, scaled into x̂ in place; None: computed here."""
    inv_std = (1 / np.sqrt(var + eps))[:, None]  # (C, 1)
    x_hat = np.empty_like(x3) if centred is None else centred
    y = np.empty_like(x3)

    def normalise(images):
        if centred is None:
            np.subtract(x3[images], mean[:, None], out=x_hat[images])  # x − μ
        x_hat[images] *= inv_std  # x̂ = (x − μ) / s
        np.multiply(x_hat[images], gamma[:, None], out=y[images])
        y[images] += beta[:, None]  # y = γ x̂ + β

    parts(normalise)
    return y, x_hat


def batchnorm_backward(dy3, x_hat, var, gamma, eps, batch_stats=True, means=None, parts=one_part):
    """(dx, dγ, dβ) from dy3 (N, C, P); ``batch_stats``: μ and σ² came from this batch (training).

    ``means(dβ, dγ) -> (dβ / n, dγ / n)``, (C,) each, over the batch the statistics came from: by default
    this one; synchronised BatchNorm passes the sums over every rank's shard."""
    N, _, P = dy3.shape

    def gradient_sums(images):  # this part's Σ dy and Σ dy x̂
        dy_part = dy3[images]
        return np.einsum("ncp->c", dy_part), np.einsum("ncp,ncp->c", dy_part, x_hat[images])

    dbeta, dgamma = _sum_over_parts(parts(gradient_sums))  # dβ = Σ dy, dγ = Σ dy x̂, (C,)
    scale = (gamma / np.sqrt(var + eps))[:, None]  # γ / s, (C, 1)
    dx = np.empty_like(dy3)  # (N, C, P)
    if not batch_stats:
        parts(lambda images: np.multiply(dy3[images], scale, out=dx[images]))  # dx = γ/s · dy
        return dx, dgamma, dbeta
    mean_dbeta, mean_dgamma = means(dbeta, dgamma) if means else (dbeta / (N * P), dgamma / (N * P))

    def input_gradient(images):  # dx = γ/s · (dy − dβ/n − x̂ · dγ/n), built in this part's slice of dx
        dx_part = dx[images]
        np.multiply(x_hat[images], (-mean_dgamma)[:, None], out=dx_part)
        dx_part += dy3[images]
        dx_part -= mean_dbeta[:, None]
        dx_part *= scale

    parts(input_gradient)
    return dx, dgamma, dbeta


# --- the layers --------------------------------------------------------------------------------------------
class _BatchNorm(Layer):
    """What BatchNorm1D and BatchNorm2D share; they differ only in the input's shape."""

    kernel_file = "batchnorm.cu"
    _input_rank = 0  # 2 for (N, C), 4 for (N, C, H, W)
    _shape_text = ""
    _torch_name = ""  # "BatchNorm1d" or "BatchNorm2d"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        *,
        device: str | Device = "cpu",
        dtype=np.float32,
    ):
        super().__init__(device=device, dtype=dtype)
        name = type(self).__name__
        if (
            isinstance(num_features, bool)
            or not isinstance(num_features, int | np.integer)
            or num_features < 1
        ):
            raise ValueError(f"{name}: num_features must be a positive integer, got {num_features!r}")
        if not eps > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        C = self.num_features
        self._set_param("gamma", np.ones(C))
        self._set_param("beta", np.zeros(C))
        self._set_buffer("running_mean", np.zeros(C))
        self._set_buffer("running_var", np.ones(C))
        # The ranks to take the batch statistics over (a scratchnet.parallel.World), or None: this process's
        # batch alone. Set by the trainer's --sync-bn.
        self.sync = None

    def check_input_shape(self, shape: tuple) -> None:
        if len(shape) != self._input_rank or shape[1] != self.num_features:
            self._fail_shape(self._shape_text.format(C=self.num_features), shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        self.check_input_shape(tuple(input_shape))
        return tuple(input_shape)

    def torch_equivalent(self, torch):
        module_class = getattr(torch.nn, self._torch_name)
        module = module_class(self.num_features, self.eps, self.momentum, dtype=self._torch_dtype(torch))
        host = {name: self._host(name) for name in ("running_mean", "running_var")}
        return self._to_torch(torch, module, weight=self._host("gamma"), bias=self._host("beta"), **host)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:g}"

    def _sums_over_ranks(self, training: bool) -> bool:
        return training and self.sync is not None

    def _values_per_channel(self, shape: tuple) -> int:
        """n, and the error PyTorch gives when training on one value per channel."""
        n = shape[0] * int(np.prod(shape[2:], dtype=np.int64))
        if n == 1:
            raise ValueError(
                f"{type(self).__name__}: training needs more than one value per channel to compute a "
                f"variance, got input of shape {shape} (use a batch of at least 2, or training=False)"
            )
        return n

    @staticmethod
    def _sizes(shape: tuple) -> tuple[int, int, int]:
        """N, C, P of an (N, C, ...) shape (P = 1 for 2-D inputs), as the kernels take them."""
        return shape[0], shape[1], int(np.prod(shape[2:], dtype=np.int64))

    def _as_ncp(self, a):
        """(N, C, ...) -> (N, C, P): a view of the same numbers."""
        return a.reshape(self._sizes(a.shape))

    # --- cpu: NumPy ----------------------------------------------------------------------------------
    def _forward_numpy(self, x, training):
        x3 = self._as_ncp(x)  # (N, C, P)
        parts = batch_parts(len(x), x.size)
        gamma, beta = self.params["gamma"], self.params["beta"]
        n, share = None, 1.0  # values per channel and this batch's share of the batch of the statistics
        centred = None  # x − μ, when the statistics leave it
        if training and self.sync is not None:
            mean, var, n, share = self._synchronised_statistics(x3)
        elif training:
            n = self._values_per_channel(x.shape)
            centred = np.empty_like(x3)
            mean, var = batch_statistics(x3, centred, parts)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        if training:
            m = self.momentum
            self.buffers["running_mean"][...] = (1 - m) * self.buffers["running_mean"] + m * mean
            self.buffers["running_var"][...] = (1 - m) * self.buffers["running_var"] + m * var * (n / (n - 1))
        y3, x_hat = batchnorm_forward(x3, mean, var, gamma, beta, self.eps, parts, centred)
        self._save_for_backward(x_hat=x_hat, var=var, batch_stats=training, n=n, share=share)
        return y3.reshape(x.shape)

    def _synchronised_statistics(self, x3):
        """(μ, σ², n, share) over every rank's shard: Σx, Σx² and the batch sizes summed over the ranks."""
        N, C, P = x3.shape
        local = np.concatenate([x3.sum(axis=(0, 2)), np.square(x3).sum(axis=(0, 2)), [N]])
        sums = self.sync.sum(local)  # (2C + 1,) float64, the same on every rank
        n = self._values_per_channel((int(sums[-1]), C, P))
        mean = sums[:C] / n
        var = np.maximum(sums[C : 2 * C] / n - mean**2, 0)  # σ² = E[x²] − μ², ≥ 0 whatever the rounding
        return mean.astype(x3.dtype), var.astype(x3.dtype), n, N / sums[-1]

    def _backward_numpy(self, dy):
        saved = self._saved()
        means = None
        if saved.batch_stats and self.sync is not None:
            share, n = saved.share, saved.n

            def means(dbeta, dgamma):  # Σ over every rank of w_r Σ dy and w_r Σ dy x̂, per value, over w_r
                C = len(dbeta)
                sums = self.sync.sum(np.concatenate([share * dbeta, share * dgamma]))  # (2C,)
                scale = 1 / (n * share) if share else 0.0
                return (sums[:C] * scale).astype(dbeta.dtype), (sums[C:] * scale).astype(dbeta.dtype)

        dy3, gamma = self._as_ncp(dy), self.params["gamma"]
        parts = batch_parts(len(dy), dy.size)
        dx3, dgamma, dbeta = batchnorm_backward(
            dy3, saved.x_hat, saved.var, gamma, self.eps, saved.batch_stats, means, parts
        )
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx3.reshape(dy.shape)

    # --- gpu and sim: kernels/batchnorm.cu -----------------------------------------------------------
    def _per_channel_sums(self, name: str, args: tuple) -> None:
        """Launch one of the per-channel reductions: one block of ``REDUCE_THREADS`` threads per channel."""
        threads = REDUCE_THREADS
        shared_mem = threads * self.dtype.itemsize  # one partial sum per thread
        self._kernel(name)((self.num_features,), (threads,), args, shared_mem=shared_mem)

    def _forward_kernels(self, x, training):
        if self.sync is not None:
            raise ValueError(
                f"{type(self).__name__}: synchronised batch statistics run on the cpu device only"
            )
        dev, C = self.device, self.num_features
        sizes = self._sizes(x.shape)
        y = dev.empty(x.shape, self.dtype)
        if training:
            n = self._values_per_channel(x.shape)
            mean, var = dev.empty((C,), self.dtype), dev.empty((C,), self.dtype)
            self._per_channel_sums("batchnorm_stats", (x, mean, var, *sizes))
            self._kernel("batchnorm_update_running").launch_1d(
                C,
                (self.buffers["running_mean"], self.buffers["running_var"], mean, var)
                + (self.momentum, n / (n - 1), C),
            )
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        params = (self.params["gamma"], self.params["beta"])
        self._kernel("batchnorm_forward").launch_1d(x.size, (x, mean, var, *params, y, self.eps, *sizes))
        self._save_for_backward(x=x, mean=mean, var=var, batch_stats=training)
        return y

    def _backward_kernels(self, dy):
        dev, saved, C = self.device, self._saved(), self.num_features
        sizes = self._sizes(dy.shape)
        dx = dev.empty(dy.shape, self.dtype)
        dgamma, dbeta = dev.empty((C,), self.dtype), dev.empty((C,), self.dtype)
        x, mean, var = saved.x, saved.mean, saved.var
        self._per_channel_sums(
            "batchnorm_backward_reduce", (x, dy, mean, var, self.eps, dgamma, dbeta, *sizes)
        )
        args = (x, dy, mean, var, self.params["gamma"], dgamma, dbeta, dx, self.eps, int(saved.batch_stats))
        self._kernel("batchnorm_backward_input").launch_1d(dx.size, (*args, *sizes))
        self.grads["gamma"], self.grads["beta"] = dgamma, dbeta
        return dx


class BatchNorm2D(_BatchNorm):
    """Batch normalisation of images x (N, C, H, W) per channel, over N·H·W values (module docstring).

    ``params``: ``gamma`` (C,) starting at 1, ``beta`` (C,) at 0. ``buffers``: ``running_mean`` (C,) at 0,
    ``running_var`` (C,) at 1. ``momentum``: the weight of the new batch in the running statistics.
    """

    _input_rank = 4
    _shape_text = "(N, {C}, H, W)"
    _torch_name = "BatchNorm2d"


class BatchNorm1D(_BatchNorm):
    """Batch normalisation of features x (N, C) per feature, over the N values of the batch; see
    :class:`BatchNorm2D` for the parameters and buffers."""

    _input_rank = 2
    _shape_text = "(N, {C})"
    _torch_name = "BatchNorm1d"
