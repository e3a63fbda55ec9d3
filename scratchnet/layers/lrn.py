"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class LocalResponseNorm(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("LocalResponseNorm is not written yet")
