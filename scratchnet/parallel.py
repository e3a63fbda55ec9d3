"""Data parallelism: N processes (ranks) share every batch and sum their gradients with one allreduce.

Why it gives the same result as one process. The loss of a batch of B examples is a mean,
L = (1/B) Σ_i ℓ_i, so its gradient is a sum over examples. Split the batch into N contiguous shards
(rank r gets examples [B·r/N, B·(r+1)/N), possibly none); rank r computes the gradient of the mean over its
n_r examples, g_r = (1/n_r) Σ_{i in shard r} ∇ℓ_i, and scales it to its share of the batch::

    ∇L = (1/B) Σ_i ∇ℓ_i = Σ_r (n_r / B) · g_r            (one allreduce-sum over the N ranks)

Every rank then holds the same ∇L and applies the same SGD step, so the weights stay identical on every
rank and equal (to rounding) those of one process training on the whole batch. Dropout masks are keyed by
the example's position in the whole batch (each layer is told its shard's first example), and every rank
builds the whole batch's augmentation before taking its shard, so the random stream is the one a single
process draws.

How processes talk: MPI (``mpi4py``; ``pip install "scratchnet-cnn[mpi]"`` brings the ``mpich`` wheel and its
``mpiexec``) between processes on one or many machines, and NCCL (``cupy.cuda.nccl``) between GPUs, one GPU
per rank, the ranks being started by MPI as llm.c does. The gradients travel as one flat buffer: a single
allreduce per step.

    mpiexec -n 2 python -m scratchnet.train ...          # or: python -m scratchnet.train --processes 2 ...
    mpiexec -hosts a,b -n 4 python -m scratchnet.train ...  # several machines (same files on each)

Rank 0 alone logs, draws pictures and writes checkpoints; evaluation is sharded and its counts summed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Environment variables an MPI launcher sets in every rank (MPICH/Hydra, Open MPI, Slurm's PMI).
_MPI_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
MPI_HINT = 'pip install "scratchnet-cnn[mpi]" (mpi4py and the mpich wheel, which brings mpiexec)'


class ParallelError(RuntimeError):
    """Data parallelism cannot start (no MPI, not enough GPUs, no NCCL); the message says what to install."""


def launched_by_mpi() -> bool:
    """Whether this process was started by ``mpiexec`` with more than one rank."""
    return any(int(os.environ.get(v, "1") or 1) > 1 for v in _MPI_SIZE_VARIABLES)


class World:
    """The ranks of a run. A single process is a world of size 1 whose collectives copy nothing."""

    rank = 0
    size = 1

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that logs and writes files."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` examples: [n·r/N, n·(r+1)/N) (may be empty)."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def sum(self, values) -> np.ndarray:
        """Element-wise sum over the ranks of a small host array (counts, loss sums); every rank gets it."""
        return np.array(values, dtype=np.float64)

    def allreduce_(self, flat) -> None:
        """Sum ``flat`` (a 1-D array on the model's device) over the ranks, in place."""

    def on_root(self, action: Callable[[], object]) -> None:
        """Run ``action`` (file writing) on rank 0 only; an error there is raised on every rank."""
        action()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


class MpiWorld(World):
    """Ranks started by ``mpiexec``; collectives through MPI (host buffers) or NCCL (``device='gpu'``)."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ParallelError(f"data parallelism needs mpi4py ({e}). Install it with: {MPI_HINT}") from None
        self._mpi = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._nccl = None  # NCCL's allreduce, started by the first allreduce of GPU arrays
        self._blas_limit = limit_blas_threads(self)  # for the life of the process

    def sum(self, values) -> np.ndarray:
        buffer = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return buffer

    def allreduce_(self, flat) -> None:
        if isinstance(flat, np.ndarray):  # cpu and sim: host memory, through MPI
            self.comm.Allreduce(self._mpi.IN_PLACE, flat, op=self._mpi.SUM)
            return
        if self._nccl is None:  # gpu: device memory, through NCCL, GPU to GPU
            self._nccl = _nccl_communicator(self)
        self._nccl(flat)

    def on_root(self, action: Callable[[], object]) -> None:
        # Every rank learns whether rank 0 failed, and fails alike: none waits forever in a later collective.
        error = None
        if self.is_root:
            try:
                action()
            except Exception as e:
                error = e
        error = self.comm.bcast(error, root=0)
        if error is not None:
            raise error

    def abort(self, code: int) -> None:
        """Stop every rank at once (an unexpected error on one rank, which the others cannot know about)."""
        sys.stdout.flush()
        sys.stderr.flush()
        # mpiexec passes each rank's output on through a pipe, and Abort kills every rank and may cut that
        # short: without a pause the other ranks' users could see the first line of a traceback and no more.
        time.sleep(0.5)
        self.comm.Abort(code)


def _nccl_communicator(world: MpiWorld):
    """An allreduce over NCCL, one GPU per rank (rank r uses GPU r modulo the GPUs of its machine)."""
    from scratchnet import cupy_backend

    cp = cupy_backend.cupy()
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        raise ParallelError(
            f"--device gpu with several processes needs NCCL ({e}): pip install nvidia-nccl-cu12 "
            "(or nvidia-nccl-cu13, matching your CuPy wheel)"
        ) from None
    local_rank = int(
        os.environ.get("MPI_LOCALRANKID", os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK", world.rank))
    )
    local_size = int(os.environ.get("MPI_LOCALNRANKS", os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", 1)))
    gpus = cp.cuda.runtime.getDeviceCount()
    if gpus < local_size:
        raise ParallelError(f"{local_size} processes on this machine need {local_size} GPUs; it has {gpus}")
    cp.cuda.Device(local_rank).use()
    uid = world.comm.bcast(nccl.get_unique_id() if world.rank == 0 else None, root=0)
    comm = nccl.NcclCommunicator(world.size, uid, world.rank)
    types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def allreduce_(flat) -> None:
        stream = cp.cuda.get_current_stream()
        comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, types[flat.dtype], nccl.NCCL_SUM, stream.ptr)

    return allreduce_


def _local_rank_and_size(world: World) -> tuple[int, int]:
    """This rank's index among the ranks on its machine, and their number (MPICH's or Open MPI's names)."""
    env = os.environ
    rank = env.get("MPI_LOCALRANKID", env.get("OMPI_COMM_WORLD_LOCAL_RANK", world.rank))
    size = env.get("MPI_LOCALNRANKS", env.get("OMPI_COMM_WORLD_LOCAL_SIZE", world.size))
    return int(rank), max(1, int(size))


_world: World | None = None


def world() -> World:
    """This process's world: an :class:`MpiWorld` when started by ``mpiexec`` with several ranks, else one."""
    global _world
    if _world is None:
        _world = MpiWorld() if launched_by_mpi() else World()
    return _world


class GradientAllreduce:
    """Turn each rank's mean-over-shard gradients into the whole batch's gradient, in one allreduce.

    The gradients are copied into one flat buffer (on the model's device), scaled by n_r / B, summed over
    the ranks and copied back: one collective per step instead of one per parameter.
    """

    def __init__(self, model, world: World):
        self.model, self.world = model, world
        self.keys = list(model.grads)
        sizes = [int(np.prod(model.grads[k].shape)) for k in self.keys]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.flat = model.device.zeros((int(self.offsets[-1]),), model.dtype)  # (total parameters,)

    def __call__(self, n_local: int, n_global: int) -> None:
        grads, flat = self.model.grads, self.flat
        scale = n_local / n_global
        for k, start, end in zip(self.keys, self.offsets[:-1], self.offsets[1:], strict=True):
            # A rank with an empty shard contributes zeros, whatever its layers left in grads.
            flat[start:end] = grads[k].reshape(-1) * scale if n_local else 0
        self.world.allreduce_(flat)
        for k, start, end in zip(self.keys, self.offsets[:-1], self.offsets[1:], strict=True):
            grads[k][...] = flat[start:end].reshape(grads[k].shape)


def blas_threads(world: World, cores: int | None = None) -> int:
    """BLAS threads per rank: the machine's cores shared out, at least one."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // _local_rank_and_size(world)[1])


def limit_blas_threads(world: World):
    """Limit this rank's BLAS/OpenMP threads; returns the threadpoolctl limiter (None for one process)."""
    if world.size == 1:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        raise ParallelError(
            f"data parallelism needs threadpoolctl ({e}). Install it with: {MPI_HINT}"
        ) from None
    return threadpool_limits(blas_threads(world))


def mpiexec() -> str:
    """The ``mpiexec`` to start ranks with: beside this Python (the mpich wheel's) or on the PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    found = str(beside) if beside.is_file() else shutil.which("mpiexec")
    if found is None:
        raise ParallelError(f"--processes needs an MPI launcher (mpiexec), which was not found. {MPI_HINT}")
    try:
        import mpi4py  # noqa: F401
    except ImportError as e:
        raise ParallelError(f"--processes needs mpi4py ({e}). {MPI_HINT}") from None
    return found


def launch(processes: int, module: str, argv: list[str]) -> int:
    """Run ``python -m module argv`` as ``processes`` MPI ranks on this machine; return its exit status."""
    command = [mpiexec(), "-n", str(processes), sys.executable, "-m", module, *argv]
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 130
