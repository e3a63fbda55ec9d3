"""Placeholder for the CUDA-on-CPU simulator."""

from scratchnet.errors import DeviceError


def check_supported() -> None:
    raise DeviceError("the simulator is not written yet")


def load_module(source, name_expressions, filename=None):
    raise DeviceError("the simulator is not written yet")
