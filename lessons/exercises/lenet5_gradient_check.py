"""A gradient check of a whole network: LeNet-5 in float64.

Write a function that checks every parameter gradient of a model against finite differences of the loss,
and returns one error per parameter. The checker runs it on a correct LeNet-5 (every error must be tiny)
and on one with a planted bug in one layer's backward (exactly that parameter must stand out).

    model: scratchnet.models.LeNet5(dtype=np.float64, input_grad=True); model.forward(x) -> logits (N, 10),
           model.backward(dlogits) fills model.grads; model.params and model.grads: {"conv1.W": array, ...}
    loss:  scratchnet.layers.SoftmaxCrossEntropy(dtype=np.float64); loss.forward(logits, labels) -> L,
           loss.backward() -> dlogits
    error: scratchnet.gradcheck.relative_error(analytic, numerical)

LeNet-5 has 61,706 parameters: check 5 randomly chosen entries of each, not all, with the step h = 1e-5.
So that every right check gives the same numbers, and the checker can say where yours differs, draw the
entries this way: one rng = np.random.default_rng(0) for the whole check, the parameters in model.params
order, 5 entries of each, each entry's index tuple(int(rng.integers(size)) for size in param.shape).
Leave every parameter as you found it.

Check it from the repository root:

    python -m scratchnet.gradcheck lessons/exercises/lenet5_gradient_check.py
    python -m scratchnet.gradcheck lessons/exercises/lenet5_gradient_check.py --hint   # + formulas
"""

import numpy as np


def lenet5_gradient_check(model, x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{parameter name: relative error between backward's gradient and finite differences}."""
    raise NotImplementedError("write lenet5_gradient_check, then run the check")
