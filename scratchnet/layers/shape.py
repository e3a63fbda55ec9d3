"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class Flatten(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Flatten is not written yet")
