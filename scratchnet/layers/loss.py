"""Placeholder until the layer is written."""

from scratchnet.layers.base import Layer


class SoftmaxCrossEntropy(Layer):
    def __init__(self, *args, **kwargs):
        raise NotImplementedError("SoftmaxCrossEntropy is not written yet")
