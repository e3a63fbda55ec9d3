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

import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scratchnet.errors import DeviceError

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

    def on_root(self, action: Callable[[], object]):
        """Run ``action`` (file writing) on rank 0 only; every rank gets its result, or raises its error."""
        return action()

    def allgather(self, value) -> list:
        """Every rank's ``value`` (a small Python object), in rank order; every rank gets the list."""
        return [value]

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
        if os.environ.get(RANK_PIDS_VARIABLE):  # started by launch(): say which process is which rank
            (Path(os.environ[RANK_PIDS_VARIABLE]) / str(self.rank)).write_text(str(os.getpid()))

    def sum(self, values) -> np.ndarray:
        buffer = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._mpi.IN_PLACE, buffer, op=self._mpi.SUM)
        return buffer

    def allreduce_(self, flat) -> None:
        if isinstance(flat, np.ndarray):  # cpu and sim: host memory, through MPI
            self.comm.Allreduce(self._mpi.IN_PLACE, flat, op=self._mpi.SUM)
            return
        from scratchnet import cupy_backend  # gpu: device memory, through NCCL, GPU to GPU

        with cupy_backend.gpu_errors(f"rank {self.rank}: summing the gradients over the GPUs (NCCL)"):
            if self._nccl is None:
                self._nccl = _nccl_communicator(self, flat)
            self._nccl(flat)

    def on_root(self, action: Callable[[], object]):
        # Every rank learns whether rank 0 failed, and fails alike: none waits forever in a later collective.
        error = result = None
        if self.is_root:
            try:
                result = action()
            except Exception as e:
                error = e
        error, result = self.comm.bcast((error, result), root=0)
        if error is not None:
            raise error
        return result

    def allgather(self, value) -> list:
        return self.comm.allgather(value)

    def abort(self, code: int) -> None:
        """Stop every rank at once (an unexpected error on one rank, which the others cannot know about)."""
        sys.stdout.flush()
        sys.stderr.flush()
        # mpiexec passes each rank's output on through a pipe, and Abort kills every rank and may cut that
        # short: without a pause the other ranks' users could see the first line of a traceback and no more.
        time.sleep(0.5)
        self.comm.Abort(code)


def check_started_alike(world: World, settings: dict) -> None:
    """Raise :class:`ParallelError` unless every rank was started with the same ``settings`` (its parsed
    command line). Called before any other collective: ranks that train different models, or the same
    model on different data, would otherwise mix them silently or fail in MPI with a message about
    buffers."""
    if world.size == 1:
        return
    everyone = world.allgather(settings)
    differing = sorted(  # compared as text: NaN equals NaN there
        {k for other in everyone for k in {*other, *settings} if repr(other.get(k)) != repr(settings.get(k))}
    )
    if not differing:
        return
    described = "; ".join(
        f"{name}: " + ", ".join(f"{other.get(name)!r} on rank {rank}" for rank, other in enumerate(everyone))
        for name in differing
    )
    raise ParallelError(
        f"the {world.size} processes were started with different settings ({described}); "
        "start every rank with the same command"
    )


def use_rank_gpu(world: World) -> None:
    """Make this rank's GPU the current one; call it before anything is allocated on the GPU.

    Rank r uses GPU ``local_rank % visible``: ``local_rank`` is r's index among the ranks of its machine
    (:func:`local_rank_and_size`) and ``visible`` the GPUs this process sees. A launcher that gives each
    rank one GPU through ``CUDA_VISIBLE_DEVICES`` (Slurm's ``--gpus-per-task=1``, most clusters) makes every
    rank's GPU its device 0. Also fails now, not at the first allreduce, when NCCL is missing."""
    if world.size == 1:
        return
    from scratchnet import cupy_backend

    cp = cupy_backend.cupy()
    nccl_module(cp)
    local_rank, local_size = local_rank_and_size(world)
    with cupy_backend.gpu_errors(f"rank {world.rank}: choosing its GPU"):
        visible = cp.cuda.runtime.getDeviceCount()
    if local_size > visible and "CUDA_VISIBLE_DEVICES" not in os.environ:
        raise ParallelError(
            f"{local_size} processes on this machine need {local_size} GPUs (NCCL refuses two ranks on one "
            f"GPU); it has {visible}. Start at most {visible} processes per machine, or give each its own "
            "GPU with CUDA_VISIBLE_DEVICES"
        )
    with cupy_backend.gpu_errors(f"rank {world.rank}: choosing its GPU"):
        cp.cuda.Device(local_rank % visible).use()


