"""The capstone (lesson 18): LeNet-5 built from the learner's own functions, trained, and compared with the
library's LeNet-5 layer by layer.

* :func:`collect` finds each function of lessons 02-07 that the capstone needs in the newest place where its
  check passes: a notebook cell with the exercise's id anywhere under ``lessons/`` (a copy such as
  ``my_05.ipynb`` too), or the exercise file ``lessons/exercises/<stem>.py``; where none passes, it takes the
  reference solution. The :class:`YourCode` it returns says where each function came from.
* The layers: :class:`YourLinear`, :class:`YourConv2D`, :class:`YourReLU` and
  :class:`YourSoftmaxCrossEntropy` are the library's layers with the learner's functions in their NumPy
  math; :class:`YourSGD` steps with the learner's ``sgd_step``. :func:`lenet5_from` builds LeNet-5 from them
  (max-pooling and Flatten stay the library's), with the library's initial weights.
* :func:`compare_layers` runs both networks on one batch, layer by layer, and :func:`first_difference`
  names the first forward output or backward gradient that differs.
* The checker of the lesson's exercise, ``train-step``: one training step of a network.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scratchnet.exercises import REGISTRY, register, run
from scratchnet.exercises._files import _load
from scratchnet.layers import Conv2D, Linear, ReLU, SoftmaxCrossEntropy
from scratchnet.models import LeNet5, Sequential
from scratchnet.optim import SGD

LESSONS = Path(__file__).resolve().parents[2] / "lessons"
# The exercises whose functions the capstone runs, in the order of the lessons that ask for them.
CAPSTONE_EXERCISES = (
    "linear-forward",  # lesson 02
    "linear-backward",
    "softmax-cross-entropy-forward",
    "softmax-cross-entropy-backward",
    "conv2d-forward",  # lesson 04
    "im2col",
    "conv2d-backward",  # lesson 05
    "col2im",
    "relu-backward",  # lesson 06
    "sgd-step",  # lesson 07
)


# --- where each function comes from ------------------------------------------------------------------------
@dataclass
class YourCode:
    """The capstone's functions by name (``code.im2col``), and where each came from (``sources``, by name)."""

    functions: dict[str, Callable] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Callable:
        try:
            return self.__dict__["functions"][name]
        except KeyError:
            raise AttributeError(f"the capstone has no function {name!r}") from None

    def replace(self, **functions: Callable) -> YourCode:
        """A copy with some functions replaced, e.g. a planted mistake: ``code.replace(col2im=broken)``."""
        unknown = sorted(set(functions) - set(self.functions))
        if unknown:
            raise ValueError(
                f"replace: no function {unknown} in the capstone; it has {sorted(self.functions)}"
            )
        sources = {name: "replaced by hand" for name in functions}
        return YourCode(self.functions | functions, self.sources | sources)

    def describe(self) -> str:
        """One line per function: its name and where it came from."""
        width = max(map(len, self.functions))
        return "\n".join(f"{name:<{width}}  {self.sources[name]}" for name in self.functions)


@dataclass
class _Place:
    """Somewhere a learner may have written an exercise: a notebook cell or an exercise file."""

    where: str  # what the learner reads, e.g. "05_convolution_backward.ipynb, cell col2im"
    modified: float  # the file's modification time: the newest place that passes wins
    namespace: Callable[[], dict]  # runs the cell or the file, returns what it defines


def _run_cell(source: str) -> dict:
    namespace: dict = {}
    exec(compile("import numpy as np\n" + source, "<cell>", "exec"), namespace)  # noqa: S102
    return namespace


def _notebook_cells(lessons: Path) -> dict[str, list[_Place]]:
    """``{cell id: [place, ...]}`` of the cells tagged ``exercise`` of every notebook under ``lessons``,
    Jupyter's hidden ``.ipynb_checkpoints`` autosaves left out; a notebook that is not valid JSON (half saved)
    is skipped."""
    found: dict[str, list[_Place]] = {}
    for notebook in sorted(lessons.rglob("*.ipynb")):
        if any(part.startswith(".") for part in notebook.relative_to(lessons).parts):
            continue
        try:
            cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError):
            continue
        for cell in cells:
            if "exercise" not in cell.get("metadata", {}).get("tags", []) or "id" not in cell:
                continue  # only exercise cells run: no other cell of a learner's notebook
            source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
            place = _Place(
                f"{notebook.relative_to(lessons)}, cell {cell['id']}",
                notebook.stat().st_mtime,
                lambda source=source: _run_cell(source),
            )
            found.setdefault(cell["id"], []).append(place)
    return found


