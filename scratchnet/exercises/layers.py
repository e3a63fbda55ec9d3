"""Checkers of the layer exercises (lessons 02-06 and ``lessons/exercises/*.py``): the right answers come from
finite differences of the library's forward passes; the known mistakes are computed from the same inputs."""

from __future__ import annotations

import numpy as np

from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays
from scratchnet.gradcheck import numerical_gradient
from scratchnet.layers.base import window_output_hw


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
    (terms: the right answer's shape plus one axis of contributions), or a partial sum of them? Only an
    element with two contributions or more can lose one: a wrong element with one is another mistake (a
    loop one short that skips it)."""
    wrong = ~np.isclose(yours, correct, rtol=1e-6, atol=1e-9)
    if not wrong.any() or np.any(wrong & (np.count_nonzero(terms, axis=-1) < 2)):
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
    # The kink probe: some x exactly 0, judged by the lesson's convention (no gradient at 0), which the
    # library's backward follows; finite differences would straddle the two slopes there.
    at_kink = x.copy()
    at_kink[:, ::3] = 0.0
    relu = ReLU(dtype=np.float64)
    relu.forward(at_kink, training=True)
    kink = Case(
        "x (4, 6) with every third column exactly 0",
        {"dy": dy, "x": at_kink},
        {"dx": relu.backward(dy)},
        regions={"where x = 0, ReLU's kink (the lesson's convention: no gradient there)": at_kink == 0},
    )
    return [Case("x (4, 6), |x| >= 0.1", {"dy": dy, "x": x}, correct), kink]


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
    terms = {"dlogits": {"the −1 at each row's label (÷ N)": -np.eye(K)[labels] / N}}
    cases = [
        Case(
            f"logits ({N}, {K}) ~ N(0, 1), labels {labels.tolist()}",
            {"logits": small, "labels": labels},
            {"dlogits": numerical_gradient(lambda z: loss.forward(z, labels), small.copy())},
            {"N": N},
            terms=terms,
        ),
    ]

    def by_backward(description, logits, regions=None):  # the right answer from the library's backward
        loss.forward(logits, labels)
        dlogits = np.asarray(loss.backward(), dtype=np.float64)
        args = {"logits": logits, "labels": labels}
        return Case(description, args, {"dlogits": dlogits}, {"N": N}, regions or {}, terms)

    cases.append(by_backward(f"LARGE logits ({N}, {K}) ~ 1000 + 3 N(0, 1)", large))
    # Row maxima 1000 apart: exp underflows to 0 below about −745, so a softmax shifted by the batch's
    # largest logit instead of each row's gives 0/0 in the rows that lie far below it.
    apart = small + 1000.0 * (np.arange(N) % 2 == 0)[:, None]
    low_rows = np.broadcast_to(apart.max(axis=1, keepdims=True) < 500, apart.shape)
    cases.append(
        by_backward(
            f"logits ({N}, {K}) whose rows lie near 1000 (rows 0, 2, 4) and near 0 (rows 1, 3)",
            apart,
            {"in the rows whose largest logit lies far below the batch's largest (rows 1, 3)": low_rows},
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
    description = f"x ({N}, {D}), weight ({D}, {M}), bias ({M},)"
    return [Case(description, args, {"y": x @ weight + bias}, terms={"y": {"the bias": bias}})]


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


# --- convolution forward: the loops, im2col, col2im (lessons 04 and 05) -----------------------------------
def _conv_shape_cases(rng, make_args):
    """Two settings where index mistakes show: stride 1 with padding, stride 2 without."""
    cases = []
    for S, P, size in ((1, 1, 5), (2, 0, 7)):
        N, C, F, K = 2, 3, 4, 3
        x = rng.standard_normal((N, C, size, size))
        cases.append(make_args(rng, x, F, K, S, P))
    return cases


def _im2col_reference(x, KH, KW, S, P, batch_first=True):
    """cols_batch_first[(c, kh, kw), (n, oh, ow)] = x_pad[n, c, oh*S + kh, ow*S + kw]: (C·KH·KW, N·OH·OW)."""
    N, C, H, W = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    OH, OW = window_output_hw((H, W), (KH, KW), S, P)
    cols = np.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for kh in range(KH):
        for kw in range(KW):
            window = x_pad[
                :, :, kh : kh + S * (OH - 1) + 1 : S, kw : kw + S * (OW - 1) + 1 : S
            ]  # (N, C, OH, OW)
            cols[:, kh, kw] = window.transpose(1, 0, 2, 3)
    if not batch_first:
        cols = cols.transpose(0, 1, 2, 4, 5, 3)  # columns ordered (oh, ow, n)
    return cols.reshape(C * KH * KW, -1)


def _im2col_case(rng, x, F, K, S, P):
    args = {"x": x, "KH": K, "KW": K, "S": S, "P": P}
    return Case(
        f"x {x.shape}, {K}×{K} window, stride {S}, padding {P}",
        args,
        {"cols_batch_first": _im2col_reference(x, K, K, S, P)},
    )


IM2COL = ArraySpec(
    "cols_batch_first[(c, kh, kw), (n, oh, ow)] = x_pad[n, c, oh*S + kh, ow*S + kw]: x (N, C, H, W) -> "
    "(C·KH·KW, N·OH·OW), rows ordered c, then kh, then kw; columns n, then oh, then ow",
    ("cols_batch_first",),
    {
        "cols_batch_first": "for kh, kw: rows (c, kh, kw) = "
        "x_pad[:, :, kh : kh + S*(OH-1)+1 : S, kw : ... : S], "
        "moved to (C, N, OH, OW); OH = (H + 2P − KH) // S + 1"
    },
    lambda rng: _conv_shape_cases(rng, _im2col_case),
    (
        Mistake(
            "your windows ignore the stride: they start at every pixel, not every S-th one "
            "(OH = (H + 2P − KH) // S + 1 windows per column of the image)",
            lambda a: {"cols_batch_first": _im2col_reference(a["x"], a["KH"], a["KW"], 1, a["P"])},
        ),
        Mistake(
            "the padding is missing: the windows must slide over x padded with P zeros on each side",
            lambda a: {"cols_batch_first": _im2col_reference(a["x"], a["KH"], a["KW"], a["S"], 0)},
        ),
        Mistake(
            "your columns are ordered (oh, ow, n), batch LAST; this exercise wants (n, oh, ow)",
            lambda a: {
                "cols_batch_first": _im2col_reference(
                    a["x"], a["KH"], a["KW"], a["S"], a["P"], batch_first=False
                )
            },
        ),
        Mistake(
            "your rows are ordered (kh, kw, c); the weight reshaped to (F, C·KH·KW) is ordered (c, kh, kw)",
            lambda a: {
                "cols_batch_first": _im2col_reference(a["x"], a["KH"], a["KW"], a["S"], a["P"])
                .reshape(a["x"].shape[1], a["KH"] * a["KW"], -1)
                .transpose(1, 0, 2)
                .reshape(a["x"].shape[1] * a["KH"] * a["KW"], -1)
            },
        ),
    ),
)


@register("im2col", names=("im2col",), title="im2col: every window as a column")
def check_im2col(report, im2col):
    check_arrays(report, IM2COL, im2col)


def _conv_forward_reference(x, weight, bias, S, P):
    F, C, KH, KW = weight.shape
    N = x.shape[0]
    cols = _im2col_reference(x, KH, KW, S, P)  # (C·KH·KW, N·OH·OW)
    OH, OW = window_output_hw(x.shape[2:], (KH, KW), S, P)
    y = (weight.reshape(F, -1) @ cols).reshape(F, N, OH, OW) + bias[:, None, None, None]
    return y.transpose(1, 0, 2, 3)


def _conv_forward_case(rng, x, F, K, S, P):
    weight, bias = rng.standard_normal((F, x.shape[1], K, K)), rng.standard_normal(F)
    args = {"x": x, "weight": weight, "bias": bias, "S": S, "P": P}
    y = _conv_forward_reference(x, weight, bias, S, P)
    bias_term = np.broadcast_to(bias[None, :, None, None], y.shape)
    return Case(
        f"x {x.shape}, weight {weight.shape}, stride {S}, padding {P}",
        args,
        {"y": y},
        terms={"y": {"the bias": bias_term, "the sum over each window": y - bias_term}},
    )


CONV_FORWARD = ArraySpec(
    "y[n, f, oh, ow] = bias[f] + Σ_{c,kh,kw} weight[f, c, kh, kw] x_pad[n, c, oh*S+kh, ow*S+kw]",
    ("y",),
    {
        "y": "OH = (H + 2P − KH) // S + 1; y[n, f, oh, ow] = np.sum(weight[f] * x_pad[n, :, oh*S : oh*S+KH, "
        "ow*S : ow*S+KW]) + bias[f]"
    },
    lambda rng: _conv_shape_cases(rng, _conv_forward_case),
    (
        Mistake(
            "the bias is missing",
            lambda a: {"y": _conv_forward_reference(a["x"], a["weight"], 0 * a["bias"], a["S"], a["P"])},
        ),
        Mistake(
            "your kernel is flipped (a true convolution); scratchnet, like every deep learning library, "
            "computes a cross-correlation: weight[f, c, kh, kw] meets x_pad[..., oh*S+kh, ow*S+kw]",
            lambda a: {
                "y": _conv_forward_reference(a["x"], a["weight"][..., ::-1, ::-1], a["bias"], a["S"], a["P"])
            },
        ),
        Mistake(
            "the stride is ignored: window (oh, ow) starts at row oh*S, column ow*S",
            lambda a: {"y": _conv_forward_reference(a["x"], a["weight"], a["bias"], 1, a["P"])},
        ),
        Mistake(
            "the padding is missing: pad x with P zeros on each side of H and W first",
            lambda a: {"y": _conv_forward_reference(a["x"], a["weight"], a["bias"], a["S"], 0)},
        ),
    ),
)


@register("conv2d-forward", names=("conv2d_forward",), title="convolution forward, with loops")
def check_conv2d_forward(report, conv2d_forward):
    check_arrays(report, CONV_FORWARD, conv2d_forward)


def _col2im_reference(cols, x_shape, KH, KW, S, P, crop=True):
    """The adjoint of im2col: every column entry ADDED back onto the pixel it was copied from."""
    N, C, H, W = x_shape
    OH, OW = window_output_hw((H, W), (KH, KW), S, P)
    cols = cols.reshape(C, KH, KW, N, OH, OW)
    dx_pad = np.zeros((N, C, H + 2 * P, W + 2 * P), dtype=cols.dtype)
    for kh in range(KH):
        for kw in range(KW):
            dx_pad[:, :, kh : kh + S * (OH - 1) + 1 : S, kw : kw + S * (OW - 1) + 1 : S] += cols[
                :, kh, kw
            ].transpose(1, 0, 2, 3)
    return dx_pad[:, :, P : P + H, P : P + W] if crop else dx_pad


def _col2im_terms(a) -> np.ndarray:
    """terms[n, c, h, w, (kh, kw)]: what each kernel offset's columns put on pixel (h, w)."""
    N, C, H, W = a["x_shape"]
    KH, KW, S, P = a["KH"], a["KW"], a["S"], a["P"]
    terms = np.zeros((N, C, H + 2 * P, W + 2 * P, KH * KW))
    for kh in range(KH):
        for kw in range(KW):
            one = np.zeros((KH, KW))
            one[kh, kw] = 1
            mask = np.repeat(one.reshape(1, KH * KW, 1), C, axis=0).reshape(C * KH * KW, 1)
            terms[..., kh * KW + kw] = _col2im_reference(
                a["cols_batch_first"] * mask, a["x_shape"], KH, KW, S, P, crop=False
            )
    return terms[:, :, P : P + H, P : P + W]


def _col2im_case(rng, x, F, K, S, P):
    cols = rng.standard_normal(_im2col_reference(x, K, K, S, P).shape)
    args = {"cols_batch_first": cols, "x_shape": x.shape, "KH": K, "KW": K, "S": S, "P": P}
    return Case(
        f"x {x.shape}, {K}×{K} window, stride {S}, padding {P}",
        args,
        {"dx": _col2im_reference(cols, x.shape, K, K, S, P)},
    )


COL2IM = ArraySpec(
    "col2im, im2col's adjoint: dx[n, c, oh*S+kh − P, ow*S+kw − P] += "
    "cols_batch_first[(c, kh, kw), (n, oh, ow)]",
    ("dx",),
    {
        "dx": "dx_pad = zeros (N, C, H+2P, W+2P); for kh, kw: "
        "dx_pad[:, :, kh : kh+S*(OH-1)+1 : S, kw : ... : S] "
        "+= rows (c, kh, kw) moved to (N, C, OH, OW); return dx_pad[:, :, P:P+H, P:P+W]"
    },
    lambda rng: _conv_shape_cases(rng, _col2im_case),
    (
        Mistake(
            "this is the gradient of the PADDED input; crop the padding off",
            lambda a: {
                "dx": _col2im_reference(
                    a["cols_batch_first"], a["x_shape"], a["KH"], a["KW"], a["S"], a["P"], crop=False
                )
            },
        ),
        Mistake(
            "`=` instead of `+=`: where windows overlap, a pixel was copied into several columns, and all "
            "of them must be ADDED back; yours keeps one",
            test=lambda a, name, yours, correct: _pick_one_per_element(_col2im_terms(a), yours, correct),
        ),
    ),
)


@register("col2im", names=("col2im",), title="col2im: im2col's adjoint, overlapping windows add up")
def check_col2im(report, col2im):
    check_arrays(report, COL2IM, col2im)


# --- dropout (lesson 06) --------------------------------------------------------------------------------
def _dropout_cases(rng, direction):
    cases = []
    for p in (0.5, 0.2):
        x = rng.standard_normal((4, 6))
        keep = rng.random(x.shape) >= p  # True where the unit survives
        if direction == "forward":
            args, correct = {"x": x, "keep": keep, "p": p}, {"y": x * keep / (1 - p)}
        else:
            args, correct = {"dy": x, "keep": keep, "p": p}, {"dx": x * keep / (1 - p)}
        cases.append(Case(f"({direction}) x (4, 6), drop probability p = {p}", args, correct))
    return cases


def _dropout_mistakes(first: str, output: str) -> tuple[Mistake, ...]:
    return (
        Mistake(
            "no scaling: that is the paper's dropout, which instead multiplies by (1 − p) at TEST time; "
            "inverted dropout scales the survivors while training so that testing needs nothing",
            lambda a: {output: a[first] * a["keep"]},
        ),
        Mistake(
            "scaled by 1/p: p is the probability of DROPPING; the survivors, a fraction 1 − p, are "
            "scaled so that the expected value is unchanged",
            lambda a: {output: a[first] * a["keep"] / a["p"]},
        ),
        Mistake(
            "multiplied by (1 − p): the expected value of keep·x is (1 − p)·x, so the survivors must be "
            "DIVIDED by (1 − p) to keep it at x",
            lambda a: {output: a[first] * a["keep"] * (1 - a["p"])},
        ),
        Mistake(
            "the mask is inverted: `keep` is True where the unit SURVIVES",
            lambda a: {output: a[first] * ~a["keep"] / (1 - a["p"])},
        ),
        Mistake("the mask is missing: only the kept units pass", lambda a: {output: a[first] / (1 - a["p"])}),
    )


DROPOUT_FORWARD = ArraySpec(
    "inverted dropout, training: y = x where keep, 0 elsewhere, the survivors scaled to keep E[y] = x",
    ("y",),
    {"y": "y = x * keep / (1 − p)"},
    lambda rng: _dropout_cases(rng, "forward"),
    _dropout_mistakes("x", "y"),
)
DROPOUT_BACKWARD = ArraySpec(
    "its backward: dx from dy through the same mask and scale",
    ("dx",),
    {"dx": "dx = dy * keep / (1 − p): the forward is linear in x, with this very factor"},
    lambda rng: _dropout_cases(rng, "backward"),
    _dropout_mistakes("dy", "dx"),
)


@register(
    "dropout", names=("dropout_forward", "dropout_backward"), title="inverted dropout, forward and backward"
)
def check_dropout(report, dropout_forward, dropout_backward):
    check_arrays(report, DROPOUT_FORWARD, dropout_forward)
    if report.passed:
        check_arrays(report, DROPOUT_BACKWARD, dropout_backward)


# --- local response normalisation (advanced) --------------------------------------------------------------
def _lrn_cases(rng):
    from scratchnet.layers import LocalResponseNorm

    cases = []
    # alpha large enough that the cross-channel term matters; size 4 (even) places the window unevenly.
    # A fifth of x is 0 (there dx_j = dy_j s_j^(−β), the direct term alone: the cross term has the factor
    # a_j) and another fifth of dy is 0 (there the cross-channel term stands alone): each term judged apart.
    direct_name, cross_name = "the direct term dy · s^(−β)", "the cross-channel term"
    for size in (5, 4):
        where = rng.integers(0, 5, (2, 7, 3, 3))  # 0: x = 0, 1: dy = 0, else neither
        x = rng.standard_normal(where.shape) * (where != 0)
        dy = rng.standard_normal(where.shape) * (where != 1)
        layer = LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0, dtype=np.float64)
        args = {"dy": dy, "x": x, "size": size, "alpha": 0.5, "beta": 0.75, "k": 2.0}
        direct = _lrn_dx(args, cross=False)
        cases.append(
            Case(
                f"x (2, 7, 3, 3) with zeros in x and in dy, size {size}, alpha 0.5, beta 0.75, k 2",
                args,
                {"dx": _layer_gradients(layer, x, dy)["dx"]},
                terms={"dx": {direct_name: direct, cross_name: _lrn_dx(args) - direct}},
                alone={"dx": {direct_name: ("x = 0", where == 0), cross_name: ("dy = 0", where == 1)}},
                shared={"dx": ": s = k + α Σ a² over the window (both use it), or the window sum"},
            )
        )
    return cases