def nccl_module(cp):
    """``cupy.cuda.nccl``, or a DeviceError saying how to install NCCL. Without ``libnccl`` CuPy's module
    still imports, with ``available = False`` and none of its functions."""
    try:
        from cupy.cuda import nccl
    except ImportError as e:
        nccl, reason = None, str(e)
    else:
        reason = "CuPy cannot load libnccl"
    if nccl is not None and getattr(nccl, "available", True):
        return nccl
    cuda_major = cp.cuda.runtime.runtimeGetVersion() // 1000
    raise DeviceError(
        f"--device gpu with several processes sums the gradients with NCCL, which is missing ({reason}). "
        f"Install the NCCL of CuPy's CUDA {cuda_major}: pip install nvidia-nccl-cu{cuda_major}"
    )


def _nccl_communicator(world: MpiWorld, flat):
    """An allreduce over NCCL of ``flat``'s GPU (this rank's, see :func:`use_rank_gpu`), one GPU per rank."""
    from scratchnet import cupy_backend

    cp = cupy_backend.cupy()
    nccl = nccl_module(cp)
    device = cp.cuda.Device(flat.device.id)
    with device:  # the communicator belongs to the GPU current when it is made
        uid = world.comm.bcast(nccl.get_unique_id() if world.rank == 0 else None, root=0)
        comm = nccl.NcclCommunicator(world.size, uid, world.rank)
    types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def allreduce_(flat) -> None:
        with device:
            stream = cp.cuda.get_current_stream()
            comm.allReduce(
                flat.data.ptr, flat.data.ptr, flat.size, types[flat.dtype], nccl.NCCL_SUM, stream.ptr
            )

    return allreduce_


