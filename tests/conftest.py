"""Test-wide settings: tests marked ``gpu`` skip without a usable GPU, ``sim`` ones without a C++ compiler;
tests marked ``session_end`` run last; tests marked ``lesson_seeds`` run only when ``-m`` names them; BLAS
runs one thread.

The device list and the layer-test contract live in :mod:`scratchnet.testing` (import them from there:
``from conftest import ...`` breaks under ``--import-mode=importlib``).
"""

from __future__ import annotations

import pytest
import threadpoolctl  # the dev extra brings it (through mpi)

from scratchnet.testing import DEVICES, skip_unavailable_devices

__all__ = ["DEVICES"]  # still importable from here by test files written before scratchnet.testing


@pytest.fixture(autouse=True, scope="session")
def one_blas_thread():
    """The tests compare numbers and time nothing: one BLAS thread in the test process gives the same speed
    on a laptop and a busy CI machine, and leaves the other cores to the processes some tests start (which
    choose their own: data parallelism shares the cores between its ranks)."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        yield


def pytest_collection_modifyitems(config, items):
    skip_unavailable_devices(items)
    # The lessons on other seeds and thread counts take half an hour: only a -m naming them selects them.
    if "lesson_seeds" not in (config.getoption("markexpr") or ""):
        deselected = [item for item in items if item.get_closest_marker("lesson_seeds")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("lesson_seeds")]
    items.sort(key=lambda item: item.get_closest_marker("session_end") is not None)  # stable: order kept
