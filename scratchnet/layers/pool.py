"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class MaxPool2D(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("MaxPool2D is not written yet")