def local_rank_and_size(world: World) -> tuple[int, int]:
    """This rank's index among the ranks on its machine, and their number, as the launcher says: MPICH's
    Hydra, Open MPI, or Slurm (``srun``); without any, the world's rank and size (one machine)."""
    env = os.environ
    rank = env.get("MPI_LOCALRANKID", env.get("OMPI_COMM_WORLD_LOCAL_RANK", env.get("SLURM_LOCALID")))
    size = env.get("MPI_LOCALNRANKS", env.get("OMPI_COMM_WORLD_LOCAL_SIZE", env.get("SLURM_NTASKS_PER_NODE")))
    rank = world.rank if rank is None else int(rank)
    size = world.size if size is None else int(size)
    return rank, max(1, size)


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
    return max(1, cores // local_rank_and_size(world)[1])


def check_cores(processes: int, oversubscribe: bool, cores: int | None = None) -> None:
    """Refuse more processes on one machine than it has cores, unless ``oversubscribe``: ranks that share a
    core take turns, and every step waits for the slowest of them."""
    cores = cores or os.cpu_count() or 1
    if processes > cores and not oversubscribe:
        raise ParallelError(
            f"{processes} processes on this machine, which has {cores} cores: ranks sharing a core run "
            f"slower than {cores} processes would; give --oversubscribe to start them anyway"
        )


def check_world_cores(world: World, oversubscribe: bool, cores: int | None = None) -> None:
    """:func:`check_cores` for the ranks ``world`` has on this machine (each machine checks its own)."""
    check_cores(local_rank_and_size(world)[1], oversubscribe, cores)


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


# Where each rank started by launch() writes its process id (a file named by its rank), so that a rank killed
# by a signal can be named: mpiexec reports only the process id.
RANK_PIDS_VARIABLE = "SCRATCHNET_RANK_PIDS"
# The banner mpiexec (MPICH's Hydra) prints on stdout when a rank dies: its lines, the dead rank's process
# id, and the signal that killed it.
_BANNER_LINE = re.compile(
    r"^(=+|=   .*|YOUR APPLICATION TERMINATED .*|This typically refers .*|Please see the FAQ.*)$"
)
_BANNER_PID = re.compile(r"^=\s+PID (\d+) RUNNING AT", re.MULTILINE)
_BANNER_SIGNAL = re.compile(r"EXIT STRING: .*\(signal (\d+)\)")


def launch(processes: int, module: str, argv: list[str]) -> int:
    """Run ``python -m module argv`` as ``processes`` MPI ranks on this machine; return its exit status.

    ``mpiexec`` dies with this process (see :func:`die_with_parent`): a launcher stopped by SIGTERM or
    kill -9 takes its ranks with it instead of leaving them to write the run folder unseen. The ranks'
    output is passed on line by line; a rank killed by signal N gives exit status 128 + N and one
    ``error:`` line naming the rank and the signal, in place of mpiexec's banner.

    ``mpiexec`` runs in a process group of its own, and this process passes each Ctrl-C on to it: the ranks
    hear every Ctrl-C once, from ``mpiexec``, whether it was typed in the terminal (which signals this
    process's group) or sent to this process alone. A second Ctrl-C makes ``mpiexec`` stop them at once.
    """
    command = [mpiexec(), "-n", str(processes), sys.executable, "-m", module, *argv]
    with tempfile.TemporaryDirectory(prefix="scratchnet-ranks-") as pids:
        job = subprocess.Popen(
            command,
            env={**os.environ, RANK_PIDS_VARIABLE: pids},
            stdin=subprocess.DEVNULL,  # a background process group must not read the terminal
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=functools.partial(_start_mpiexec, os.getpid()),
        )
        banner, interrupted = [], False
        while True:  # keep passing on what the ranks say until they have ended
            try:
                for line in job.stdout:
                    if _BANNER_LINE.match(line.rstrip("\n")):
                        banner.append(line)
                    else:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                break
            except KeyboardInterrupt:
                interrupted = True
                job.send_signal(signal.SIGINT)
        code = job.wait()
        return 130 if interrupted else _rank_killed(code, banner, Path(pids))


def _rank_killed(code: int, banner: list[str], pids: Path) -> int:
    """``code``, or 128 + N after one ``error:`` line when the banner says a rank was killed by signal N."""
    text = "".join(banner)
    killed = _BANNER_SIGNAL.search(text)
    if code == 0 or killed is None:
        sys.stdout.write(text)  # some other failure: mpiexec's own words
        return code
    signum = int(killed.group(1))
    dead = _BANNER_PID.search(text)
    pid = dead.group(1) if dead else "?"
    ranks = [f.name for f in pids.iterdir() if f.read_text().strip() == pid]
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = "an unknown signal"
    hint = ", perhaps by the system for lack of memory" if signum == signal.SIGKILL else ""
    rank = ranks[0] if ranks else "?"
    print(
        f"error: rank {rank} (process {pid}) was killed by signal {signum} ({name}{hint}); "
        "the other ranks were stopped",
        file=sys.stderr,
    )
    return 128 + signum


def _start_mpiexec(launcher: int) -> None:
    """In the child that becomes ``mpiexec``: a process group of its own, ended when ``launcher`` dies."""
    os.setpgid(0, 0)
    die_with_parent(launcher)


PR_SET_PDEATHSIG = 1  # prctl(2): the signal the kernel sends this process when its parent dies


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``signum`` to this process when ``parent`` dies (Linux; elsewhere nothing).

    For child processes (``preexec_fn``, or first thing in a worker): kill -9 of the parent cannot be
    caught, so only the kernel can pass it on. SIGTERM lets mpiexec stop its ranks in turn.
    """
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum))
    if os.getppid() != parent:  # the parent died before the request was made: nothing will come
        os.kill(os.getpid(), signum)
