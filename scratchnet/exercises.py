"""The exercise checker: is *your* backward pass right, and if not, what exactly is wrong with it?

Each exercise in ``lessons/exercises/`` is one function to write, for example::

    def linear_backward(dy, x, W):      # y = x @ W + b
        ...
        return dx, dW, db

Check it with::

    python -m scratchnet.gradcheck lessons/exercises/linear_backward.py

The checker builds small float64 inputs (away from the kinks of ReLU and from ties in max-pooling), calls
your function, and compares every gradient it returns with two answers:

* **finite differences** of the library's forward pass: the truth, whatever the library's backward says;
* the **library's own backward** (``scratchnet.layers``), as a second opinion.

For each gradient it prints the relative error ‖a − n‖ / (‖a‖ + ‖n‖) (pass: below 1e-7) and CS231n's
element-wise max |a − n| / max(1e-8, |a| + |n|), and when a gradient is wrong: the worst element with both
values, and a diagnosis of the usual mistakes (a constant factor such as a missing 1/N, a flipped sign, a
transpose, a wrong shape or dtype, a missing sum over the batch, a missing ``+=`` where windows overlap,
an input modified in place). The exit status is 0 when every gradient of every exercise passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet.gradcheck import TOLERANCE, max_elementwise_error, numerical_gradient, relative_error

# A rewritten gradient (scaled, negated, transposed...) "matches" the truth when its error is below this:
# looser than TOLERANCE, so that a diagnosis still fires when the rewritten answer is only nearly right.
MATCH = 1e-6


@dataclass
class Case:
    """One set of inputs for an exercise, with the two answers to compare the learner's gradients with."""

    description: str  # e.g. "x (4, 5), W (5, 3)"
    args: dict[str, object]  # the learner's function is called with these values, in this order
    numerical: dict[str, np.ndarray]  # gradient name ("dx", "dW", ...) -> finite differences
    library: dict[str, np.ndarray]  # gradient name -> the library layer's backward
    # Exercise-specific diagnoses: (gradient name, yours, correct, args) -> a sentence, or None; explain
    # looks at values (same shape as correct), explain_shape at a result of the wrong shape.
    explain: Callable[[str, np.ndarray, np.ndarray, dict], str | None] | None = None
    explain_shape: Callable[[str, np.ndarray, np.ndarray, dict], str | None] | None = None
    mean_over: int | None = None  # N when the loss is a mean over N examples (a factor N is then telling)


@dataclass
class Exercise:
    name: str  # the function the learner writes
    forward: str  # the forward pass, one line, for the report
    outputs: tuple[str, ...]  # the gradients it returns, in order
    hints: dict[str, str]  # gradient name -> the formula, printed when that gradient is wrong
    make_cases: Callable[[np.random.Generator], list[Case]]


@dataclass
class Report:
    passed: bool = True
    lines: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        self.lines.append(text)

    def fail(self, text: str) -> None:
        self.passed = False
        self.lines.append(text)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


# --- the true gradients: finite differences of the library's forward -----------------------------------
def _layer_answers(layer, x: np.ndarray, dy: np.ndarray) -> tuple[dict, dict]:
    """Finite differences and the library's backward for f = Σ layer(x) ⊙ dy, so that ∂f/∂y = dy.

    Returns ``({"dx": ..., "dW": ..., "db": ...}, {...})``: the numerical and the library's gradients.
    """

    def f(_):  # numerical_gradient perturbs x or a parameter array in place; f reads them from there
        return float(np.sum(layer.forward(x, training=True) * dy))

    numerical = {"dx": numerical_gradient(f, x)}
    for name, param in layer.params.items():
        numerical["d" + name] = numerical_gradient(f, param)
    layer.forward(x, training=True)
    library = {"dx": layer.backward(dy.copy())}
    library |= {"d" + name: grad.copy() for name, grad in layer.grads.items()}
    return numerical, library


def _set_params(layer, **values: np.ndarray) -> None:
    for name, value in values.items():
        layer.params[name][...] = value  # in place: the layer keeps its own arrays


# --- the exercises --------------------------------------------------------------------------------------
def _relu_cases(rng: np.random.Generator) -> list[Case]:
    from scratchnet.layers import ReLU

    # |x| >= 0.1: far from the kink at 0, where a finite difference would straddle two slopes.
    x = rng.uniform(0.1, 1.0, size=(4, 6)) * rng.choice([-1.0, 1.0], size=(4, 6))
    dy = rng.standard_normal(x.shape)
    numerical, library = _layer_answers(ReLU(dtype=np.float64), x, dy)
    return [Case("x (4, 6), |x| >= 0.1", {"dy": dy, "x": x}, numerical, library, _explain_relu)]


