"""Test-wide settings: tests marked ``gpu`` skip without a usable GPU, ``sim`` ones without a C++ compiler.

The device list and the layer-test contract live in :mod:`scratchnet.testing` (import them from there:
``from conftest import ...`` breaks under ``--import-mode=importlib``).
"""

from __future__ import annotations

from scratchnet.testing import DEVICES, skip_unavailable_devices

__all__ = ["DEVICES"]  # still importable from here by test files written before scratchnet.testing


def pytest_collection_modifyitems(config, items):
    skip_unavailable_devices(items)
