"""The gradient-checking exercises: lesson 03, and ``lessons/exercises/lenet5_gradient_check.py``."""

from __future__ import annotations

import numpy as np

from scratchnet.exercises import register
from scratchnet.exercises._gradients import ArraySpec, Case, Mistake, check_arrays


# --- the centered difference ----------------------------------------------------------------------------
def _sin_cases(rng):
    """f(x) = Σ sin(x) ⊙ G, whose gradient is cos(x) ⊙ G exactly."""
    x, G = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    f = _SinObjective(G, x)
    return [
        Case("f(x) = Σ sin(x) ⊙ G, x (3, 4), h = 1e-5", {"f": f, "x": x, "h": 1e-5}, {"grad": np.cos(x) * G})
    ]


class _SinObjective:
    """f(x) = Σ sin(x) ⊙ G, which also counts the calls that saw x perturbed (differ from ``x0``): evidence
    of what the learner's code passes to f."""

    def __init__(self, G: np.ndarray, x0: np.ndarray):
        self.G, self.x0 = G, x0.copy()
        self.calls = self.perturbed_calls = 0

    def __call__(self, x) -> float:
        self.calls += 1
        self.perturbed_calls += int(not np.array_equal(x, self.x0))
        return float(np.sum(np.sin(x) * self.G))


def _differences(f, x, h, kind):
    """Two wrong finite differences: ``kind`` "forward" (one-sided) or "over h" (centered, / h)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f(x)
        x[i] = old - h if kind == "over h" else old
        f_other = f(x)
        x[i] = old
        grad[i] = (f_plus - f_other) / h
    return grad


NUMERICAL_GRADIENT = ArraySpec(
    "grad[i] ≈ ∂f/∂x[i] of a scalar function f of the array x, by a centered difference with step h",
    ("grad",),
    {"grad": "grad[i] = (f(x + h e_i) − f(x − h e_i)) / (2h), perturbing x[i] in place and restoring it"},
    _sin_cases,
    (
        Mistake(  # first: the other mistakes call f themselves
            "f never saw a perturbed x: every call f(x) got x unchanged, so each difference was 0. The entry "
            "you change must be in the array you pass to f (a changed copy of x does not reach f(x))",
            test=lambda a, name, yours, correct: a["f"].calls > 0 and a["f"].perturbed_calls == 0,
        ),
        Mistake(
            "a ONE-SIDED difference (f(x + h) − f(x)) / h: its error is of order h (about 1e-5 here), the "
            "centered one's of order h² (about 1e-10)",
            lambda a: {"grad": _differences(a["f"], a["x"], a["h"], "forward")},
        ),
        Mistake(
            "yours = 2 × correct: (f(x + h) − f(x − h)) spans a distance of 2h, not h",
            lambda a: {"grad": _differences(a["f"], a["x"], a["h"], "over h")},
        ),
    ),
)


@register("numerical-gradient", names=("numerical_gradient",), title="the centered difference")
def check_numerical_gradient(report, numerical_gradient):
    check_arrays(report, NUMERICAL_GRADIENT, numerical_gradient)


# --- the planted bug ------------------------------------------------------------------------------------
def _tanh_layer_cases(rng):
    N, D, M = 4, 5, 3
    x, weight, dy = (
        rng.standard_normal((N, D)),
        0.5 * rng.standard_normal((D, M)),
        rng.standard_normal((N, M)),
    )
    dz = dy * (1 - np.tanh(x @ weight) ** 2)  # (N, M): through tanh
    args = {"dy": dy, "x": x, "weight": weight}
    return [Case(f"x ({N}, {D}), weight ({D}, {M})", args, {"dx": dz @ weight.T, "dweight": x.T @ dz})]


def _planted(a):
    y = np.tanh(a["x"] @ a["weight"])
    return {"dx": (a["dy"] * (1 - y**2)) @ a["weight"].T, "dweight": a["x"].T @ (a["dy"] * (1 - y))}


TANH_LAYER = ArraySpec(
    "y = tanh(x @ weight): x (N, D), weight (D, M), y and dy (N, M)",
    ("dx", "dweight"),
    {
        "dx": "dx = (dy * (1 − y²)) @ weight.T",
        "dweight": "dweight = x.T @ (dy * (1 − y²)): tanh'(z) = 1 − tanh(z)²",
    },
    _tanh_layer_cases,
    (
        Mistake(
            "the planted bug is still there: the derivative of tanh used in dweight is not tanh'", _planted
        ),
        Mistake(
            "the derivative of tanh is missing: the gradient must pass through tanh before the product",
            lambda a: {"dx": a["dy"] @ a["weight"].T, "dweight": a["x"].T @ a["dy"]},
        ),
    ),
)


@register("tanh-layer-backward", names=("tanh_layer_backward",), title="find and fix the planted bug")
def check_tanh_layer_backward(report, tanh_layer_backward):
    check_arrays(report, TANH_LAYER, tanh_layer_backward)


# --- a whole network: LeNet-5 ---------------------------------------------------------------------------
PLANTED_PARAM = "fc2.W"  # the parameter whose gradient the planted bug doubles


def _lenet5(seed: int = 0):
    from scratchnet.models import LeNet5

    return LeNet5(dtype=np.float64, seed=seed, input_grad=True)


def _double_one_gradient(model, name: str) -> None:
    """Plant a bug: the backward of the layer owning ``name`` returns twice that parameter's gradient."""
    layer_name, param = name.split(".")
    layer = model.layers[layer_name]
    backward = layer.backward

    def broken_backward(dy):
        dx = backward(dy)
        layer.grads[param] = 2 * layer.grads[param]
        return dx

    layer.backward = broken_backward