def _explain_relu(grad: str, yours: np.ndarray, correct: np.ndarray, args: dict) -> str | None:
    dy, x = args["dy"], args["x"]
    if np.allclose(yours, dy * (dy > 0)):
        return "you masked with dy > 0; the mask comes from the forward input: dx = dy * (x > 0)"
    if np.allclose(yours, dy):
        return "you passed dy through unchanged; zero it where the input was negative: dx = dy * (x > 0)"
    if np.allclose(yours, x > 0):
        return "you returned the mask alone; multiply it by the upstream gradient: dx = dy * (x > 0)"
    return None


def _linear_cases(rng: np.random.Generator) -> list[Case]:
    from scratchnet.layers import Linear

    N, D, M = 4, 5, 3  # all different, so that a transposed or unsummed gradient has a telling shape
    x, W, b = rng.standard_normal((N, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    dy = rng.standard_normal((N, M))
    layer = Linear(D, M, dtype=np.float64, seed=0)
    _set_params(layer, W=W, b=b)
    numerical, library = _layer_answers(layer, x, dy)
    return [Case(f"x ({N}, {D}), W ({D}, {M}), b ({M},)", {"dy": dy, "x": x, "W": W}, numerical, library)]


def _softmax_cases(rng: np.random.Generator) -> list[Case]:
    from scratchnet.layers import SoftmaxCrossEntropy

    N, K = 5, 4
    logits = rng.standard_normal((N, K))
    labels = rng.permutation(np.arange(N) % K).astype(np.int64)  # every class at least once
    loss = SoftmaxCrossEntropy(dtype=np.float64)
    numerical = {"dlogits": numerical_gradient(lambda z: loss.forward(z, labels), logits)}
    loss.forward(logits, labels)
    library = {"dlogits": loss.backward()}
    args = {"logits": logits, "labels": labels}
    return [Case(f"logits ({N}, {K}), labels {labels.tolist()}", args, numerical, library, mean_over=N)]


def _maxpool_cases(rng: np.random.Generator) -> list[Case]:
    from scratchnet.layers import MaxPool2D

    cases = []
    settings = ((2, 2, 6, "windows side by side"), (3, 2, 7, "OVERLAPPING windows"))
    for kernel_size, stride, size, what in settings:
        shape = (2, 2, size, size)
        # Distinct values at least 0.02 apart: no ties, and a perturbation of 1e-5 never changes a maximum.
        x = rng.permutation(np.prod(shape)).reshape(shape) * (4.0 / np.prod(shape)) - 2.0
        layer = MaxPool2D(kernel_size, stride, dtype=np.float64)
        dy = rng.standard_normal(layer.output_shape(shape))
        numerical, library = _layer_answers(layer, x, dy)
        args = {"dy": dy, "x": x, "kernel_size": kernel_size, "stride": stride}
        description = f"x {shape}, kernel {kernel_size}, stride {stride} ({what})"
        cases.append(Case(description, args, numerical, library, _explain_maxpool))
    return cases


def _argmax_counts(x: np.ndarray, kernel_size: int, stride: int) -> np.ndarray:
    """How many pooling windows have each input element as their maximum."""
    N, C, H, W = x.shape
    counts = np.zeros(x.shape, dtype=np.int64)
    for i in range(0, H - kernel_size + 1, stride):
        for j in range(0, W - kernel_size + 1, stride):
            window = x[:, :, i : i + kernel_size, j : j + kernel_size].reshape(N, C, -1)
            u, v = np.unravel_index(window.argmax(axis=2), (kernel_size, kernel_size))
            n, c = np.indices((N, C))
            counts[n, c, i + u, j + v] += 1
    return counts


def _explain_maxpool(grad: str, yours: np.ndarray, correct: np.ndarray, args: dict) -> str | None:
    counts = _argmax_counts(args["x"], args["kernel_size"], args["stride"])
    wrong = ~np.isclose(yours, correct, rtol=1e-6, atol=1e-9)
    if np.any(yours[counts == 0] != 0):
        return "gradient reached inputs that are the maximum of no window: route each dy only to its argmax"
    if counts[wrong].min(initial=2) >= 2:
        return (
            f"wrong only at inputs that are the maximum of several overlapping windows ({int(wrong.sum())} "
            "of them): each must receive the SUM of those windows' gradients; accumulate with += instead "
            "of assigning with ="
        )
    return None


def _conv_cases(rng: np.random.Generator) -> list[Case]:
    from scratchnet.layers import Conv2D

    cases = []
    for stride, padding, size in ((1, 1, 5), (2, 0, 7)):
        N, C, F, k = 2, 3, 4, 3
        x = rng.standard_normal((N, C, size, size))
        W, b = rng.standard_normal((F, C, k, k)), rng.standard_normal(F)
        layer = Conv2D(C, F, k, stride=stride, padding=padding, dtype=np.float64, seed=0)
        _set_params(layer, W=W, b=b)
        dy = rng.standard_normal(layer.output_shape(x.shape))
        numerical, library = _layer_answers(layer, x, dy)
        args = {"dy": dy, "x": x, "W": W, "stride": stride, "padding": padding}
        description = f"x {x.shape}, W {W.shape}, stride {stride}, padding {padding}"
        cases.append(Case(description, args, numerical, library, explain_shape=_explain_conv_shape))
    return cases


def _explain_conv_shape(grad: str, yours: np.ndarray, correct: np.ndarray, args: dict) -> str | None:
    p = args["padding"]
    if grad == "dx" and p and yours.shape == correct.shape[:2] + tuple(s + 2 * p for s in correct.shape[2:]):
        return f"this is the gradient of the PADDED input; crop the padding: dx_pad[:, :, {p}:-{p}, {p}:-{p}]"
    return None


EXERCISES = {
    e.name: e
    for e in (
        Exercise(
            "relu_backward",
            "y = max(0, x)",
            ("dx",),
            {"dx": "dx = dy * (x > 0): the gradient passes where the input was positive, is zero elsewhere"},
            _relu_cases,
        ),
        Exercise(
            "linear_backward",
            "y = x @ W + b, x (N, D), W (D, M), b (M,)",
            ("dx", "dW", "db"),
            {
                "dx": "dx = dy @ W.T, shape (N, D)",
                "dW": "dW = x.T @ dy, shape (D, M): a sum over the batch of outer products x_n dy_n^T",
                "db": "db = dy.sum(axis=0), shape (M,): b is added to every row, so its gradient sums them",
            },
            _linear_cases,
        ),
        Exercise(
            "softmax_cross_entropy_backward",
            "L = (1/N) Σ_n −log softmax(z_n)[y_n], logits z (N, K)",
            ("dlogits",),
            {"dlogits": "dz = (softmax(z) − onehot(y)) / N: the loss is a MEAN over the batch"},
            _softmax_cases,
        ),
        Exercise(
            "maxpool_backward",
            "y[n,c,i,j] = max of x[n, c, i*s : i*s+k, j*s : j*s+k]",
            ("dx",),
            {
                "dx": "each dy[n,c,i,j] goes to the position of its window's maximum (the first one on "
                "ties); where windows overlap, an input can collect several: dx[...] += dy[n,c,i,j]"
            },
            _maxpool_cases,
        ),
        Exercise(
            "conv2d_backward",
            "y[n,f,i,j] = b[f] + Σ_{c,u,v} W[f,c,u,v] x_pad[n, c, i*s+u, j*s+v]",
            ("dx", "dW", "db"),
            {
                "dx": "dx_pad[n, c, i*s+u, j*s+v] += Σ_f dy[n,f,i,j] W[f,c,u,v], then crop the padding",
                "dW": "dW[f,c,u,v] = Σ_{n,i,j} dy[n,f,i,j] x_pad[n, c, i*s+u, j*s+v]",
                "db": "db[f] = Σ_{n,i,j} dy[n,f,i,j]",
            },
            _conv_cases,
        ),
    )
}


# --- comparing one gradient -----------------------------------------------------------------------------
def _fmt_index(index: tuple) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _matches(candidate: np.ndarray, correct: np.ndarray) -> bool:
    return candidate.shape == correct.shape and relative_error(candidate, correct) < MATCH


def _shape_diagnosis(yours: np.ndarray, correct: np.ndarray) -> str:
    """Why the shapes differ, when the values tell."""
    got, want = yours.shape, correct.shape
    if yours.ndim == 2 and got == want[::-1] and _matches(yours.T, correct):
        return "your values are right but TRANSPOSED: return the .T (or swap the operands of the product)"
    if yours.size == correct.size and _matches(yours.reshape(want), correct):
        return f"your values are right, only the shape is wrong: reshape to {want}"
    if yours.ndim == correct.ndim + 1 and got[1:] == want and _matches(yours.sum(axis=0), correct):
        return "you did not sum over the batch: each example's contribution is right; add them up (axis 0)"
    return "the shape must be that of the corresponding input or parameter"


def _constant_factor(yours: np.ndarray, correct: np.ndarray, mean_over: int | None) -> str | None:
    """'yours = c × correct' for one constant c, with a guess at where c came from."""
    denominator = float(np.sum(correct * correct))
    if denominator == 0.0:
        return None
    c = float(np.sum(yours * correct)) / denominator  # the least-squares fit of yours ≈ c · correct
    if c == 0.0 or not _matches(yours, c * correct):
        return None
    if np.isclose(c, -1.0):
        return "the SIGN is flipped: yours = −(correct gradient); check the order of a subtraction"
    text = f"off by a constant factor: yours = {c:.6g} × correct"
    if mean_over and np.isclose(c, mean_over, rtol=1e-4):
        text += f" (N = {mean_over}, the batch size: you forgot to divide by N; the loss is a batch mean)"
    elif mean_over and np.isclose(c, 1 / mean_over, rtol=1e-4):
        text += f" (1/N with N = {mean_over}, the batch size: you divided by N once too often)"
    return text


def _value_diagnosis(name: str, yours: np.ndarray, correct: np.ndarray, case: Case) -> str:
    if not np.all(np.isfinite(yours)):
        return "contains NaN or infinity (an overflow? subtract the row maximum before exp in a softmax)"
    if not np.any(yours):
        return "all zeros: was the result array filled in?"
    factor = _constant_factor(yours, correct, case.mean_over)
    if factor:
        return factor
    if yours.ndim == 2 and yours.shape[0] == yours.shape[1] and _matches(yours.T, correct):
        return "TRANSPOSED: yours.T is the correct gradient"
    if yours.ndim == 4 and _matches(yours[..., ::-1, ::-1], correct):
        return "the kernel is FLIPPED (rotated 180°): scratchnet's convolution is a cross-correlation"
    if case.explain is not None:
        specific = case.explain(name, yours, correct, case.args)
        if specific:
            return specific
    wrong = ~np.isclose(yours, correct, rtol=1e-6, atol=1e-9)
    return f"{int(wrong.sum())} of {wrong.size} elements are wrong"


def _check_gradient(name: str, yours, case: Case, hint: str, report: Report) -> None:
    numerical, library = case.numerical[name], case.library[name]
    label = f"  {name:<8}"
    if yours is None:
        report.fail(f"{label}FAIL  your function returned None for {name}")
        return
    if not isinstance(yours, np.ndarray):
        report.fail(f"{label}FAIL  must be a NumPy array, got {type(yours).__name__}")
        return
    problems = []
    if yours.dtype != numerical.dtype:
        problems.append(
            f"dtype is {yours.dtype}, expected {numerical.dtype} like the inputs "
            "(an array created with a fixed dtype? use np.zeros_like(x) or dtype=x.dtype)"
        )
    if yours.shape != numerical.shape:
        specific = case.explain_shape and case.explain_shape(name, yours, numerical, case.args)
        reason = specific or _shape_diagnosis(yours, numerical)
        report.fail(f"{label}FAIL  shape {yours.shape}, expected {numerical.shape}")
        for line in [*problems, reason, f"hint: {hint}"]:
            report.say(f"            {line}")
        return

    values = yours.astype(np.float64)
    error, elementwise = relative_error(values, numerical), max_elementwise_error(values, numerical)
    library_error = relative_error(values, library)
    figures = f"error {error:.1e}  (CS231n max {elementwise:.1e}; vs library {library_error:.1e})"
    if error < TOLERANCE and not problems:
        report.say(f"{label}ok    {figures}")
        return
    if error < TOLERANCE:
        report.fail(f"{label}FAIL  values right ({figures}) but:")
        for line in problems:
            report.say(f"            {line}")
        return
    report.fail(f"{label}FAIL  {figures}")
    worst = np.unravel_index(int(np.argmax(np.abs(values - numerical))), numerical.shape)
    report.say(
        f"            worst element {name}{_fmt_index(worst)}: yours {values[worst]:.6g}, "
        f"finite differences {numerical[worst]:.6g}, library {library[worst]:.6g}"
    )
    for line in [*problems, "diagnosis: " + _value_diagnosis(name, values, numerical, case), f"hint: {hint}"]:
        report.say(f"            {line}")


# --- running one exercise -------------------------------------------------------------------------------
def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value


def check_function(exercise: Exercise, function: Callable, seed: int = 0) -> Report:
    """Run ``function`` (the learner's ``exercise.name``) on every case of ``exercise``."""
    report = Report()
    report.say(f"{exercise.name}: {exercise.forward}")
    cases = exercise.make_cases(np.random.default_rng(seed))
    for number, case in enumerate(cases, start=1):
        report.say(f" case {number} of {len(cases)}: {case.description}")
        args = {k: _copy(v) for k, v in case.args.items()}
        try:
            result = function(*args.values())
        except NotImplementedError:
            report.fail(
                f"  NOT IMPLEMENTED: {exercise.name} raises NotImplementedError; replace the `raise` with "
                "your code (the docstring has the formulas)"
            )
            return report
        except Exception as e:  # the learner's bug: show where it happened, then stop
            report.fail(f"  ERROR: your function raised {type(e).__name__}: {e}")
            frames = traceback.extract_tb(e.__traceback__)[1:]
            for line in traceback.format_list(frames)[-3:]:
                report.say("    " + line.rstrip().replace("\n", "\n    "))
            return report
        for arg_name, value in args.items():
            if isinstance(value, np.ndarray) and not np.array_equal(value, case.args[arg_name]):
                report.fail(
                    f"  FAIL  your function modified its input `{arg_name}` in place; the layer still needs "
                    "it (work on a copy, e.g. dx = dy.copy())"
                )
        outputs = exercise.outputs
        if len(outputs) == 1 and not isinstance(result, tuple | list):
            result = (result,)
        if not isinstance(result, tuple | list) or len(result) != len(outputs):
            got = f"{len(result)} values" if isinstance(result, tuple | list) else type(result).__name__
            report.fail(f"  FAIL  must return {len(outputs)} value(s) ({', '.join(outputs)}), got {got}")
            return report
        for name, yours in zip(outputs, result, strict=True):
            _check_gradient(name, yours, case, exercise.hints[name], report)
        if not report.passed:
            return report  # one failing case at a time: fix it, then run again
    return report


def _load(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"no such exercise file: {path}")
    spec = importlib.util.spec_from_file_location(f"_exercise_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_file(path: str | Path, exercise: str | None = None, seed: int = 0) -> Report:
    """Check every exercise function defined in the Python file ``path`` (or only ``exercise``)."""
    path = Path(path)
    report = Report()
    report.say(f"== {path}")
    try:
        module = _load(path)
    except FileNotFoundError as e:
        report.fail(f"ERROR: {e}")
        return report
    except Exception as e:
        report.fail(f"ERROR: cannot import {path}: {type(e).__name__}: {e}")
        return report
    names = [exercise] if exercise else [n for n in EXERCISES if callable(getattr(module, n, None))]
    if not names or not callable(getattr(module, names[0], None)):
        wanted = exercise or " / ".join(EXERCISES)
        report.fail(f"ERROR: {path} defines no function named {wanted}")
        return report
    for name in names:
        result = check_function(EXERCISES[name], getattr(module, name), seed)
        report.lines += result.lines
        report.passed &= result.passed
    report.say("PASSED: every gradient matches" if report.passed else "FAILED: see above")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scratchnet.gradcheck",
        description="Check your backward pass from lessons/exercises/ against finite differences.",
        epilog="example: python -m scratchnet.gradcheck lessons/exercises/linear_backward.py",
    )
    parser.add_argument("files", nargs="*", type=Path, help="Python files defining an exercise function")
    parser.add_argument("--exercise", choices=list(EXERCISES), help="check only this function")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random test inputs (default 0)")
    parser.add_argument("--list", action="store_true", help="list the exercises and exit")
    args = parser.parse_args(argv)
    if args.list:
        for e in EXERCISES.values():
            print(f"{e.name:<32} {e.forward}  ->  {', '.join(e.outputs)}")
        return 0
    if not args.files:
        parser.error("give at least one exercise file (or --list)")
    passed = True
    for path in args.files:
        report = check_file(path, args.exercise, args.seed)
        print(report.text)
        passed &= report.passed
    return 0 if passed else 1
