"""SoftmaxCrossEntropy: the classification loss, and top-k accuracy counts.

Shapes: logits z (N, K), labels t (N,) integer class ids in [0, K).

Forward (the mean negative log-likelihood of the true classes under the softmax)::

    m_n      = max_k z[n, k]                                (subtracted so that exp never overflows)
    p[n, k]  = exp(z[n, k] - m_n) / Σ_j exp(z[n, j] - m_n)   softmax, (N, K)
    L        = (1/N) Σ_n  -log p[n, t_n]  =  (1/N) Σ_n ( log Σ_j exp(z[n, j] - m_n) - (z[n, t_n] - m_n) )

Backward (the softmax and the logarithm cancel into a famously simple gradient)::

    dL/dz[n, k] = (p[n, k] - [k == t_n]) / N                 (N, K)

The loss is the end of the network, so ``backward()`` takes no argument (dL/dL = 1).

Kernels (gpu and sim, ``kernels/softmax_xent.cu``): ``softmax_xent_forward`` (one block per row, shared-memory
tree reductions for the row max and the sum of exponentials), ``softmax_xent_mean`` (one block: the
deterministic mean of the N row losses, the single number copied to the host) and ``softmax_xent_backward``
(one thread per element). :func:`topk_correct` launches ``label_rank`` and ``rank_histogram``.
"""

from __future__ import annotations

import math

import numpy as np

from scratchnet._cuda.sources import cuda_defines
from scratchnet.device import Device, get_device
from scratchnet.layers.base import Layer, check_on_device

MAX_BLOCK = cuda_defines("softmax_xent.cu")["SOFTMAX_MAX_THREADS"]  # the most threads a row gets


def _checked_logits_and_labels(device: Device, logits, labels, who: str) -> tuple:
    """(logits, labels) ready for the math: an error naming the problem unless logits is (N, K) and labels
    (N,) integers, both on ``device``. Non-contiguous arrays are copied (on the device) into C-contiguous
    ones, and labels of any integer dtype become int64, which the kernels read as ``long long``."""
    check_on_device(device, logits, who, "logits")
    check_on_device(device, labels, who, "labels")
    if logits.ndim != 2 or logits.shape[1] == 0:
        raise ValueError(f"{who}: expected logits of shape (N, K), K >= 1, got {tuple(logits.shape)}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{who}: labels must be integer class ids, got dtype {labels.dtype}")
    if tuple(labels.shape) != (logits.shape[0],):
        raise ValueError(
            f"{who}: expected labels of shape ({logits.shape[0]},) for logits {tuple(logits.shape)}, "
            f"got {tuple(labels.shape)}"
        )
    if device.uses_kernels and labels.dtype != np.int64:
        labels = labels.astype(np.int64)  # on the device: no transfer (a C-contiguous copy)
    return tuple(a if a.flags.c_contiguous else a.copy() for a in (logits, labels))


def _fail_labels_out_of_range(labels_host: np.ndarray, n_classes: int, who: str) -> None:
    bad = labels_host[(labels_host < 0) | (labels_host >= n_classes)]
    if bad.size:
        more = f" and {bad.size - 1} more" if bad.size > 1 else ""
        raise ValueError(f"{who}: labels must be class ids in [0, {n_classes}), got {bad[0]}{more}")


def _block_size(n_classes: int) -> int:
    """Threads per row: a power of two, at least a warp (32), at most MAX_BLOCK."""
    return min(MAX_BLOCK, max(32, 1 << math.ceil(math.log2(n_classes))))


