"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class Linear(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Linear is not written yet")
