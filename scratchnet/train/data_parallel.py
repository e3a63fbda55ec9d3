"""The one door through which data parallelism enters the training loop.

:class:`DataParallel` is everything the loop needs to know about the processes sharing a run. A run in one
process (``DataParallel()``) takes every batch whole, combines nothing, and logs and writes itself. Started
by ``mpiexec`` with several processes (``DataParallel(parallel.world())``), every rank builds the whole
batch (so augmentation draws are the ones one process makes), computes the forward and backward of its
shard only, and one allreduce gives every rank the whole batch's gradient before the same SGD step; losses,
accuracies and evaluations are summed over the ranks, and rank 0 alone logs and writes files (see
:mod:`scratchnet.parallel`).
"""

from __future__ import annotations

from collections.abc import Callable

from scratchnet import parallel
from scratchnet.evaluate import Evaluation, evaluate
from scratchnet.layers import BatchNorm1D, BatchNorm2D


class DataParallel:
    """How the processes of a run share each batch (one process: it takes every batch whole)."""

    def __init__(self, world: parallel.World | None = None):
        self.world = world or parallel.World()
        self._allreduce: parallel.GradientAllreduce | None = None
        self.syncs_batchnorm = False  # every rank joins the BatchNorm sums, an empty shard included

    def sync_batchnorm(self, model) -> None:
        """``--sync-bn``: every BatchNorm layer of ``model`` (inside residual blocks too) takes its batch
        statistics over every process's shard (:mod:`scratchnet.layers.batchnorm`)."""
        if self.world.size == 1:
            return
        self.syncs_batchnorm = True
        layers = list(model.layers.values())
        while layers:
            layer = layers.pop()
            layers += getattr(layer, "layers", {}).values()  # a residual block's own layers
            if isinstance(layer, BatchNorm1D | BatchNorm2D):
                layer.sync = self.world

    @property
    def writes(self) -> bool:
        """Whether this process logs and writes the run folder (rank 0; the only process of a single run)."""
        return self.world.is_root

    def on_writer(self, action: Callable[[], object]) -> None:
        """Run ``action`` (file writing) in the writing process only; an error there is raised in all."""
        self.world.on_root(action)

    def shard(self, n: int) -> slice:
        """This process's examples of a batch of ``n`` (all of them in a single-process run)."""
        return self.world.shard(n)

    def combine_step(self, model, loss: float, correct, n_shard: int, n_batch: int) -> tuple[float, object]:
        """After the backward pass of this process's ``n_shard`` examples of a batch of ``n_batch``: puts the
        whole batch's gradient into ``model.grads`` (one allreduce) and returns the whole batch's mean loss
        and correct count. In one process everything is already whole and comes back unchanged."""
        if self.world.size == 1:
            return loss, correct
        if self._allreduce is None or self._allreduce.model is not model:
            self._allreduce = parallel.GradientAllreduce(model, self.world)
        self._allreduce(n_shard, n_batch)
        loss_total, correct = self.world.sum([loss * n_shard, correct])
        return float(loss_total) / n_batch, correct

    def batch_loss(self, loss: float, n_shard: int, n_batch: int) -> float:
        """The mean loss of a batch from this process's mean over its shard (every process the same)."""
        if self.world.size == 1:
            return loss
        return float(self.world.sum([loss * n_shard])[0]) / n_batch

    def evaluate(self, model, dataset, **options) -> Evaluation:
        """:func:`scratchnet.evaluate.evaluate`, each process taking its share of ``dataset``."""
        return evaluate(model, dataset, world=self.world, **options)


def this_process() -> DataParallel:
    """The sharing of a run started in this process: several processes under ``mpiexec``, else one."""
    return DataParallel(parallel.world())