def _reference(exercise_id: str, lessons: Path) -> tuple[Path, Callable]:
    """The reference solution of ``exercise_id`` (``lessons/exercises/solutions/<lesson>/<id>.py``)."""
    solutions = sorted((lessons / "exercises" / "solutions").glob(f"*/{exercise_id}.py"))
    if len(solutions) != 1:
        raise FileNotFoundError(
            f"exercise {exercise_id!r} needs one reference solution in {lessons}/exercises/solutions/*/, "
            f"found {len(solutions)}"
        )
    name = REGISTRY[exercise_id].names[0]
    return solutions[0], _run_cell(solutions[0].read_text(encoding="utf-8"))[name]


def _passing_function(exercise_id: str, place: _Place) -> tuple[Callable | None, str]:
    """The place's function if its check passes, else None; and the verdict, for the learner."""
    name = REGISTRY[exercise_id].names[0]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # a learner's print is not the capstone's output
            function = place.namespace().get(name)
    except Exception as error:  # noqa: BLE001 -- the learner's code: a place that does not run is skipped
        return None, f"does not run ({type(error).__name__})"
    if not callable(function):
        return None, f"defines no {name}"
    report = run(exercise_id, function)
    if report.passed:
        return function, "passed"
    return None, "not done yet" if report.not_done else "wrong"


def collect(lessons: str | Path = LESSONS, exercise_ids=CAPSTONE_EXERCISES) -> YourCode:
    """Each exercise's function from the newest place under ``lessons`` where its check passes, else the
    reference solution; ``sources`` says which, and why not the others."""
    lessons = Path(lessons)
    if not lessons.is_dir():
        raise FileNotFoundError(f"no lessons folder {lessons}: pass collect(lessons=...) the lessons/ folder")
    cells = _notebook_cells(lessons)
    code = YourCode()
    for exercise_id in exercise_ids:
        places = list(cells.get(exercise_id, []))
        file = lessons / "exercises" / f"{exercise_id.replace('-', '_')}.py"
        if file.is_file():
            path = f"exercises/{file.name}"
            places.append(_Place(path, file.stat().st_mtime, lambda file=file: vars(_load(file))))
        name = REGISTRY[exercise_id].names[0]
        tried = []
        for place in sorted(places, key=lambda p: p.modified, reverse=True):
            function, verdict = _passing_function(exercise_id, place)
            if function is not None:
                code.functions[name], code.sources[name] = function, f"yours: {place.where}"
                break
            tried.append(f"{place.where}: {verdict}")
        else:
            _, code.functions[name] = _reference(exercise_id, lessons)
            why = "; ".join(tried) if tried else "no notebook or file under lessons/ holds it"
            code.sources[name] = f"reference solution ({why})"
    return code


def reference_code(lessons: str | Path = LESSONS, exercise_ids=CAPSTONE_EXERCISES) -> YourCode:
    """The reference solutions of the capstone's exercises, as if none were done."""
    code = YourCode()
    for exercise_id in exercise_ids:
        solution, function = _reference(exercise_id, Path(lessons))
        name = REGISTRY[exercise_id].names[0]
        code.functions[name], code.sources[name] = function, f"reference solution {solution.name}"
    return code


# --- the layers: the library's, with your functions inside ------------------------------------------------
# Each overrides the NumPy math of a library layer and keeps everything else (the parameters and their
# initialisation, the shape and dtype checks, the backward cache). The learner's functions may compute in
# float64: outputs are cast back to the layer's dtype, which the next layer checks.
class YourLinear(Linear):
    """``linear_forward`` and ``linear_backward`` (lesson 02) as a layer: y = x W + b, W (D, M)."""

    def __init__(self, code: YourCode, in_features: int, out_features: int, **kwargs):
        super().__init__(in_features, out_features, **kwargs)
        self.code = code

    def _forward_numpy(self, x, training):
        self._save_for_backward(x=x)
        return self.code.linear_forward(x, self.params["W"], self.params["b"]).astype(self.dtype, copy=False)

    def _backward_numpy(self, dy):
        dx, dweight, dbias = self.code.linear_backward(dy, self._saved().x, self.params["W"])
        self.grads["W"], self.grads["b"] = dweight.astype(self.dtype), dbias.astype(self.dtype)
        return dx.astype(self.dtype, copy=False)


