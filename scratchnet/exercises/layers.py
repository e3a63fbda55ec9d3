"""Checkers of the layer exercises (lessons 02-06 and ``lessons/exercises/*.py``): the right answers come from
finite differences of the library's forward passes; the known mistakes are computed from the same inputs."""

from __future__ import annotations

import numpy as np

from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays
from scratchnet.gradcheck import numerical_gradient


# --- the right answers: finite differences of the library's forward ----------------------------------------
def _layer_gradients(layer, x: np.ndarray, dy: np.ndarray) -> dict[str, np.ndarray]:
    """Finite differences of f = Σ layer(x) ⊙ dy (so that ∂f/∂y = dy): ``{"dx": ..., "dweight": ...}``."""

    def f(_):  # numerical_gradient perturbs x or a parameter array in place; f reads them from there
        return float(np.sum(layer.forward(x, training=True) * dy))

    gradients = {"dx": numerical_gradient(f, x)}
    long_names = {"W": "dweight", "b": "dbias"}
    for name, param in layer.params.items():
        gradients[long_names[name]] = numerical_gradient(f, param)
    return gradients


def _set_params(layer, weight: np.ndarray, bias: np.ndarray) -> None:
    layer.params["W"][...] = weight  # in place: the layer keeps its own arrays
    layer.params["b"][...] = bias


def _pick_one_per_element(terms: np.ndarray, yours: np.ndarray, correct: np.ndarray) -> bool:
    """``=`` instead of ``+=``: where yours is wrong, is each value ONE of the terms the right answer sums
    (terms: the right answer's shape plus one axis of contributions), or a partial sum of them?"""
    wrong = ~np.isclose(yours, correct, rtol=1e-6, atol=1e-9)
    if not wrong.any():
        return False
    candidates = np.concatenate([terms, np.cumsum(terms, axis=-1), np.cumsum(terms[..., ::-1], axis=-1)], -1)
    return bool(np.all(np.isclose(candidates, yours[..., None], rtol=1e-6, atol=1e-9).any(axis=-1)[wrong]))


# --- ReLU --------------------------------------------------------------------------------------------------
def _relu_cases(rng):
    from scratchnet.layers import ReLU

    # |x| >= 0.1: far from the kink at 0, where a finite difference would straddle two slopes.
    x = rng.uniform(0.1, 1.0, size=(4, 6)) * rng.choice([-1.0, 1.0], size=(4, 6))
    dy = rng.standard_normal(x.shape)
    correct = _layer_gradients(ReLU(dtype=np.float64), x, dy)
    return [Case("x (4, 6), |x| >= 0.1", {"dy": dy, "x": x}, correct)]


RELU = ArraySpec(
    "y = max(0, x), x and y of any shape",
    ("dx",),
    {"dx": "dx = dy * (x > 0): the gradient passes where the input was positive, is zero elsewhere"},
    _relu_cases,
    (
        Mistake(
            "you masked with the sign of dy; the mask comes from the forward's input x",
            lambda a: {"dx": a["dy"] * (a["dy"] > 0)},
        ),
        Mistake("you passed dy through unchanged; ReLU blocks it where x < 0", lambda a: {"dx": a["dy"]}),
        Mistake(
            "you returned the mask alone; the chain rule multiplies it by the upstream gradient dy",
            lambda a: {"dx": (a["x"] > 0).astype(np.float64)},
        ),
    ),
)


@register("relu-backward", names=("relu_backward",), title="ReLU backward")
def check_relu_backward(report, relu_backward):
    check_arrays(report, RELU, relu_backward)


