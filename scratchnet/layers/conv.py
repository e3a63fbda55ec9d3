"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class Conv2D(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Conv2D is not written yet")