class YourConv2D(Conv2D):
    """A convolution from your functions. ``method="im2col"``: ``im2col`` (lesson 04) and a matrix product
    forward, ``col2im`` (lesson 05) and two matrix products backward; ``method="loops"``: ``conv2d_forward``
    and ``conv2d_backward``, the definitions, many times slower. One stride and one padding for H and W.

    With W_m the weight as (F, C·KH·KW) and cols = im2col(x), (C·KH·KW, N·OH·OW) in (n, oh, ow) order::

        Y = W_m cols + b         (F, N·OH·OW) -> y (N, F, OH, OW)
        dW_m = dY colsᵀ,  db = Σ dY over the columns,  dx = col2im(W_mᵀ dY)
    """

    METHODS = ("im2col", "loops")

    def __init__(self, code: YourCode, in_channels, out_channels, kernel_size, method="im2col", **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)
        if method not in self.METHODS:
            raise ValueError(f"YourConv2D: method must be one of {self.METHODS}, got {method!r}")
        if self.stride[0] != self.stride[1] or self.padding[0] != self.padding[1]:
            raise ValueError("YourConv2D: your functions take one stride and one padding for H and W")
        self.code, self.method = code, method

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, method={self.method!r}"

    def _forward_numpy(self, x, training):
        (S, _), (P, _), (KH, KW) = self.stride, self.padding, self.kernel_size
        weight, bias = self.params["W"], self.params["b"]
        if self.method == "loops":
            self._save_for_backward(x=x)
            return self.code.conv2d_forward(x, weight, bias, S, P).astype(self.dtype, copy=False)
        N, F = x.shape[0], self.out_channels
        _, _, OH, OW = self.output_shape(x.shape)
        cols = self.code.im2col(x, KH, KW, S, P)  # (C·KH·KW, N·OH·OW)
        self._save_for_backward(x_shape=x.shape, cols=cols)
        y = weight.reshape(F, -1) @ cols + bias[:, None]  # (F, N·OH·OW)
        return np.ascontiguousarray(y.reshape(F, N, OH, OW).transpose(1, 0, 2, 3), dtype=self.dtype)

    def _backward_numpy(self, dy):
        (S, _), (P, _), (KH, KW) = self.stride, self.padding, self.kernel_size
        weight, saved, F = self.params["W"], self._saved(), self.out_channels
        if self.method == "loops":
            dx, dweight, dbias = self.code.conv2d_backward(dy, saved.x, weight, S, P)
        else:
            dy_matrix = dy.transpose(1, 0, 2, 3).reshape(F, -1)  # (F, N·OH·OW), the columns' order
            dweight = (dy_matrix @ saved.cols.T).reshape(weight.shape)  # dY colsᵀ
            dbias = dy_matrix.sum(axis=1)  # (F,)
            dx = self.code.col2im(weight.reshape(F, -1).T @ dy_matrix, saved.x_shape, KH, KW, S, P)
        self.grads["W"], self.grads["b"] = dweight.astype(self.dtype), dbias.astype(self.dtype)
        return np.ascontiguousarray(dx, dtype=self.dtype) if self.needs_input_grad else None


class YourReLU(ReLU):
    """The library's forward, y = max(x, 0); backward by ``relu_backward(dy, x)`` (lesson 06)."""

    def __init__(self, code: YourCode, **kwargs):
        super().__init__(**kwargs)
        self.code = code

    def _forward_numpy(self, x, training):
        self._save_for_backward(x=x)
        return np.maximum(x, 0)

    def _backward_numpy(self, dy):
        return self.code.relu_backward(dy, self._saved().x).astype(self.dtype, copy=False)