def _window_sum(v, before, after):
    out = v.copy()
    for d in range(1, before + 1):
        out[:, d:] += v[:, :-d]
    for d in range(1, after + 1):
        out[:, :-d] += v[:, d:]
    return out


def _lrn_dx(a, cross=True, mirrored=True, two=2.0):
    dy, x, size, alpha, beta, k = (a[n] for n in ("dy", "x", "size", "alpha", "beta", "k"))
    s = k + alpha * _window_sum(x * x, size // 2, (size - 1) // 2)  # (N, C, H, W)
    y = x * s**-beta
    dx = dy * s**-beta
    if cross:
        before, after = ((size - 1) // 2, size // 2) if mirrored else (size // 2, (size - 1) // 2)
        dx -= two * alpha * beta * x * _window_sum(dy * y / s, before, after)
    return dx


LRN = ArraySpec(
    "b_c = a_c · s_c^(−β), s_c = k + α Σ_{c' = c − size//2 .. c + (size−1)//2} a_{c'}², across channels",
    ("dx",),
    {
        "dx": "dx_j = dy_j s_j^(−β) − 2αβ a_j Σ_{i : j ∈ window(i)} dy_i b_i / s_i; "
        "i runs over j − (size−1)//2 "
        ".. j + size//2 (the mirrored window)"
    },
    _lrn_cases,
    (
        Mistake(
            "only the direct term dy · s^(−β): every b_i whose window contains channel j depends on a_j "
            "through s_i too",
            lambda a: {"dx": _lrn_dx(a, cross=False)},
        ),
        Mistake(
            "the cross-channel sum uses the forward window; channel j feeds the outputs i whose window "
            "contains j, the MIRRORED window (it differs when size is even)",
            lambda a: {"dx": _lrn_dx(a, mirrored=False)},
        ),
        Mistake(
            "the factor 2 of ∂(a²)/∂a is missing in the cross-channel term",
            lambda a: {"dx": _lrn_dx(a, two=1.0)},
        ),
    ),
)


@register("lrn-backward", names=("lrn_backward",), title="local response normalisation backward (advanced)")
def check_lrn_backward(report, lrn_backward):
    check_arrays(report, LRN, lrn_backward)