# The exercise's contract: h, and which entries of each parameter (so that every right check gives the same
# numbers, and a check that differs can be told how).
STEP, ENTRIES = 1e-5, 5


def _contract_entries(model) -> dict[str, list[tuple[int, ...]]]:
    """The entries the exercise asks to check: ENTRIES of each parameter, in model.params order, each index
    drawn as one rng.integers(size) per dimension from a single rng = np.random.default_rng(0)."""
    rng = np.random.default_rng(0)
    return {
        name: [tuple(int(rng.integers(size)) for size in param.shape) for _ in range(ENTRIES)]
        for name, param in model.params.items()
    }


def _record_perturbations(model, before: dict[str, np.ndarray], calls: list) -> None:
    """Make ``model.forward`` append to ``calls``, at each call, the entries that differ from ``before`` as
    (parameter name, index, step): the evidence of the learner's check (its steps' size is its h, their
    signs whether it is centered, the indices which entries it checked)."""
    forward = model.forward

    def recording_forward(*args, **kwargs):
        calls.append(
            [
                (name, tuple(int(i) for i in index), float(param[index] - before[name][index]))
                for name, param in model.params.items()
                for index in zip(*np.nonzero(param != before[name]), strict=True)
            ]
        )
        return forward(*args, **kwargs)

    model.forward = recording_forward


def _step_diagnosis(steps: list[float]) -> str | None:
    """What the recorded steps say about a check whose errors are too large on a correct model."""
    if not steps:
        return None
    h = float(np.median(np.abs(steps)))
    if h < 1e-7:
        return (
            f"your step h is about {h:.0e}: L(p + h) and L(p − h) then agree in nearly all of float64's 16 "
            "digits, and their difference is mostly rounding; a step near 1e-5 balances rounding against "
            "the formula's own error"
        )
    if min(steps) > 0 or max(steps) < 0:
        return (
            "your check moves each entry one way only (a one-sided difference): its error is of order h, "
            "about 1e-5 to 1e-6 here; the centered difference's is of order h²"
        )
    return None


def _short(value: float) -> str:
    """A step as the exercise writes it: 2e-5, not 2e-05."""
    return f"{value:.3g}".replace("e-0", "e-")


def _ordinal(k: int) -> str:
    return f"{k}{'st' if k == 1 else 'nd' if k == 2 else 'rd' if k == 3 else 'th'}"


