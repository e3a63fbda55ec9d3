"""Test-wide settings: tests marked ``gpu`` skip without a usable GPU, ``sim`` ones without a C++ compiler."""

from __future__ import annotations

import functools

import pytest

from scratchnet.errors import DeviceError


@functools.cache
def _unavailable(device: str) -> str | None:
    """Why ``device`` cannot be used here (None when it can)."""
    from scratchnet.device import Device

    try:
        Device(device)
    except DeviceError as e:
        return str(e)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        for device in ("gpu", "sim"):
            if item.get_closest_marker(device) is not None:
                reason = _unavailable(device)
                if reason is not None:
                    item.add_marker(pytest.mark.skip(reason=f"no {device} device: {reason}"))


# Every device a layer runs on; parametrise layer tests with ``@pytest.mark.parametrize("device", DEVICES)``.
DEVICES = [
    "cpu",
    pytest.param("sim", marks=pytest.mark.sim),
    pytest.param("gpu", marks=pytest.mark.gpu),
]