class SoftmaxCrossEntropy(Layer):
    """Softmax followed by the cross-entropy with integer labels; see the module docstring.

    A layer without parameters (``Layer``'s constructor, ``to()`` and backward cache) at the end of the
    network: ``forward(logits, labels)`` returns the mean loss as a float and keeps the softmax p and the
    labels for ``backward()`` (which takes no dL/dy: dL/dL = 1), unless ``keep_for_backward=False``.
    """

    kernel_file = "softmax_xent.cu"

    def output_shape(self, input_shape: tuple) -> tuple:
        return ()  # one number

    def torch_equivalent(self, torch):
        return torch.nn.CrossEntropyLoss()  # called as twin(logits, labels), like forward

    def forward(self, logits, labels, keep_for_backward: bool = True) -> float:
        """Mean loss over the batch, as a Python float (on gpu/sim: one device->host copy of one number)."""
        who = type(self).__name__
        logits, labels = _checked_logits_and_labels(self.device, logits, labels, who)
        if logits.dtype != self.dtype:
            raise ValueError(f"{who}: logits must have dtype {self.dtype}, got {logits.dtype}")
        if logits.shape[0] == 0:
            raise ValueError(f"{who}: a batch of 0 rows has no mean loss (logits {tuple(logits.shape)})")
        self._start_forward(keep_for_backward)
        if self.device.uses_kernels:
            loss = self._forward_kernels(logits, labels)
            if math.isnan(loss):  # a bad label (marked NaN by the kernel), or NaN logits
                _fail_labels_out_of_range(self.device.to_host(labels), logits.shape[1], who)
            return loss
        _fail_labels_out_of_range(labels, logits.shape[1], who)
        return self._forward_numpy(logits, labels)

    def backward(self):
        """dL/dlogits (N, K), on the device."""
        saved = self._saved()
        if self.device.uses_kernels:
            return self._backward_kernels(saved.probs, saved.labels)
        return self._backward_numpy(saved.probs, saved.labels)

    # --- cpu: NumPy ------------------------------------------------------------------------------
    def _forward_numpy(self, logits, labels) -> float:
        N = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)  # (N, K), every entry <= 0
        log_sum_exp = np.log(np.exp(shifted).sum(axis=1))  # (N,)
        self._save_for_backward(probs=np.exp(shifted - log_sum_exp[:, None]), labels=labels)  # p (N, K)
        row_loss = log_sum_exp - shifted[np.arange(N), labels]  # (N,)
        return float(row_loss.mean())

    def _backward_numpy(self, probs, labels):
        N = probs.shape[0]
        dlogits = probs.copy()
        dlogits[np.arange(N), labels] -= 1
        return dlogits / self.dtype.type(N)

    # --- gpu and sim: kernels/softmax_xent.cu ----------------------------------------------------
    def _forward_kernels(self, logits, labels) -> float:
        N, K = logits.shape
        dev = self.device
        probs = dev.empty((N, K), self.dtype)
        row_loss = dev.empty((N,), self.dtype)
        mean = dev.empty((1,), self.dtype)
        self._kernel("softmax_xent_forward")((N,), (_block_size(K),), (logits, labels, probs, row_loss, K))
        self._save_for_backward(probs=probs, labels=labels)
        self._kernel("softmax_xent_mean")((1,), (MAX_BLOCK,), (row_loss, mean, N))
        return dev.scalar(mean)

    def _backward_kernels(self, probs, labels):
        N, K = probs.shape
        dlogits = self.device.empty((N, K), self.dtype)
        kernel = self._kernel("softmax_xent_backward")
        kernel.launch_1d(N * K, (probs, labels, dlogits, N * K, K, N))
        return dlogits


def topk_correct(logits, labels, ks=(1, 5), device="cpu") -> dict[int, int]:
    """How many rows have their true label among the k largest logits, for each k: ``{1: 93, 5: 127}``.

    Ties go to the lower class index, as ``argmax`` does: the rank of the true class t in row n is
    ``#{j : z[j] > z[t]} + #{j < t : z[j] == z[t]}`` and the row is top-k correct iff rank < k. A row that
    holds a NaN is never correct.
    On gpu/sim the ranks are computed by ``label_rank`` (one thread per row), counted by ``rank_histogram``,
    and ``max(ks) + 1`` counts come back in one transfer.
    """
    dev = get_device(device)
    logits, labels = _checked_logits_and_labels(dev, logits, labels, "topk_correct")
    if not ks or not all(isinstance(k, int | np.integer) and k >= 1 for k in ks):
        raise ValueError(f"topk_correct: ks must be positive integers, got {ks!r}")
    N, K = logits.shape
    if N == 0:
        return {int(k): 0 for k in ks}
    if dev.uses_kernels:
        rank = dev.empty((N,), np.int32)
        dev.kernel("softmax_xent.cu", "label_rank", logits.dtype).launch_1d(N, (logits, labels, rank, N, K))
        counts = dev.empty((max(ks) + 1,), np.int64)  # counts[0]: invalid labels; counts[1 + r]: rank r
        dev.kernel("softmax_xent.cu", "rank_histogram")((max(ks) + 1,), (MAX_BLOCK,), (rank, counts, N))
        counts = dev.to_host(counts)
        if counts[0]:
            _fail_labels_out_of_range(dev.to_host(labels), K, "topk_correct")
        return {int(k): int(counts[1 : k + 1].sum()) for k in ks}
    _fail_labels_out_of_range(labels, K, "topk_correct")
    target = logits[np.arange(N), labels][:, None]  # (N, 1)
    before_target = np.arange(K) < labels[:, None]  # (N, K)
    rank = (logits > target).sum(axis=1) + ((logits == target) & before_target).sum(axis=1)  # (N,)
    rank[np.isnan(logits).any(axis=1)] = np.iinfo(rank.dtype).max  # NaN compares False: never correct
    return {int(k): int((rank < k).sum()) for k in ks}
