"""Solution of ../lenet5_gradient_check.py."""

import numpy as np

from scratchnet.gradcheck import relative_error
from scratchnet.layers import SoftmaxCrossEntropy


def lenet5_gradient_check(model, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    entries, h = 5, 1e-5  # entries checked per parameter; the step of the centered difference
    loss = SoftmaxCrossEntropy(dtype=np.float64)
    loss.forward(model.forward(x), labels)
    model.backward(loss.backward())
    analytic = {name: grad.copy() for name, grad in model.grads.items()}  # before any perturbation

    def loss_now() -> float:
        return loss.forward(model.forward(x), labels)

    rng = np.random.default_rng(0)
    errors = {}
    for name, param in model.params.items():  # the model's own arrays: changing an entry changes the model
        a, n = [], []
        for _ in range(entries):
            i = tuple(int(rng.integers(size)) for size in param.shape)
            old = param[i]
            param[i] = old + h
            plus = loss_now()
            param[i] = old - h
            minus = loss_now()
            param[i] = old  # restore exactly
            n.append((plus - minus) / (2 * h))
            a.append(analytic[name][i])
        errors[name] = relative_error(np.array(a), np.array(n))
    return errors
