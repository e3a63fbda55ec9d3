"""The exercise checker (scratchnet.exercises, python -m scratchnet.gradcheck): solutions pass, stubs say
"not done yet", and deliberately wrong implementations (mutants) fail with the diagnosis that names them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scratchnet.exercises import REGISTRY, check, check_file

ROOT = Path(__file__).resolve().parent.parent
EXERCISE_DIR = ROOT / "lessons" / "exercises"
SOLUTIONS = EXERCISE_DIR / "solutions"
FILE_STEMS = sorted(p.stem for p in EXERCISE_DIR.glob("*.py"))


def _solutions(stem: str) -> list[Path]:
    """A file exercise's solutions: ``solutions/<stem>.py`` and those of the notebook exercises of that id."""
    found = [SOLUTIONS / f"{stem}.py", *sorted(SOLUTIONS.glob(f"*/{stem.replace('_', '-')}.py"))]
    found = [path for path in found if path.is_file()]
    assert found, f"{stem}: no solution"
    return found


def test_every_exercise_file_is_registered():
    assert FILE_STEMS
    for stem in FILE_STEMS:
        assert stem.replace("_", "-") in REGISTRY, stem


@pytest.mark.parametrize("stem", FILE_STEMS)
def test_solution_passes(stem):
    for solution in _solutions(stem):
        report = check_file(solution)
        assert report.passed, f"{solution}: {report.render()}"
        assert report.render().startswith(f"{stem.replace('_', '-')}: passed")


@pytest.mark.parametrize("stem", FILE_STEMS)
def test_stub_is_not_done_yet(stem):
    report = check_file(EXERCISE_DIR / f"{stem}.py")
    assert not report.passed and report.not_done
    assert "not done yet" in report.render()


# Pieces of each answer that a stub must not give away (the stub states the forward pass and the shapes).
ANSWERS = {
    "col2im": ["+="],
    "conv2d_backward": ["+=", "Σ_{n,oh,ow}", "Σ_f"],
    "dropout": ["/ (1 − p)", "/ (1 - p)"],
    "lenet5_gradient_check": ["2h", "2 * h", "f(x + h"],
    "linear_backward": ["weight.T", "x.T", "sum("],
    "lrn_backward": ["2αβ", "mirrored"],
    "maxpool_backward": ["+=", "argmax"],
    "relu_backward": ["x > 0", "(x > 0)"],
    "sgd_momentum": ["μ · velocity", "momentum * velocity", "μv"],
    "softmax_cross_entropy_backward": ["onehot", "-= 1", "p − "],
}


def test_stub_docstrings_do_not_hand_over_the_answer():
    assert sorted(ANSWERS) == FILE_STEMS
    for stem, pieces in ANSWERS.items():
        stub = (EXERCISE_DIR / f"{stem}.py").read_text(encoding="utf-8")
        assert not [piece for piece in pieces if piece in stub], stem


