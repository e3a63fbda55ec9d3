"""Data parallelism: shards, the gradient allreduce, and N ranks training to one process's weights."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import scratchnet as sn
from scratchnet import parallel


class FakeWorld(parallel.World):
    """Rank ``rank`` of ``size``, for shard arithmetic without MPI."""

    def __init__(self, rank: int, size: int):
        self.rank, self.size = rank, size


@pytest.mark.parametrize("n, size", [(64, 2), (64, 3), (7, 3), (2, 3), (0, 2), (1, 4)])
def test_shards_cover_the_batch_once_in_order(n, size):
    shards = [FakeWorld(r, size).shard(n) for r in range(size)]
    covered = np.concatenate([np.arange(n)[s] for s in shards])
    np.testing.assert_array_equal(covered, np.arange(n))
    lengths = [len(range(n)[s]) for s in shards]
    assert max(lengths) - min(lengths) <= 1  # as even as it gets; some may be empty when n < size


class SummingWorld(parallel.World):
    """Stands in for N ranks in one process: ``allreduce_`` of rank r waits for all N contributions."""

    def __init__(self, size: int):
        self.size, self.flats = size, []

    def allreduce_(self, flat) -> None:
        self.flats.append(flat.copy())


def _small_net(seed=0):
    return sn.models.Sequential(
        [
            ("conv", sn.layers.Conv2D(1, 3, 3, padding=1, dtype=np.float64, seed=seed)),
            ("relu", sn.layers.ReLU(dtype=np.float64)),
            ("flat", sn.layers.Flatten(dtype=np.float64)),
            ("fc", sn.layers.Linear(3 * 6 * 6, 4, dtype=np.float64, seed=seed + 1)),
        ],
        dtype=np.float64,
        input_shape=(1, 6, 6),
    )


@pytest.mark.parametrize("size", [2, 3, 5])
def test_scaled_shard_gradients_sum_to_the_whole_batch_gradient(size):
    rng = np.random.default_rng(0)
    B = 7  # not a multiple of 2, 3 or 5; with 5 ranks two shards hold one example, none is empty
    x, labels = rng.standard_normal((B, 1, 6, 6)), rng.integers(0, 4, B)
    whole = _small_net()
    loss = sn.layers.SoftmaxCrossEntropy(dtype=np.float64)
    loss.forward(whole.forward(x), labels)
    whole.backward(loss.backward())

    world = SummingWorld(size)
    for rank in range(size):
        shard = FakeWorld(rank, size).shard(B)
        replica = _small_net()
        loss.forward(replica.forward(x[shard]), labels[shard])
        replica.backward(loss.backward())
        parallel.GradientAllreduce(replica, world)(len(labels[shard]), B)
    summed = np.sum(world.flats, axis=0)
    expected = np.concatenate([whole.grads[k].reshape(-1) for k in whole.grads])
    np.testing.assert_allclose(summed, expected, rtol=1e-12, atol=1e-14)


def test_an_empty_shard_contributes_zeros():
    model = _small_net()
    for g in model.grads.values():
        g[...] = np.nan  # whatever a layer left behind
    world = SummingWorld(1)
    parallel.GradientAllreduce(model, world)(0, 8)
    assert not world.flats[0].any()


def test_the_allreduce_writes_the_sum_back_into_every_gradient():
    model = _small_net()
    rng = np.random.default_rng(1)
    grads = {k: rng.standard_normal(g.shape) for k, g in model.grads.items()}
    for k, g in grads.items():
        model.grads[k][...] = g

    class Doubling(parallel.World):
        size = 2

        def allreduce_(self, flat):
            flat *= 2  # as if the other rank held the same gradients

    parallel.GradientAllreduce(model, Doubling())(4, 8)  # scale 1/2, then doubled
    for k, g in grads.items():
        np.testing.assert_allclose(model.grads[k], g, rtol=1e-15)


def test_blas_threads_share_the_cores():
    assert parallel.blas_threads(FakeWorld(0, 2), cores=2) == 1
    assert parallel.blas_threads(FakeWorld(0, 3), cores=2) == 1
    assert parallel.blas_threads(FakeWorld(0, 2), cores=16) == 8


def test_a_single_process_world_needs_no_mpi(monkeypatch):
    for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(v, raising=False)
    assert not parallel.launched_by_mpi()
    w = parallel.World()
    assert (w.rank, w.size, w.is_root) == (0, 1, True)
    np.testing.assert_array_equal(w.sum([1.0, 2.0]), [1.0, 2.0])


def test_processes_without_mpi4py_say_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpi(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    with pytest.raises(parallel.ParallelError, match=r"scratchnet\[mpi\]"):
        parallel.mpiexec()
    with pytest.raises(parallel.ParallelError, match=r"mpi4py"):
        parallel.MpiWorld()


def test_model_copies_are_independent():  # the replicas above must not share arrays
    a = _small_net()
    b = copy.deepcopy(a)
    b.params["fc.W"][...] = 0
    assert a.params["fc.W"].any()
