"""Correct, written otherwise: the entries drawn before any is perturbed, each moved by −h before +h, and the
loss difference as one function of the step. The checker must pass it (the contract fixes h and which
entries, not the order of the two evaluations)."""

import numpy as np

from scratchnet.gradcheck import relative_error
from scratchnet.layers import SoftmaxCrossEntropy


def lenet5_gradient_check(model, x, labels):
    loss = SoftmaxCrossEntropy(dtype=np.float64)
    loss.forward(model.forward(x), labels)
    model.backward(loss.backward())
    analytic = {name: grad.copy() for name, grad in model.grads.items()}

    rng = np.random.default_rng(0)
    chosen = {
        name: [tuple(int(rng.integers(size)) for size in param.shape) for _ in range(5)]
        for name, param in model.params.items()
    }

    def loss_at(param, i, old, step):
        param[i] = old + step
        value = loss.forward(model.forward(x), labels)
        param[i] = old
        return value

    h, errors = 1e-5, {}
    for name, indices in chosen.items():
        param = model.params[name]
        numerical = []
        for i in indices:
            old = param[i]
            minus = loss_at(param, i, old, -h)
            numerical.append((loss_at(param, i, old, h) - minus) / (2 * h))
        errors[name] = relative_error(analytic[name][tuple(zip(*indices, strict=True))], np.array(numerical))
    return errors