class YourSoftmaxCrossEntropy(SoftmaxCrossEntropy):
    """``softmax_cross_entropy`` and ``softmax_cross_entropy_backward`` (lesson 02) as the loss."""

    def __init__(self, code: YourCode, **kwargs):
        super().__init__(**kwargs)
        self.code = code

    def _forward_numpy(self, logits, labels) -> float:
        self._save_for_backward(logits=logits, labels=labels)
        return float(self.code.softmax_cross_entropy(logits, labels))

    def backward(self):
        saved = self._saved()
        return self.code.softmax_cross_entropy_backward(saved.logits, saved.labels).astype(self.dtype)


class YourSGD(SGD):
    """SGD whose step is ``sgd_step(param, grad, velocity, lr, momentum, weight_decay)`` (lesson 07), for
    every parameter, in place (the layers hold their arrays). The velocity starts at zero."""

    def __init__(self, code: YourCode, model, lr, momentum=0.0, weight_decay=0.0):
        super().__init__(model, lr, momentum=momentum, weight_decay=weight_decay)
        self.code = code

    def step(self) -> None:
        params, grads = self.model.params, self.model.grads
        for key in self.keys:
            velocity = self.velocity.get(key, np.zeros_like(params[key]))
            new_param, self.velocity[key] = self.code.sgd_step(
                params[key], grads[key], velocity, self.lr, self.momentum, self.weight_decay
            )
            params[key][...] = new_param


def lenet5_from(code: YourCode, seed: int = 0, dtype=np.float32, method: str = "im2col") -> Sequential:
    """LeNet-5 with your layers, starting from the weights of ``scratchnet.models.LeNet5(seed=seed)``; the
    layers keep the library's names (conv1 ... fc3), so the two networks compare layer by layer."""
    library = LeNet5(seed=seed, dtype=dtype)
    common = {"dtype": dtype}
    layers = {
        "conv1": YourConv2D(code, 1, 6, 5, padding=2, method=method, **common),
        "relu1": YourReLU(code, **common),
        "pool1": library.layers["pool1"],  # max-pooling: the library's
        "conv2": YourConv2D(code, 6, 16, 5, method=method, **common),
        "relu2": YourReLU(code, **common),
        "pool2": library.layers["pool2"],
        "flatten": library.layers["flatten"],
        "fc1": YourLinear(code, 400, 120, **common),
        "relu3": YourReLU(code, **common),
        "fc2": YourLinear(code, 120, 84, **common),
        "relu4": YourReLU(code, **common),
        "fc3": YourLinear(code, 84, 10, **common),
    }
    yours = Sequential(layers.items(), dtype=dtype, input_shape=library.input_shape, exact_input=True)
    yours.load_state_dict(library.state_dict())
    return yours


# --- layer by layer ------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """One array of one layer, yours against the library's: ``relative_error`` = ‖a − b‖ / (‖a‖ + ‖b‖)."""

    layer: str
    what: str  # "output", "dL/dx", "dL/dW", "dL/db"; "loss" and "dL/dlogits" for the loss
    relative_error: float
    same: bool

    def __str__(self) -> str:
        verdict = "same" if self.same else "DIFFERS"
        return f"{self.layer:<8} {self.what:<11} {verdict:<8} relative error {self.relative_error:.1e}"


def _relative_error(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / scale) if scale else 0.0


def compare_layers(
    code: YourCode, images, labels, seed: int = 0, tolerance: float = 1e-9
) -> list[Comparison]:
    """Your LeNet-5 against the library's on one batch, in float64, from the same weights: every forward
    output, then the loss and dL/dlogits, then every backward gradient from the last layer to the first.

    Each of your layers gets the same input as its library twin (the library's output of the layer before,
    or its dL/dy), so a wrong layer shows where it is wrong and not also in every layer after it. In float64
    layers that agree agree to about 1e-15, far below ``tolerance``.
    """
    library = LeNet5(seed=seed, dtype=np.float64)
    rng = np.random.default_rng(seed)
    for key, bias in library.params.items():  # biases start at zero, where a forgotten "+ b" would hide
        if key.endswith(".b"):
            bias[...] = 0.1 * rng.standard_normal(bias.shape)
    yours = lenet5_from(code, seed, np.float64)
    yours.load_state_dict(library.state_dict())
    yours.input_grad = library.input_grad = True  # conv1's dL/dx too, which training skips
    your_loss, library_loss = (
        YourSoftmaxCrossEntropy(code, dtype=np.float64),
        SoftmaxCrossEntropy(dtype=np.float64),
    )
    results = []

    def compare(layer: str, what: str, a, b) -> None:
        error = _relative_error(a, b)
        results.append(Comparison(layer, what, error, error <= tolerance))

    x = np.asarray(images, dtype=np.float64)  # (N, 1, 28, 28)
    for name, layer in library.layers.items():
        y = layer.forward(x, training=True)
        compare(name, "output", yours.layers[name].forward(x, training=True), y)
        x = y
    compare("loss", "loss", your_loss.forward(x, labels), library_loss.forward(x, labels))
    dy = library_loss.backward()  # (N, 10)
    compare("loss", "dL/dlogits", your_loss.backward(), dy)
    for name, layer in reversed(library.layers.items()):
        dx = layer.backward(dy)
        your_dx = yours.layers[name].backward(dy)
        for key in layer.grads:
            compare(name, f"dL/d{key}", yours.layers[name].grads[key], layer.grads[key])
        compare(name, "dL/dx", your_dx, dx)
        dy = dx
    return results