def _mutant(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "mutant.py"
    path.write_text("import numpy as np\n\n" + textwrap.dedent(source))
    return path


SOFTMAX = """
def softmax_cross_entropy_backward(logits, labels):
    N = len(labels)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(N), labels] -= 1
    return p / N
"""

CONV = """
def conv2d_backward(dy, x, weight, stride, padding):
    S, P = stride, padding
    F, C, KH, KW = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    dx_pad, dweight = np.zeros_like(x_pad), np.zeros_like(weight)
    for oh in range(dy.shape[2]):
        for ow in range(dy.shape[3]):
            window = (slice(None), slice(None), slice(oh * S, oh * S + KH), slice(ow * S, ow * S + KW))
            dweight += np.einsum("nf,ncuv->fcuv", dy[:, :, oh, ow], x_pad[window])
            dx_pad[window] += np.einsum("nf,fcuv->ncuv", dy[:, :, oh, ow], weight)
    dx = dx_pad[:, :, P : P + x.shape[2], P : P + x.shape[3]]
    return dx, dweight, dy.sum(axis=(0, 2, 3))
"""

MAXPOOL = """
def maxpool_backward(dy, x, kernel_size, stride):
    K, S = kernel_size, stride
    dx = np.zeros_like(x)
    for n in range(dy.shape[0]):
        for c in range(dy.shape[1]):
            for oh in range(dy.shape[2]):
                for ow in range(dy.shape[3]):
                    window = x[n, c, oh * S : oh * S + K, ow * S : ow * S + K]
                    kh, kw = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, oh * S + kh, ow * S + kw] += dy[n, c, oh, ow]
    return dx
"""


def _plant(source: str, *replacements: tuple[str, str]) -> str:
    """A mutant: the right solution with one planted mistake (every replaced text must be there)."""
    for old, new in replacements:
        assert old in source, old
        source = source.replace(old, new)
    return source


COL2IM = (SOLUTIONS / "05_convolution_backward" / "col2im.py").read_text(encoding="utf-8")
LENET5 = (SOLUTIONS / "lenet5_gradient_check.py").read_text(encoding="utf-8")
LRN = (SOLUTIONS / "lrn_backward.py").read_text(encoding="utf-8")
SGD = (SOLUTIONS / "sgd_momentum.py").read_text(encoding="utf-8")
DROPOUT = (SOLUTIONS / "06_relu_pooling_dropout" / "dropout.py").read_text(encoding="utf-8")
IM2COL = """
def im2col(x, KH, KW, S, P):
    N, C, H, W = x.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    cols = np.empty((C, KH, KW, N, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * S : oh * S + KH, ow * S : ow * S + KW]
            cols[:, :, :, :, oh, ow] = window.transpose(1, 2, 3, 0)
    return cols.reshape(C * KH * KW, N * OH * OW)
"""
CONV_FORWARD = """
def conv2d_forward(x, weight, bias, S, P):
    N, C, H, W = x.shape
    F, _, KH, KW = weight.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (P, P), (P, P)))
    OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1
    y = np.zeros((N, F, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            window = x_pad[:, :, oh * S : oh * S + KH, ow * S : ow * S + KW]
            y[:, :, oh, ow] = np.einsum("ncij,fcij->nf", window, weight) + bias
    return y
"""
NUMERICAL = (SOLUTIONS / "03_gradient_checking" / "numerical-gradient.py").read_text(encoding="utf-8")
TANH = """
def tanh_layer_backward(dy, x, weight):
    y = np.tanh(x @ weight)
    dz = dy * (1 - y**2)
    return dz @ weight.T, x.T @ dz
"""

# name -> (wrong implementation, the diagnosis the report must contain, or None where none is expected)
MUTANTS = {
    "softmax without 1/N": (
        _plant(SOFTMAX, ("return p / N", "return p")),
        "the 1/N of the batch mean is missing",
    ),
    "softmax sign flipped": (_plant(SOFTMAX, ("return p / N", "return -p / N")), "the SIGN is flipped"),
    "softmax without the row max": (
        _plant(SOFTMAX, ("np.exp(logits - logits.max(axis=1, keepdims=True))", "np.exp(logits)")),
        "overflows float64",
    ),
    "softmax over axis 0": (
        _plant(SOFTMAX, ("max(axis=1", "max(axis=0"), ("p.sum(axis=1", "p.sum(axis=0")),
        "softmax over the wrong axis",
    ),
    "softmax p[:, labels] -= 1": (
        _plant(SOFTMAX, ("p[np.arange(N), labels] -= 1", "p[:, labels] -= 1")),
        "`p[:, labels] -= 1` subtracts 1 in EVERY row",
    ),
    "linear dx = dy @ weight": (
        "def linear_backward(dy, x, weight):\n    return dy @ weight, x.T @ dy, dy.sum(axis=0)\n",
        "`dy @ weight` multiplies dy (N, M) by weight (D, M)",
    ),
    "linear dweight transposed": (
        "def linear_backward(dy, x, weight):\n    return dy @ weight.T, dy.T @ x, dy.sum(axis=0)\n",
        "TRANSPOSED",
    ),
    "linear dbias not summed": (
        "def linear_backward(dy, x, weight):\n    return dy @ weight.T, x.T @ dy, dy\n",
        "you did not sum over the batch",
    ),
    "linear dbias keepdims": (
        "def linear_backward(dy, x, weight):\n"
        "    return dy @ weight.T, x.T @ dy, dy.sum(axis=0, keepdims=True)\n",
        "only the shape is wrong: it must be (3,)",
    ),
    "linear dbias a mean": (
        "def linear_backward(dy, x, weight):\n    return dy @ weight.T, x.T @ dy, dy.mean(axis=0)\n",
        "dbias is the MEAN of dy's rows",
    ),
    "linear dweight doubled": (
        "def linear_backward(dy, x, weight):\n    return dy @ weight.T, 2 * x.T @ dy, dy.sum(axis=0)\n",
        "off by a constant factor: yours = 2 × correct",
    ),
    "relu mask from dy": (
        "def relu_backward(dy, x):\n    return dy * (dy > 0)\n",
        "masked with the sign of dy",
    ),
    "relu no mask": ("def relu_backward(dy, x):\n    return dy.copy()\n", "passed dy through unchanged"),
    "relu float32": (
        "def relu_backward(dy, x):\n    return (dy * (x > 0)).astype(np.float32)\n",
        "dtype float32, expected float64",
    ),
    "relu in place": (
        "def relu_backward(dy, x):\n    dy[x <= 0] = 0\n    return dy\n",
        "modified its input `dy` in place",
    ),
    "maxpool = instead of +=": (
        _plant(MAXPOOL, ("] += dy[n, c, oh, ow]", "] = dy[n, c, oh, ow]")),
        "`=` instead of `+=`: an input that is the maximum of several OVERLAPPING windows",
    ),
    "maxpool whole window": (
        _plant(
            MAXPOOL,
            (
                "dx[n, c, oh * S + kh, ow * S + kw] +=",
                "dx[n, c, oh * S : oh * S + K, ow * S : ow * S + K] +=",
            ),
        ),
        "gradient reached inputs that are the maximum of no window",
    ),
    "conv dx not cropped": (
        _plant(CONV, ("return dx, dweight", "return dx_pad, dweight")),
        "the gradient of the PADDED input",
    ),
    "conv dx with = instead of +=": (
        _plant(CONV, ("dx_pad[window] +=", "dx_pad[window] =")),
        "`=` instead of `+=` in dx",
    ),
    "conv dweight with = instead of +=": (
        _plant(CONV, ("dweight +=", "dweight =")),
        "`=` instead of `+=` in dweight",
    ),
    "conv kernel flipped inside dx": (
        _plant(
            CONV,
            (
                '"nf,fcuv->ncuv", dy[:, :, oh, ow], weight)',
                '"nf,fcuv->ncuv", dy[:, :, oh, ow], weight[..., ::-1, ::-1])',
            ),
        ),
        "the kernel is flipped (rotated 180°) inside dx",
    ),
    "conv dweight flipped": (
        _plant(CONV, ("return dx, dweight,", "return dx, dweight[..., ::-1, ::-1],")),
        "FLIPPED (rotated 180°)",
    ),
    "conv dbias a mean": (
        _plant(CONV, ("dy.sum(axis=(0, 2, 3))", "dy.mean(axis=(0, 2, 3))")),
        "dbias is a MEAN of dy over the N·OH·OW positions",
    ),
    "im2col ignores the stride": (
        _plant(
            IM2COL,
            (
                "OH, OW = (H + 2 * P - KH) // S + 1, (W + 2 * P - KW) // S + 1",
                "OH, OW = H + 2 * P - KH + 1, W + 2 * P - KW + 1",
            ),
            ("oh * S", "oh"),
            ("ow * S", "ow"),
        ),
        "your windows ignore the stride",
    ),
    "im2col without padding": (
        _plant(IM2COL, ("(P, P), (P, P)", "(0, 0), (0, 0)"), ("2 * P", "0 * P")),
        "the padding is missing",
    ),
    "im2col batch last": (
        _plant(
            IM2COL,
            ("cols = np.empty((C, KH, KW, N, OH, OW))", "cols = np.empty((C, KH, KW, OH, OW, N))"),
            ("cols[:, :, :, :, oh, ow]", "cols[:, :, :, oh, ow, :]"),
        ),
        "ordered (oh, ow, n), batch LAST",
    ),
    "conv forward without bias": (_plant(CONV_FORWARD, (" + bias", "")), "the bias is missing"),
    "conv forward flipped kernel": (
        _plant(CONV_FORWARD, ("window, weight)", "window, weight[..., ::-1, ::-1])")),
        "your kernel is flipped (a true convolution)",
    ),
    "col2im with = instead of +=": (
        _plant(COL2IM, ("dx_pad[:, :, rows, columns] +=", "dx_pad[:, :, rows, columns] =")),
        "`=` instead of `+=`: where windows overlap",
    ),
    "col2im not cropped": (
        _plant(COL2IM, ("return dx_pad[:, :, P : P + H, P : P + W]", "return dx_pad")),
        "gradient of the PADDED input",
    ),
    "dropout as in the paper (no scaling)": (
        _plant(DROPOUT, ("return x * keep / (1 - p)", "return x * keep")),
        "that is the paper's dropout",
    ),
    "dropout scaled by 1/p": (
        _plant(DROPOUT, ("return x * keep / (1 - p)", "return x * keep / p")),
        "scaled by 1/p",
    ),
    "dropout backward without the mask": (
        _plant(DROPOUT, ("return dy * keep / (1 - p)", "return dy / (1 - p)")),
        "the mask is missing",
    ),
    "sgd in CS231n's convention": (
        _plant(
            SGD,
            ("velocity = momentum * velocity + grad", "velocity = momentum * velocity - lr * grad"),
            ("return param - lr * velocity", "return param + velocity"),
        ),
        "CS231n's convention",
    ),
    "sgd steps with the old velocity": (
        _plant(
            SGD,
            (
                "    velocity = momentum * velocity + grad  # a running, decaying sum of gradients\n"
                "    return param - lr * velocity, velocity",
                "    new_velocity = momentum * velocity + grad\n"
                "    return param - lr * velocity, new_velocity",
            ),
        ),
        "the step used the OLD velocity",
    ),
    "lrn without the cross-channel term": (
        _plant(
            LRN,
            (
                "- 2 * alpha * beta * x * _window_sum(dy * y / s, (size - 1) // 2, size // 2)",
                "+ 0",
            ),
        ),
        "only the direct term",
    ),
    "lrn with the forward window": (
        _plant(
            LRN,
            (
                "_window_sum(dy * y / s, (size - 1) // 2, size // 2)",
                "_window_sum(dy * y / s, size // 2, (size - 1) // 2)",
            ),
        ),
        "the MIRRORED window",
    ),
    "numerical gradient one-sided": (
        _plant(NUMERICAL, ("x[i] = old - h\n", "x[i] = old\n"), ("/ (2 * h)", "/ h")),
        "a ONE-SIDED difference",
    ),
    "numerical gradient over h": (
        _plant(NUMERICAL, ("/ (2 * h)", "/ h")),
        "(f(x + h) − f(x − h)) spans a distance of 2h",
    ),
    "numerical gradient not restored": (
        _plant(NUMERICAL, ("        x[i] = old  # restore exactly\n", "")),
        "modified its input `x` in place",
    ),
    "the planted bug left in place": (
        _plant(TANH, ("x.T @ dz", "x.T @ (dy * (1 - y))")),
        "the planted bug is still there",
    ),
    "lenet5 check with one-sided differences": (
        _plant(
            LENET5,
            ("param[i] = old - h\n", "param[i] = old\n"),
            ("(plus - minus) / (2 * h)", "(plus - minus) / h"),
        ),
        "one-sided difference",
    ),
    "lenet5 check with h = 1e-10": (
        _plant(LENET5, ("entries, h = 5, 1e-5", "entries, h = 5, 1e-10")),
        "your step h is about 1e-10",
    ),
    "lenet5 check without restoring": (
        _plant(LENET5, ("            param[i] = old  # restore exactly\n", "")),
        "restore each entry after perturbing it",
    ),
    # the exercise's contract (h = 1e-5, its 5 entries of each parameter): four checks that work but break it
    "lenet5 check with h = 2e-5": (
        _plant(LENET5, ("entries, h = 5, 1e-5", "entries, h = 5, 2e-5")),
        "your step h is 2e-5; the exercise says h = 1e-5",
    ),
    "lenet5 check of 6 entries": (
        _plant(LENET5, ("entries, h = 5, 1e-5", "entries, h = 6, 1e-5")),
        "you checked 6 entries of each parameter; the exercise asks for 5",
    ),
    "lenet5 check of one entry fewer": (
        _plant(LENET5, ("range(entries)", "range(entries - 1)")),
        "you checked 4 entries of each parameter; the exercise asks for 5",
    ),
    "lenet5 check of other entries": (
        _plant(LENET5, ("default_rng(0)", "default_rng(1)")),
        "the 1st entry of conv1.W you checked is (2, 0, 2, 3); the exercise's is (5, 0, 3, 2)",
    ),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_fails(tmp_path, mutant):
    source, _ = MUTANTS[mutant]
    report = check_file(_mutant(tmp_path, source))
    assert not report.passed and not report.not_done, report.render()


def test_at_least_90_percent_of_mutants_are_diagnosed(tmp_path):
    missed = {}
    for name, (source, diagnosis) in MUTANTS.items():
        text = check_file(_mutant(tmp_path, source)).render()
        if diagnosis is None or diagnosis not in text:
            missed[name] = text
    assert len(missed) <= 0.1 * len(MUTANTS), "\n\n".join(f"{k}:\n{v}" for k, v in missed.items())


@pytest.mark.parametrize("mutant", sorted(k for k, (_, d) in MUTANTS.items() if d))
def test_mutant_diagnosis(tmp_path, mutant):
    source, diagnosis = MUTANTS[mutant]
    text = check_file(_mutant(tmp_path, source)).render()
    assert diagnosis in text, text


def test_the_formula_only_with_hint(tmp_path):
    path = _mutant(tmp_path, MUTANTS["linear dbias a mean"][0])
    assert "dy.sum(axis=0)" not in check_file(path).render()
    assert "dbias = dy.sum(axis=0)" in check_file(path, hint=True).render(hint=True)


def test_check_prints_not_done_yet_then_the_mistake(capsys):
    def relu_backward(dy, x):
        raise NotImplementedError

    assert check("relu-backward", relu_backward) is False
    assert capsys.readouterr().out.startswith("relu-backward: not done yet")
    assert check("relu-backward", lambda dy, x: dy * (dy > 0)) is False
    assert "masked with the sign of dy" in capsys.readouterr().out


def test_an_unexplained_exception_is_reported_with_its_line(capsys):
    def relu_backward(dy, x):
        return dy[x > 0].reshape(5, 5)

    assert check("relu-backward", relu_backward) is False
    out = capsys.readouterr().out
    assert "wrong: your code raised ValueError" in out and "reshape" in out


def _command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scratchnet.gradcheck", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow  # a fresh interpreter
def test_command_line_exit_status():
    solved = _command(str(_solutions("linear_backward")[0]))
    assert solved.returncode == 0 and "linear-backward: passed" in solved.stdout, (
        solved.stdout + solved.stderr
    )
    stub = _command(str(EXERCISE_DIR / "linear_backward.py"))
    assert stub.returncode == 1 and "not done yet" in stub.stdout
    missing = _command("no_such_file.py")
    assert (
        missing.returncode == 2 and missing.stderr.strip() == "error: no such exercise file: no_such_file.py"
    )


@pytest.mark.slow  # a fresh interpreter
def test_command_line_list_shows_files_and_notebook_cells():
    listing = _command("--list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert any("linear-backward" in line and "lessons/exercises/linear_backward.py" in line for line in lines)
    assert any("linear-backward" in line and "02_linear_softmax.ipynb" in line for line in lines)
    assert all(line.startswith(("to do", "done ", "?")) for line in lines)


def test_a_cuda_file_without_the_kernel_checker_is_a_clear_error(tmp_path, monkeypatch):
    from scratchnet.exercises import main

    monkeypatch.setitem(
        sys.modules, "scratchnet.exercises.kernel_checker", None
    )  # as if the module were absent
    path = tmp_path / "relu.cu"
    path.write_text("__global__ void relu() {}\n")
    assert main([str(path)]) == 2


def test_list_marks_a_solved_notebook_cell_and_file_as_done(tmp_path):
    from scratchnet.exercises._files import list_exercises

    solution = (SOLUTIONS / "06_relu_pooling_dropout" / "relu-backward.py").read_text(encoding="utf-8")
    cell = {
        "cell_type": "code",
        "id": "relu-backward",
        "metadata": {"tags": ["exercise"]},
        "source": solution,
    }
    (tmp_path / "06_x.ipynb").write_text(json.dumps({"cells": [cell]}), encoding="utf-8")
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "maxpool_backward.py").write_text(
        (SOLUTIONS / "06_relu_pooling_dropout" / "maxpool-backward.py").read_text(encoding="utf-8")
    )
    lines = list_exercises(tmp_path).splitlines()
    assert any(line.startswith("done") and "06_x.ipynb (cell relu-backward)" in line for line in lines), lines
    assert any(line.startswith("done") and "maxpool_backward.py" in line for line in lines), lines
    assert any(line.startswith("to do") and line.split()[2] == "linear-backward" for line in lines), lines


def test_an_unknown_mistake_is_located_at_its_worst_element(capsys):
    def relu_backward(dy, x):
        dx = dy * (x > 0)
        dx[1, 2] += 10.0  # a mistake no diagnosis knows
        return dx

    assert check("relu-backward", relu_backward) is False
    out = capsys.readouterr().out
    assert "1 of 24 elements differ; the worst, dx[1, 2]" in out, out


def test_the_maxpool_assignment_mistake_passes_side_by_side_windows_first(tmp_path):
    text = check_file(_mutant(tmp_path, MUTANTS["maxpool = instead of +="][0])).render()
    assert text.index("case 1 of 2") < text.index("ok: dx") < text.index("case 2 of 2") < text.index("wrong:")


def test_bad_calls_are_clear_errors():
    with pytest.raises(KeyError, match="no exercise 'relu'; the exercises are: .*relu-backward"):
        check("relu", lambda dy, x: dy)
    with pytest.raises(TypeError, match=r"check\('dropout', ...\) takes 2 object\(s\)"):
        check("dropout", lambda x, keep, p: x)


@pytest.mark.slow  # a fresh interpreter
def test_command_line_without_a_file_is_an_error():
    result = _command()
    assert (
        result.returncode == 2
        and result.stderr.strip() == "error: give at least one exercise file (or --list)"
    )


def test_a_cuda_file_goes_to_the_kernel_checker_with_the_hint_flag(tmp_path, monkeypatch):
    import types

    from scratchnet.exercises import main

    calls = []
    fake = types.SimpleNamespace(main=lambda argv: calls.append(argv) or 1)
    monkeypatch.setitem(sys.modules, "scratchnet.exercises.kernel_checker", fake)
    path = tmp_path / "relu.cu"
    path.write_text("__global__ void relu() {}\n")
    assert main([str(path), "--hint"]) == 1
    assert calls == [[str(path), "--hint"]]


# --- correct but unusual: written otherwise than the reference solutions, and right ----------------------
UNUSUAL = sorted((ROOT / "tests" / "unusual_solutions").glob("*.py"))


def test_unusual_solutions_cover_einsum_add_at_and_index_arrays():
    texts = "".join(path.read_text() for path in UNUSUAL)
    assert all(construct in texts for construct in ("np.einsum", "np.add.at", "sliding_window_view"))


@pytest.mark.parametrize("path", UNUSUAL, ids=lambda p: p.stem)
def test_an_unusual_correct_solution_passes(path):
    report = check_file(path)
    assert report.passed, report.render()
