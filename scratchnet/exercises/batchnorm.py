"""Checker of the batch-normalisation exercise of lesson 14: the backward pass of BatchNorm in training mode.

The right answers are finite differences of the library's ``BatchNorm1D`` forward (training mode, batch
statistics); the known mistakes are computed from the same inputs. The learner writes
``batchnorm_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` for x (N, D).
"""

from __future__ import annotations

import numpy as np

from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays
from scratchnet.gradcheck import numerical_gradient


def _parts(a, eps=None):
    """x̂, s = sqrt(σ² + eps), n, dβ and dγ of the arguments, as the forward computes them (``eps``: another
    eps than the forward's)."""
    x, dy = a["x"], a["dy"]
    eps = a["eps"] if eps is None else eps
    mean, var = x.mean(axis=0), x.var(axis=0)
    s = np.sqrt(var + eps)
    x_hat = (x - mean) / s
    return x_hat, s, x.shape[0], dy.sum(axis=0), (dy * x_hat).sum(axis=0)


def _dx_without(a, mean_term=True, var_term=True, gamma=True, n=None, eps=None):
    """dx = γ/s (dy − [dβ/n] − [x̂ dγ/n]) with a correction or γ left out, or a wrong n or eps (then dγ is
    wrong the same way)."""
    x_hat, s, n_right, dbeta, dgamma = _parts(a, eps)
    n = n_right if n is None else n
    g = a["dy"] - (dbeta / n if mean_term else 0) - (x_hat * dgamma / n if var_term else 0)
    return {"dx": (a["gamma"] if gamma else 1) / s * g, "dgamma": dgamma}


def _unbiased(a):
    """The whole backward with σ² divided by n − 1 (np.var(ddof=1)), as if the forward normalised so."""
    x, dy, gamma, eps = a["x"], a["dy"], a["gamma"], a["eps"]
    n = x.shape[0]
    s = np.sqrt(x.var(axis=0, ddof=1) + eps)
    x_hat = (x - x.mean(axis=0)) / s
    dgamma = (dy * x_hat).sum(axis=0)
    dx = gamma / s * (dy - dy.sum(axis=0) / n - x_hat * dgamma / (n - 1))
    return {"dx": dx, "dgamma": dgamma}


def _cases(rng):
    from scratchnet.layers import BatchNorm1D

    N, D = 6, 4
    # Feature 3 varies little (σ² ≈ 4e-3 against eps = 1e-5): a forgotten eps shows there.
    x = rng.standard_normal((N, D)) * np.array([1.0, 2.5, 0.5, 0.06]) + np.array([0.5, -1.0, 2.0, 0.3])
    dy = rng.standard_normal((N, D))
    gamma = rng.uniform(0.5, 2.0, D)
    layer = BatchNorm1D(D, dtype=np.float64)
    layer.params["gamma"][...] = gamma
    layer.params["beta"][...] = rng.standard_normal(D)

    def f(_):  # finite differences perturb x or a parameter in place; f reads them from there
        return float(np.sum(layer.forward(x, training=True) * dy))

    correct = {
        "dx": numerical_gradient(f, x),
        "dgamma": numerical_gradient(f, layer.params["gamma"]),
        "dbeta": numerical_gradient(f, layer.params["beta"]),
    }
    args = {"dy": dy, "x": x, "gamma": gamma, "eps": 1e-5}
    x_hat, s, _, dbeta, dgamma = _parts(args)
    terms = {  # dx's three terms, each times γ / s
        "dx": {
            "the term dy · γ/s": gamma / s * dy,
            "the mean term (Σ_n dy / N) · γ/s": -gamma / s * dbeta / N,
            "the variance term (x̂ Σ_n dy x̂ / N) · γ/s": -gamma / s * x_hat * dgamma / N,
        }
    }
    description = f"x ({N}, {D}) with a nearly constant feature, eps 1e-5"
    return [Case(description, args, correct, factors={"N": N}, terms=terms)]


BATCHNORM = ArraySpec(
    "training mode, per feature d over the N rows: x̂ = (x − μ) / sqrt(σ² + eps) with the batch mean μ and "
    "the biased variance σ² (divided by N), y = γ x̂ + β",
    ("dx", "dgamma", "dbeta"),
    {
        "dx": "dx = γ / sqrt(σ² + eps) · (dy − Σ_n dy / N − x̂ · Σ_n (dy · x̂) / N)",
        "dgamma": "dγ = Σ_n dy · x̂",
        "dbeta": "dβ = Σ_n dy",
    },
    _cases,
    (
        Mistake(
            "your dx treats μ and σ² as constants: they are computed from the batch, so every x also moves "
            "them; add the gradient that flows back through μ and through σ²",
            lambda a: _dx_without(a, mean_term=False, var_term=False),
        ),
        Mistake(
            "your dx misses the path through the mean μ: the result must sum to zero over the batch",
            lambda a: _dx_without(a, mean_term=False),
        ),
        Mistake(
            "your dx misses the path through the variance σ² (the term along x̂)",
            lambda a: _dx_without(a, var_term=False),
        ),
        Mistake(
            "your corrections use sums where means are needed (divide Σ dy and Σ dy·x̂ by N)",
            lambda a: _dx_without(a, n=1),
        ),
        Mistake(
            "your dx misses the factor γ: dL/dx̂ = γ · dy",
            lambda a: _dx_without(a, gamma=False),
        ),
        Mistake(
            "you divide by sqrt(σ²) without eps: the forward divides by sqrt(σ² + eps), and for a feature "
            "that barely varies the difference is large",
            lambda a: _dx_without(a, eps=0.0),
        ),
        Mistake(
            "you used the unbiased variance (divided by N − 1): training normalises with the biased one "
            "(divided by N); only the running variance uses N − 1",
            _unbiased,
        ),
        Mistake(
            "your dγ is Σ dy: it must weight each dy by the x̂ it multiplied",
            lambda a: {"dgamma": a["dy"].sum(axis=0)},
        ),
    ),
)


@register("batchnorm-backward", names=("batchnorm_backward",), title="BatchNorm's backward in training mode")
def check_batchnorm_backward(report, batchnorm_backward):
    check_arrays(report, BATCHNORM, batchnorm_backward)
