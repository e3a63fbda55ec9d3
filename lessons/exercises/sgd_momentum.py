"""One step of stochastic gradient descent with momentum.

The velocity accumulates gradients, decaying by the momentum μ at every step; the parameter moves against
it, scaled by the learning rate η. Follow PyTorch's convention (torch.optim.SGD, dampening 0), which
scratchnet.optim.SGD follows too: the velocity is a running sum of gradients, not of steps.

Return the new (param, velocity); do not modify the arrays you are given.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/sgd_momentum.py
    python -m scratchnet.gradcheck lessons/exercises/sgd_momentum.py --hint   # + formulas
"""

import numpy as np


def sgd_momentum_step(
    param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float
) -> tuple[np.ndarray, np.ndarray]:
    """(new param, new velocity), each of param's shape."""
    raise NotImplementedError("write sgd_momentum_step, then run the check")
