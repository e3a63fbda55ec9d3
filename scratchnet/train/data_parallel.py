"""The one door through which data parallelism enters the training loop.

:class:`DataParallel` is everything the loop needs to know about the processes sharing a run. A run in one
process (``DataParallel()``) takes every batch whole, combines nothing, and logs and writes itself. Started
by ``mpiexec`` with several processes (``DataParallel(parallel.world())``), every rank builds the whole
batch (so augmentation draws are the ones one process makes), computes the forward and backward of its
shard only, and one allreduce gives every rank the whole batch's gradient before the same SGD step; losses,
accuracies and evaluations are summed over the ranks, and rank 0 alone logs and writes files (see
:mod:`scratchnet.parallel`).

Ctrl-C reaches every process (from the terminal, and again from ``mpiexec``), each at its own point of a
step: one may be computing while another waits in the allreduce, where Python cannot act on a signal. So
while the processes train (:meth:`DataParallel.stopping_together`) a Ctrl-C is only noted, the step's sum
tells every process whether any was interrupted, and all stop at the end of the same step
(:class:`InterruptedTogether`): rank 0 says how to resume, and no process is left waiting for another.
A second Ctrl-C makes ``mpiexec`` stop the processes at once.

A Ctrl-C that lands inside a simulated kernel (``--device sim``) is the exception: the simulator stops the
launch and raises ``KeyboardInterrupt`` in that process alone, halfway through its part of a step. That
part (:meth:`DataParallel.own_part`) then notes it like any other and gives up the rest of its work, and
the process goes on to the collective where the others wait: every sum of a step, of the last batch's
loss and of an evaluation carries the flag, so all stop there, before any update or checkpoint could use
what the interrupted launch left half done.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import TypeVar

from scratchnet import parallel
from scratchnet.device import Device, get_device
from scratchnet.evaluate import Evaluation, evaluate
from scratchnet.layers import BatchNorm1D, BatchNorm2D


class InterruptedTogether(KeyboardInterrupt):
    """Ctrl-C, acted on by every process of a data-parallel run at the end of the same step."""


Result = TypeVar("Result")


class DataParallel:
    """How the processes of a run share each batch (one process: it takes every batch whole)."""

    def __init__(self, world: parallel.World | None = None):
        self.world = world or parallel.World()
        self._allreduce: parallel.GradientAllreduce | None = None
        self.interrupted = False  # a Ctrl-C this process noted and has not yet acted on
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

    def device(self, name: str) -> Device:
        """The device ``name`` of this process. On ``gpu`` with several processes, this rank's own GPU is
        made current first, so that its model, buffers and gradients are allocated there, not on GPU 0."""
        if name == "gpu":
            parallel.use_rank_gpu(self.world)
        return get_device(name)

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
        loss_total, correct = self._sum_or_stop([loss * n_shard, correct])  # all stop before the update
        return float(loss_total) / n_batch, correct

    def batch_loss(self, loss: float, n_shard: int, n_batch: int) -> float:
        """The mean loss of a batch from this process's mean over its shard (every process the same)."""
        if self.world.size == 1:
            return loss
        return float(self._sum_or_stop([loss * n_shard])[0]) / n_batch

    @contextlib.contextmanager
    def stopping_together(self) -> Iterator[None]:
        """Within this block, several processes stop on Ctrl-C together, at the end of the step (or the
        :meth:`stop_if_interrupted`) where they all learn of it; one process stops at once, as usual."""
        if self.world.size == 1:
            yield
            return
        previous = signal.signal(signal.SIGINT, self._note_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _note_interrupt(self, signum, frame) -> None:
        self.interrupted = True

    def own_part(self, work: Callable[[], Result], instead: Result) -> Result:
        """``work()``: this process's own computation between two collectives. With several processes, a
        ``KeyboardInterrupt`` inside it (the simulator's, from a launch Ctrl-C stopped: Python's own Ctrl-C
        is only noted here) is noted, and ``instead`` comes back; so it does once this process was
        interrupted, since what the launch left half done must not be computed on. The next collective
        stops every process."""
        if self.world.size == 1:
            return work()
        if self.interrupted:
            return instead
        try:
            return work()
        except KeyboardInterrupt:
            self.interrupted = True
            return instead

    def _sum_or_stop(self, values: list) -> list:
        """The sums of ``values`` over the processes, or :class:`InterruptedTogether` in all of them if any
        was interrupted (the flag travels in the same sum)."""
        *sums, interrupted = self.world.sum([*values, self.interrupted])
        if interrupted:
            raise InterruptedTogether
        return sums

    def stop_if_interrupted(self) -> None:
        """Raise :class:`InterruptedTogether` in every process if any of them was interrupted (a
        collective: every process calls it at the same point, between steps)."""
        if self.world.size > 1:
            self._sum_or_stop([])

    def evaluate(self, model, dataset, **options) -> Evaluation:
        """:func:`scratchnet.evaluate.evaluate`, each process taking its share of ``dataset``. With several
        processes it raises ``KeyboardInterrupt`` in all of them together (after its sum) when a Ctrl-C
        stopped a simulated kernel of one: the run stops there."""
        try:
            return evaluate(model, dataset, world=self.world, **options)
        except KeyboardInterrupt:
            if self.world.size == 1:
                raise
            raise InterruptedTogether from None


def this_process() -> DataParallel:
    """The sharing of a run started in this process: several processes under ``mpiexec``, else one."""
    return DataParallel(parallel.world())
