"""Solution of ../sgd_momentum.py."""

import numpy as np


def sgd_momentum_step(
    param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float
) -> tuple[np.ndarray, np.ndarray]:
    velocity = momentum * velocity + grad  # a running, decaying sum of gradients
    return param - lr * velocity, velocity  # the step uses the NEW velocity