# --- Linear ------------------------------------------------------------------------------------------------
def _linear_cases(rng):
    from scratchnet.layers import Linear

    N, D, M = 4, 5, 3  # all different, so that a transposed or unsummed gradient has a telling shape
    x, weight, bias = rng.standard_normal((N, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    dy = rng.standard_normal((N, M))
    layer = Linear(D, M, dtype=np.float64, seed=0)
    _set_params(layer, weight, bias)
    correct = _layer_gradients(layer, x, dy)
    description = f"x ({N}, {D}), weight ({D}, {M}), bias ({M},)"
    return [Case(description, {"dy": dy, "x": x, "weight": weight}, correct, {"N": N})]


LINEAR = ArraySpec(
    "y = x @ weight + bias: x (N, D), weight (D, M), bias (M,), y and dy (N, M)",
    ("dx", "dweight", "dbias"),
    {
        "dx": "dx = dy @ weight.T, shape (N, D)",
        "dweight": "dweight = x.T @ dy, shape (D, M): a sum over the batch of the outer products x_n dy_nᵀ",
        "dbias": "dbias = dy.sum(axis=0), shape (M,): bias is added to every row, so its gradient sums them",
    },
    _linear_cases,
    (
        Mistake(
            "`dy @ weight` multiplies dy (N, M) by weight (D, M): the inner sizes M and D differ. dx has x's "
            "shape (N, D): which arrangement of dy and weight gives that?",
            lambda a: {"dx": a["dy"] @ a["weight"]},
        ),
        Mistake(
            "dbias is the MEAN of dy's rows: yours = correct / N. bias is added to every row, so every row "
            "adds its dy to the gradient: nothing divides by N here",
            lambda a: {"dbias": a["dy"].mean(axis=0)},
        ),
    ),
)


@register("linear-backward", names=("linear_backward",), title="Linear backward: dx, dweight, dbias")
def check_linear_backward(report, linear_backward):
    check_arrays(report, LINEAR, linear_backward)


# --- softmax cross-entropy ---------------------------------------------------------------------------------
def _softmax(z, axis=1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_cases(rng):
    from scratchnet.layers import SoftmaxCrossEntropy

    N, K = 5, 4
    labels = rng.permutation(np.arange(N) % K).astype(np.int64)  # every class at least once
    loss = SoftmaxCrossEntropy(dtype=np.float64)
    small = rng.standard_normal((N, K))
    # Large logits: exp(z) overflows float64 above z ≈ 709, so only a softmax that subtracts the row
    # maximum survives. The right answer is the library's backward (finite differences agree with it
    # on the small case; at z ≈ 1000 they would lose digits to rounding).
    large = 1000.0 + 3.0 * rng.standard_normal((N, K))
    cases = [
        Case(
            f"logits ({N}, {K}) ~ N(0, 1), labels {labels.tolist()}",
            {"logits": small, "labels": labels},
            {"dlogits": numerical_gradient(lambda z: loss.forward(z, labels), small.copy())},
            {"N": N},
        ),
    ]
    loss.forward(large, labels)
    cases.append(
        Case(
            f"LARGE logits ({N}, {K}) ~ 1000 + 3 N(0, 1)",
            {"logits": large, "labels": labels},
            {"dlogits": np.asarray(loss.backward(), dtype=np.float64)},
            {"N": N},
        )
    )
    return cases


def _one_hot(labels, K):
    return np.eye(K)[labels]


SOFTMAX = ArraySpec(
    "L = (1/N) Σ_n −log softmax(z_n)[labels_n], softmax over each row of the logits z (N, K)",
    ("dlogits",),
    {"dlogits": "dlogits = (softmax(z) − onehot(labels)) / N: the loss is a MEAN over the batch"},
    _softmax_cases,
    (
        Mistake(
            "the 1/N of the batch mean is missing: yours = N × correct",
            lambda a: {"dlogits": _softmax(a["logits"]) - _one_hot(a["labels"], a["logits"].shape[1])},
        ),
        Mistake(
            "NaN/inf with large logits: exp(z) overflows float64 for z above about 709. The softmax of a row "
            "does not change when a constant is subtracted from the whole row: choose that constant so that "
            "exp never sees a large number",
            lambda a: {
                "dlogits": (
                    np.exp(a["logits"]) / np.exp(a["logits"]).sum(axis=1, keepdims=True)
                    - _one_hot(a["labels"], a["logits"].shape[1])
                )
                / len(a["labels"])
            },
        ),
        Mistake(
            "softmax over the wrong axis: each ROW (one example's K class scores, axis=1) must sum to 1; "
            "yours normalises each column (axis=0)",
            lambda a: {
                "dlogits": (_softmax(a["logits"], axis=0) - _one_hot(a["labels"], a["logits"].shape[1]))
                / len(a["labels"])
            },
        ),
        Mistake(
            "`p[:, labels] -= 1` subtracts 1 in EVERY row at every label's column; the true class of row n "
            "is "
            "one element, p[n, labels[n]]: index the rows with np.arange(N) alongside labels",
            lambda a: {"dlogits": _fancy_index_mistake(a["logits"], a["labels"])},
        ),
    ),
)


def _fancy_index_mistake(logits, labels):
    p = _softmax(logits)
    p[:, labels] -= 1
    return p / len(labels)


@register(
    "softmax-cross-entropy-backward",
    names=("softmax_cross_entropy_backward",),
    title="softmax cross-entropy backward: dlogits",
)
def check_softmax_cross_entropy_backward(report, softmax_cross_entropy_backward):
    check_arrays(report, SOFTMAX, softmax_cross_entropy_backward)


# --- max-pooling -------------------------------------------------------------------------------------------
def _maxpool_cases(rng):
    from scratchnet.layers import MaxPool2D

    cases = []
    for kernel_size, stride, size, what in (
        (2, 2, 6, "windows side by side"),
        (3, 2, 7, "OVERLAPPING windows"),
    ):
        shape = (2, 2, size, size)
        # Distinct values at least 0.02 apart: no ties, and a perturbation of 1e-5 never changes a maximum.
        x = rng.permutation(np.prod(shape)).reshape(shape) * (4.0 / np.prod(shape)) - 2.0
        layer = MaxPool2D(kernel_size, stride, dtype=np.float64)
        dy = rng.standard_normal(layer.output_shape(shape))
        args = {"dy": dy, "x": x, "kernel_size": kernel_size, "stride": stride}
        description = f"x {shape}, kernel {kernel_size}, stride {stride} ({what})"
        cases.append(Case(description, args, _layer_gradients(layer, x, dy)))
    return cases


def _maxpool_terms(a) -> np.ndarray:
    """terms[n, c, h, w, window]: the dy each pooling window routes to input (h, w) (0 if none)."""
    dy, x, K, S = a["dy"], a["x"], a["kernel_size"], a["stride"]
    N, C, OH, OW = dy.shape
    terms = np.zeros((*x.shape, OH * OW))
    n, c = np.indices((N, C))
    for oh in range(OH):
        for ow in range(OW):
            window = x[:, :, oh * S : oh * S + K, ow * S : ow * S + K].reshape(N, C, -1)
            kh, kw = np.unravel_index(window.argmax(axis=2), (K, K))
            terms[n, c, oh * S + kh, ow * S + kw, oh * OW + ow] = dy[:, :, oh, ow]
    return terms


MAXPOOL = ArraySpec(
    "y[n, c, oh, ow] = max of x[n, c, oh*S : oh*S+K, ow*S : ow*S+K], x (N, C, H, W), y and dy (N, C, OH, OW)",
    ("dx",),
    {
        "dx": "each dy[n, c, oh, ow] goes to the position of its window's maximum (the first on ties); where "
        "windows overlap, an input can collect several: dx[...] += dy[n, c, oh, ow]"
    },
    _maxpool_cases,
    (
        Mistake(
            "`=` instead of `+=`: an input that is the maximum of several OVERLAPPING windows must receive "
            "the "
            "SUM of their gradients; yours keeps only one of them",
            test=lambda a, name, yours, correct: _pick_one_per_element(_maxpool_terms(a), yours, correct),
        ),
        Mistake(
            "gradient reached inputs that are the maximum of no window: route each dy only to its window's "
            "argmax",
            test=lambda a, name, yours, correct: bool(np.any(yours[~_maxpool_terms(a).any(axis=-1)] != 0)),
        ),
    ),
)


@register("maxpool-backward", names=("maxpool_backward",), title="max-pooling backward, overlapping windows")
def check_maxpool_backward(report, maxpool_backward):
    check_arrays(report, MAXPOOL, maxpool_backward)


# --- convolution -------------------------------------------------------------------------------------------
def _conv_cases(rng):
    from scratchnet.layers import Conv2D

    cases = []
    for S, P, size in ((1, 1, 5), (2, 0, 7)):
        N, C, F, K = 2, 3, 4, 3
        x = rng.standard_normal((N, C, size, size))
        weight, bias = rng.standard_normal((F, C, K, K)), rng.standard_normal(F)
        layer = Conv2D(C, F, K, stride=S, padding=P, dtype=np.float64, seed=0)
        _set_params(layer, weight, bias)
        dy = rng.standard_normal(layer.output_shape(x.shape))
        _, _, OH, OW = dy.shape
        args = {"dy": dy, "x": x, "weight": weight, "stride": S, "padding": P}
        description = f"x {x.shape}, weight {weight.shape}, stride {S}, padding {P}"
        cases.append(Case(description, args, _layer_gradients(layer, x, dy), {"N·OH·OW": N * OH * OW}))
    return cases


def _conv_terms(a, name: str) -> np.ndarray:
    """The terms whose sum is dx (dx.shape + (F·OH·OW,)) or dweight (dweight.shape + (N·OH·OW,))."""
    dy, x, weight, S, P = a["dy"], a["x"], a["weight"], a["stride"], a["padding"]
    N, F, OH, OW = dy.shape
    _, C, KH, KW = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    shape = x_pad.shape if name == "dx" else weight.shape
    terms = np.zeros((*shape, (F if name == "dx" else N) * OH * OW))
    for oh in range(OH):
        for ow in range(OW):
            rows, cols = slice(oh * S, oh * S + KH), slice(ow * S, ow * S + KW)
            if name == "dx":  # (N, F) x (F, C, KH, KW) -> one term per filter
                part = np.einsum("nf,fcuv->ncuvf", dy[:, :, oh, ow], weight)
                terms[:, :, rows, cols, (oh * OW + ow) * F : (oh * OW + ow + 1) * F] = part
            else:  # one term per example
                part = np.einsum("nf,ncuv->fcuvn", dy[:, :, oh, ow], x_pad[:, :, rows, cols])
                terms[..., (oh * OW + ow) * N : (oh * OW + ow + 1) * N] = part
    if name == "dx":
        terms = terms[:, :, P : P + x.shape[2], P : P + x.shape[3]]
    return terms


def _conv_dx(dy, weight, x_shape, S, P, crop=True):
    """dx by the scatter loop; ``crop=False``: the gradient of the padded input."""
    N, C, H, W = x_shape
    _, _, KH, KW = weight.shape
    dx_pad = np.zeros((N, C, H + 2 * P, W + 2 * P))
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            dx_pad[:, :, oh * S : oh * S + KH, ow * S : ow * S + KW] += np.einsum(
                "nf,fcuv->ncuv", dy[:, :, oh, ow], weight
            )
    return dx_pad[:, :, P : P + H, P : P + W] if crop else dx_pad


CONV = ArraySpec(
    "y[n, f, oh, ow] = bias[f] + Σ_{c,kh,kw} weight[f, c, kh, kw] x_pad[n, c, oh*S+kh, ow*S+kw], "
    "x (N, C, H, W), weight (F, C, KH, KW), y and dy (N, F, OH, OW)",
    ("dx", "dweight", "dbias"),
    {
        "dx": "dx_pad[n, c, oh*S+kh, ow*S+kw] += Σ_f dy[n, f, oh, ow] weight[f, c, kh, kw], then crop the "
        "padding",
        "dweight": "dweight[f, c, kh, kw] = Σ_{n,oh,ow} dy[n, f, oh, ow] x_pad[n, c, oh*S+kh, ow*S+kw]",
        "dbias": "dbias[f] = Σ_{n,oh,ow} dy[n, f, oh, ow]",
    },
    _conv_cases,
    (
        Mistake(
            "dx is the gradient of the PADDED input; crop the padding off",
            lambda a: {
                "dx": _conv_dx(a["dy"], a["weight"], a["x"].shape, a["stride"], a["padding"], crop=False)
            },
        ),
        Mistake(
            "the kernel is flipped (rotated 180°) inside dx. In the scatter view each window sends "
            "dy × weight back to the pixels it read, unflipped; in the full-convolution view it is dy "
            "correlated with the FLIPPED kernel, so flipping there and again here undoes it",
            lambda a: {
                "dx": _conv_dx(a["dy"], a["weight"][..., ::-1, ::-1], a["x"].shape, a["stride"], a["padding"])
            },
        ),
        Mistake(
            "dbias is a MEAN of dy over the N·OH·OW positions: yours = correct / (N·OH·OW). The bias is "
            "added "
            "at every one of those positions and each adds its own dy: a sum, with no 1/(N·OH·OW)",
            lambda a: {"dbias": a["dy"].mean(axis=(0, 2, 3))},
        ),
        Mistake(
            "`=` instead of `+=` in dx: windows (and filters) that read the same input pixel must ADD their "
            "contributions; yours keeps only one of them per pixel",
            test=lambda a, name, yours, correct: (
                name == "dx" and _pick_one_per_element(_conv_terms(a, "dx"), yours, correct)
            ),
        ),
        Mistake(
            "`=` instead of `+=` in dweight: every example and every output position adds to each weight's "
            "gradient; yours keeps only one of them",
            test=lambda a, name, yours, correct: (
                name == "dweight" and _pick_one_per_element(_conv_terms(a, "dweight"), yours, correct)
            ),
        ),
    ),
)


@register("conv2d-backward", names=("conv2d_backward",), title="convolution backward: dx, dweight, dbias")
def check_conv2d_backward(report, conv2d_backward):
    check_arrays(report, CONV, conv2d_backward)


# --- forward passes of lesson 02 ---------------------------------------------------------------------------
def _linear_forward_cases(rng):
    N, D, M = 4, 5, 3
    x, weight, bias = rng.standard_normal((N, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    args = {"x": x, "weight": weight, "bias": bias}
    return [Case(f"x ({N}, {D}), weight ({D}, {M}), bias ({M},)", args, {"y": x @ weight + bias})]


LINEAR_FORWARD = ArraySpec(
    "y[n, m] = Σ_d x[n, d] weight[d, m] + bias[m]: x (N, D), weight (D, M), bias (M,), y (N, M)",
    ("y",),
    {"y": "y = x @ weight + bias (bias broadcasts over the rows)"},
    _linear_forward_cases,
    (
        Mistake("the bias is missing", lambda a: {"y": a["x"] @ a["weight"]}),
        Mistake(
            "`x * weight` multiplies element by element; y needs the sum over d of x[n, d] weight[d, m]: "
            "a matrix product",
            lambda a: {"y": a["x"] * a["weight"] + a["bias"]},
        ),
    ),
)


@register("linear-forward", names=("linear_forward",), title="Linear forward")
def check_linear_forward(report, linear_forward):
    check_arrays(report, LINEAR_FORWARD, linear_forward)


def _loss(logits, labels, axis=1, shift=True):
    z = logits - logits.max(axis=axis, keepdims=True) if shift else logits
    log_p = z - np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return np.asarray(-log_p[np.arange(len(labels)), labels].mean())


def _loss_cases(rng):
    N, K = 5, 4
    labels = rng.permutation(np.arange(N) % K).astype(np.int64)
    small, large = rng.standard_normal((N, K)), 1000.0 + 3.0 * rng.standard_normal((N, K))
    return [
        Case(
            f"logits ({N}, {K}) ~ N(0, 1), labels {labels.tolist()}",
            {"logits": small, "labels": labels},
            {"loss": _loss(small, labels)},
            {"N": N},
        ),
        Case(
            f"LARGE logits ({N}, {K}) ~ 1000 + 3 N(0, 1)",
            {"logits": large, "labels": labels},
            {"loss": _loss(large, labels)},
            {"N": N},
        ),
    ]


LOSS_FORWARD = ArraySpec(
    "L = (1/N) Σ_n −log p[n, labels[n]], p = softmax of each row of the logits (N, K); L a number",
    ("loss",),
    {"loss": "L = mean over n of log Σ_k exp(z[n, k] − m_n) − (z[n, labels[n]] − m_n), m_n = max_k z[n, k]"},
    _loss_cases,
    (
        Mistake(
            "a sum over the batch where the loss is a MEAN: yours = N × correct",
            lambda a: {"loss": _loss(a["logits"], a["labels"]) * len(a["labels"])},
        ),
        Mistake(
            "NaN/inf with large logits: exp(z) overflows float64 for z above about 709. The softmax of a row "
            "does not change when a constant is subtracted from the whole row: choose that constant so that "
            "exp never sees a large number",
            lambda a: {"loss": _loss(a["logits"], a["labels"], shift=False)},
        ),
        Mistake(
            "softmax over the wrong axis: each ROW (axis=1, one example's K scores) must sum to 1",
            lambda a: {"loss": _loss(a["logits"], a["labels"], axis=0)},
        ),
        Mistake(
            "the sign: the loss is MINUS the log-probability of the true class (a positive number)",
            lambda a: {"loss": -_loss(a["logits"], a["labels"])},
        ),
    ),
)


def _as_array(function):
    """The loss is a Python float or a 0-d array: compare it as a float64 array."""

    def wrapped(*args):
        return np.asarray(function(*args), dtype=np.float64)

    return wrapped


@register(
    "softmax-cross-entropy-forward", names=("softmax_cross_entropy",), title="softmax cross-entropy loss"
)
def check_softmax_cross_entropy(report, softmax_cross_entropy):
    check_arrays(report, LOSS_FORWARD, _as_array(softmax_cross_entropy))