def first_difference(code: YourCode, images, labels, seed: int = 0) -> Comparison | None:
    """The first array of :func:`compare_layers` that differs (in the order the networks compute them), or
    None when your LeNet-5 computes what the library's does."""
    return next((c for c in compare_layers(code, images, labels, seed) if not c.same), None)


# --- the exercise: one training step ---------------------------------------------------------------------
class _RecordingSGD(SGD):
    """SGD that remembers, at each step, a copy of the gradients it was given."""

    def __init__(self, model, lr):
        super().__init__(model, lr)
        self.seen_grads: list[dict] = []

    def step(self) -> None:
        self.seen_grads.append({k: v.copy() for k, v in self.model.grads.items()})
        super().step()


def _small_network(seed: int) -> Sequential:
    return Sequential(
        [("fc1", Linear(6, 5, seed=seed)), ("relu", ReLU()), ("fc2", Linear(5, 3, seed=seed + 1))],
        dtype=np.float64,
    )


@register("train-step", names=("train_step",), title="one training step: forward, loss, backward, update")
def check_train_step(report, train_step):
    hint = "logits = net.forward(x, training=True); loss = loss_fn.forward(logits, labels); " + (
        "net.backward(loss_fn.backward()); optimizer.step(); return loss"
    )
    rng = np.random.default_rng(0)
    images, labels = rng.standard_normal((8, 6)), rng.integers(0, 3, 8)
    right, net = _small_network(0), _small_network(0)
    right_loss_fn, loss_fn = SoftmaxCrossEntropy(dtype=np.float64), SoftmaxCrossEntropy(dtype=np.float64)
    right_loss = right_loss_fn.forward(right.forward(images), labels)
    right.backward(right_loss_fn.backward())
    right_grads = {k: v.copy() for k, v in right.grads.items()}
    SGD(right, lr=0.1).step()
    optimizer = _RecordingSGD(net, lr=0.1)
    loss = train_step(net, loss_fn, optimizer, images, labels)
    what = "a network Linear(6, 5), ReLU, Linear(5, 3) on 8 examples, SGD with lr 0.1"
    if len(optimizer.seen_grads) != 1:
        report.fail(
            f"{what}: optimizer.step() was called {len(optimizer.seen_grads)} times; once per step", hint
        )
        return
    stale = [k for k, g in optimizer.seen_grads[0].items() if not np.allclose(g, right_grads[k], rtol=1e-10)]
    if stale:
        report.fail(
            f"{what}: the step used gradients that are not this batch's ({', '.join(stale)}): "
            "net.backward(loss_fn.backward()) must come after the forward and before optimizer.step()",
            hint,
        )
        return
    if not all(np.allclose(net.params[k], right.params[k], rtol=1e-12) for k in right.params):
        report.fail(f"{what}: the parameters after the step are not those of one SGD step", hint)
        return
    report.ok(f"{what}: one step with this batch's gradients")
    if not isinstance(loss, float | np.floating) or not np.isclose(loss, right_loss, rtol=1e-10):
        report.fail(
            f"{what}: returned {loss!r}; return the batch's loss from before the step, {right_loss:.6f} "
            "(what loss_fn.forward gave)",
            hint,
        )
        return
    report.ok(f"{what}: returns the loss {loss:.6f}")
