"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class ReLU(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("ReLU is not written yet")
