"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class Dropout(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Dropout is not written yet")