def _contract_diagnosis(calls: list, expected: dict[str, list[tuple[int, ...]]]) -> str | None:
    """How a check that works breaks the exercise's contract (its h, how many entries, which), or None."""
    steps = np.abs([step for call in calls for _, _, step in call])
    if not np.allclose(steps, STEP, rtol=1e-6, atol=0):  # old + h − old is h to about 1e-11 relative
        low, high = steps.min(), steps.max()
        yours = (
            _short(low) if np.isclose(low, high, rtol=1e-6) else f"between {_short(low)} and {_short(high)}"
        )
        return f"your step h is {yours}; the exercise says h = {_short(STEP)}"
    # an entry checked: a call that saw it alone moved by +h (the other half of its difference moves it by −h)
    checked: dict[str, list[tuple[int, ...]]] = {name: [] for name in expected}
    for call in calls:
        if len(call) == 1 and call[0][2] > 0:
            checked[call[0][0]].append(call[0][1])
    counts = {name: len(indices) for name, indices in checked.items()}
    if set(counts.values()) != {ENTRIES}:
        if len(set(counts.values())) == 1:
            return (
                f"you checked {counts[next(iter(counts))]} entries of each parameter; the exercise asks for "
                f"{ENTRIES}, drawn as its text says"
            )
        name = next(name for name, count in counts.items() if count != ENTRIES)
        return (
            f"you checked {counts[name]} entries of {name}; the exercise asks for {ENTRIES} of each parameter"
        )
    for name, indices in expected.items():
        for k, (right, yours) in enumerate(zip(indices, checked[name], strict=True), 1):
            if right != yours:
                return (
                    f"the {_ordinal(k)} entry of {name} you checked is {yours}; the exercise's is {right}. "
                    "Draw the entries as its text says: one rng = np.random.default_rng(0), the parameters "
                    "in model.params order, each index tuple(int(rng.integers(size)) for size in param.shape)"
                )
    return None


def _run_on(report, function, model, x, labels, calls: list | None = None) -> dict | None:
    before = {k: v.copy() for k, v in model.params.items()}
    if calls is not None:
        _record_perturbations(model, before, calls)
    errors = function(model, x, labels)
    if not isinstance(errors, dict) or set(errors) != set(model.params):
        got = sorted(errors) if isinstance(errors, dict) else type(errors).__name__
        report.fail(f"must return {{parameter name: error}} for every key of model.params; got {got}")
        return None
    changed = [k for k, v in model.params.items() if not np.array_equal(v, before[k])]
    if changed:
        report.fail(f"your check changed the parameters {changed}: restore each entry after perturbing it")
        return None
    return {k: float(v) for k, v in errors.items()}


@register(
    "lenet5-gradient-check",
    names=("lenet5_gradient_check",),
    title="a gradient check of a whole LeNet-5 (finds a planted bug)",
)
def check_lenet5_gradient_check(report, lenet5_gradient_check):
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((2, 1, 28, 28)), np.array([3, 7])
    model, calls = _lenet5(), []
    errors = _run_on(report, lenet5_gradient_check, model, x, labels, calls)
    if errors is None:
        return
    worst = max(errors, key=errors.get)
    if errors[worst] > 1e-7:
        steps = [step for call in calls for _, _, step in call]
        reason = _step_diagnosis(steps) or "in float64 a centered difference with h = 1e-5 gives about 1e-9"
        report.fail(
            f"on a CORRECT LeNet-5 your check reports {errors[worst]:.1e} for {worst}: {reason}",
            "perturb one entry p at a time by ±h, rerun forward and the loss, (L(p + h) − L(p − h)) / 2h, "
            "compare with model.grads from one forward and backward",
        )
        return
    report.ok(f"a correct LeNet-5: every error below 1e-7 (worst {errors[worst]:.1e}, {worst})")
    buggy = _lenet5()
    _double_one_gradient(buggy, PLANTED_PARAM)
    errors = _run_on(report, lenet5_gradient_check, buggy, x, labels)
    if errors is None:
        return
    flagged = sorted(k for k, e in errors.items() if e > 1e-3)
    if flagged != [PLANTED_PARAM]:
        report.fail(
            f"with a planted bug that doubles the gradient of {PLANTED_PARAM}, your check flags "
            f"{flagged or 'nothing'} (error above 1e-3): compare model.grads from backward with YOUR finite "
            "differences, parameter by parameter",
        )
        return
    report.ok(f"the planted bug: only {PLANTED_PARAM} flagged (error {errors[PLANTED_PARAM]:.2f})")
    broken = _contract_diagnosis(calls, _contract_entries(model))
    if broken:
        report.fail(
            broken,
            f"h = {_short(STEP)}; {ENTRIES} entries of each parameter, drawn as the exercise's text says",
        )
        return
    report.ok(f"the exercise's contract: h = {_short(STEP)}, its {ENTRIES} entries of each parameter")
