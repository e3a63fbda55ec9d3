"""Gradient checking: is a hand-written backward pass right? Compare it with finite differences.

For a layer y = layer(x), pick a fixed random G of y's shape and check the scalar function

    f(x) = Σ layer(x) ⊙ G,        so that  ∂f/∂x = backward(dy = G)   and  ∂f/∂weight = layer.grads["W"].

Each partial derivative is estimated with a centered difference, whose error is O(h²):

    ∂f/∂x_i ≈ (f(x + h e_i) − f(x − h e_i)) / 2h

and compared with the analytic gradient ``a`` through one number per gradient,

    error(a, n) = ‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-300)

which is scale-free and robust to entries near zero. In float64 with h = 1e-5, a correct layer gives
errors around 1e-10; a wrong one gives 1e-2 or more. Run checks in float64, on small inputs, away from
the kinks of ReLU (x = 0) and max-pool (ties): at a kink the finite difference straddles two slopes.

The learner-facing checker (``python -m scratchnet.gradcheck``) also prints CS231n's element-wise measure
max |a − n| / max(1e-8, |a| + |n|).
"""

from __future__ import annotations

import numpy as np

from scratchnet.layers import Dropout

TOLERANCE = 1e-7  # what the test-suite requires of every gradient in float64


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Centered-difference gradient of the scalar function ``f`` at the NumPy array ``x``.

    ``x`` is perturbed in place, one element at a time, and restored exactly.
    """
    grad = np.zeros(x.shape, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h
        f_minus = f(x)
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a, n) -> float:
    """‖a − n‖₂ / max(‖a‖₂ + ‖n‖₂, 1e-300): 0 for equal arrays, 1 when one of them is zero."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return float(np.linalg.norm(a - n) / max(np.linalg.norm(a) + np.linalg.norm(n), 1e-300))


def max_elementwise_error(a, n) -> float:
    """CS231n's measure: max over elements of |a − n| / max(1e-8, |a| + |n|)."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n)), initial=0.0))


def _replay(layer):
    """A Dropout layer draws a new mask at each training forward; rewinding it to where it stands now
    before each forward makes every evaluation of f use the same mask."""
    start = layer.rng_calls if isinstance(layer, Dropout) else None

    def reset():
        if start is not None:
            layer.rewind(start)

    return reset


def layer_gradients(
    layer, x, h: float = 1e-5, seed: int = 0, training: bool = True
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"x": (analytic, numerical), "W": (...), ...}`` for f(x) = Σ layer(x) ⊙ G, as NumPy arrays.

    ``training=False`` checks the evaluation forward and the backward that follows it with
    ``keep_for_backward=True`` (Dropout: the identity), as a saliency map uses them.
    """
    dev = layer.device
    x_host = np.array(dev.to_host(x) if dev.is_array(x) else x, dtype=layer.dtype)
    reset = _replay(layer)

    def forward(x_dev):
        reset()
        return layer.forward(x_dev, training=training, keep_for_backward=True)

    y = forward(dev.array(x_host))
    G = np.random.default_rng(seed).standard_normal(y.shape).astype(layer.dtype)
    dx = dev.to_host(layer.backward(dev.array(G)))
    analytic = {"x": dx} | {k: dev.to_host(g).copy() for k, g in layer.grads.items()}

    def f_of_input(xh):
        out = forward(dev.array(xh))
        return float(np.sum(dev.to_host(out).astype(np.float64) * G))

    result = {"x": (analytic["x"], numerical_gradient(f_of_input, x_host.copy(), h))}
    x_dev = dev.array(x_host)
    for name in layer.params:
        original = layer.params[name]
        p_host = dev.to_host(original).copy()

        def f_of_param(ph, name=name):
            layer.params[name] = dev.array(ph)
            out = forward(x_dev)
            return float(np.sum(dev.to_host(out).astype(np.float64) * G))

        result[name] = (analytic[name], numerical_gradient(f_of_param, p_host, h))
        layer.params[name] = original
    return result


def check_layer(layer, x, h: float = 1e-5, seed: int = 0, training: bool = True) -> dict[str, float]:
    """Relative error (see the module docstring) of dL/dx and of every parameter gradient of ``layer``.

    ``x`` is a NumPy array or an array on the layer's device. Returns e.g. ``{"x": 3e-11, "W": 2e-11,
    "b": 1e-12}``; in float64 every value should be below :data:`TOLERANCE`. ``training``: which forward
    to check (see :func:`layer_gradients`).
    """
    gradients = layer_gradients(layer, x, h, seed, training)
    return {k: relative_error(a, n) for k, (a, n) in gradients.items()}


def check_loss(loss, logits, labels, h: float = 1e-5) -> dict[str, float]:
    """Relative error of ``loss.backward()`` against finite differences of ``loss.forward(logits, labels)``.

    Returns ``{"logits": error}``.
    """
    dev = loss.device
    z = np.array(dev.to_host(logits) if dev.is_array(logits) else logits, dtype=loss.dtype)
    labels_dev = labels if dev.is_array(labels) else dev.array(labels)
    loss.forward(dev.array(z), labels_dev)
    analytic = dev.to_host(loss.backward())
    numeric = numerical_gradient(lambda zz: loss.forward(dev.array(zz), labels_dev), z.copy(), h)
    return {"logits": relative_error(analytic, numeric)}


if __name__ == "__main__":
    # ``python -m scratchnet.gradcheck lessons/exercises/linear_backward.py``: check a learner's backward pass
    # against finite differences and say what is wrong. The command line lives with the exercises, which build
    # on this module; only running it as the program reaches back to them.
    from scratchnet.exercises import main

    raise SystemExit(main())
