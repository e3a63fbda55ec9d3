"""The exercise checker (python -m scratchnet.gradcheck): solutions pass, stubs say "not implemented", and
deliberately wrong backward passes (mutants) fail with the right diagnosis."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scratchnet.exercises import EXERCISES, check_file

EXERCISE_DIR = Path(__file__).resolve().parent.parent / "lessons" / "exercises"


def test_every_exercise_has_a_stub_and_a_solution():
    assert sorted(p.stem for p in EXERCISE_DIR.glob("*.py")) == sorted(EXERCISES)
    assert sorted(p.stem for p in (EXERCISE_DIR / "solutions").glob("*.py")) == sorted(EXERCISES)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_solution_passes(name):
    report = check_file(EXERCISE_DIR / "solutions" / f"{name}.py")
    assert report.passed, report.text
    assert "PASSED" in report.text
    assert "FAIL" not in report.text


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_stub_reports_not_implemented(name):
    report = check_file(EXERCISE_DIR / f"{name}.py")
    assert not report.passed
    assert f"NOT IMPLEMENTED: {name} raises NotImplementedError" in report.text


def _mutant(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "mutant.py"
    path.write_text("import numpy as np\n\n" + textwrap.dedent(source))
    return path


# (wrong implementation, text the report must contain, gradient that must be reported failing)
MUTANTS = {
    "softmax missing 1/N": (
        """
        def softmax_cross_entropy_backward(logits, labels):
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[np.arange(len(labels)), labels] -= 1
            return p
        """,
        "off by a constant factor: yours = 5 × correct (N = 5, the batch size: you forgot to divide by N",
        "dlogits",
    ),
    "softmax sign flipped": (
        """
        def softmax_cross_entropy_backward(logits, labels):
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            onehot = np.eye(logits.shape[1])[labels]
            return (onehot - p) / len(labels)
        """,
        "the SIGN is flipped",
        "dlogits",
    ),
    "linear transposed dW": (
        """
        def linear_backward(dy, x, W):
            return dy @ W.T, dy.T @ x, dy.sum(axis=0)
        """,
        "TRANSPOSED",
        "dW",
    ),
    "linear db not summed": (
        """
        def linear_backward(dy, x, W):
            return dy @ W.T, x.T @ dy, dy
        """,
        "you did not sum over the batch",
        "db",
    ),
    "linear db keepdims": (
        """
        def linear_backward(dy, x, W):
            return dy @ W.T, x.T @ dy, dy.sum(axis=0, keepdims=True)
        """,
        "your values are right, only the shape is wrong: reshape to (3,)",
        "db",
    ),
    "maxpool = instead of +=": (
        """
        def maxpool_backward(dy, x, kernel_size, stride):
            k, s = kernel_size, stride
            dx = np.zeros_like(x)
            for n in range(dy.shape[0]):
                for c in range(dy.shape[1]):
                    for i in range(dy.shape[2]):
                        for j in range(dy.shape[3]):
                            window = x[n, c, i * s : i * s + k, j * s : j * s + k]
                            u, v = np.unravel_index(np.argmax(window), window.shape)
                            dx[n, c, i * s + u, j * s + v] = dy[n, c, i, j]
            return dx
        """,
        "maximum of several overlapping windows",
        "dx",
    ),
    "relu mask from dy": (
        """
        def relu_backward(dy, x):
            return dy * (dy > 0)
        """,
        "you masked with dy > 0",
        "dx",
    ),
    "relu float32": (
        """
        def relu_backward(dy, x):
            return (dy * (x > 0)).astype(np.float32)
        """,
        "dtype is float32, expected float64",
        "dx",
    ),
    "conv dx not cropped": (
        """
        def conv2d_backward(dy, x, W, stride, padding):
            p, s, k = padding, stride, W.shape[2]
            x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            dx_pad, dW = np.zeros_like(x_pad), np.zeros_like(W)
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    g = dy[:, :, i, j]
                    dW += np.einsum("nf,ncuv->fcuv", g, x_pad[:, :, i * s : i * s + k, j * s : j * s + k])
                    dx_pad[:, :, i * s : i * s + k, j * s : j * s + k] += np.einsum("nf,fcuv->ncuv", g, W)
            return dx_pad, dW, dy.sum(axis=(0, 2, 3))
        """,
        "gradient of the PADDED input",
        "dx",
    ),
    "conv dW of a flipped kernel": (
        """
        def conv2d_backward(dy, x, W, stride, padding):
            p, s, k = padding, stride, W.shape[2]
            x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
            dx_pad, dW = np.zeros_like(x_pad), np.zeros_like(W)
            for i in range(dy.shape[2]):
                for j in range(dy.shape[3]):
                    g = dy[:, :, i, j]
                    dW += np.einsum("nf,ncuv->fcuv", g, x_pad[:, :, i * s : i * s + k, j * s : j * s + k])
                    dx_pad[:, :, i * s : i * s + k, j * s : j * s + k] += np.einsum("nf,fcuv->ncuv", g, W)
            dx = dx_pad[:, :, p : p + x.shape[2], p : p + x.shape[3]]
            return dx, dW[:, :, ::-1, ::-1], dy.sum(axis=(0, 2, 3))
        """,
        "the kernel is FLIPPED",
        "dW",
    ),
    "linear dW doubled": (
        """
        def linear_backward(dy, x, W):
            return dy @ W.T, 2 * x.T @ dy, dy.sum(axis=0)
        """,
        "off by a constant factor: yours = 2 × correct",
        "dW",
    ),
}


@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_mutant_fails_with_diagnosis(tmp_path, mutant):
    source, diagnosis, gradient = MUTANTS[mutant]
    report = check_file(_mutant(tmp_path, source))
    assert not report.passed, report.text
    assert diagnosis in report.text, report.text
    failing = [line for line in report.lines if line.strip().startswith(f"{gradient} ") and "FAIL" in line]
    assert failing, report.text


def test_maxpool_assignment_mutant_passes_the_non_overlapping_case_first(tmp_path):
    report = check_file(_mutant(tmp_path, MUTANTS["maxpool = instead of +="][0]))
    text = report.text
    assert "case 1 of 2" in text and "case 2 of 2" in text
    assert text.index(" ok ") < text.index("case 2 of 2") < text.index("FAIL")


def test_worst_element_and_both_errors_are_reported(tmp_path):
    report = check_file(_mutant(tmp_path, MUTANTS["softmax missing 1/N"][0]))
    assert "worst element dlogits[" in report.text
    assert "CS231n max" in report.text and "finite differences" in report.text


def test_modifying_an_input_in_place_is_reported(tmp_path):
    source = """
    def relu_backward(dy, x):
        dy[x <= 0] = 0
        return dy
    """
    report = check_file(_mutant(tmp_path, source))
    assert not report.passed
    assert "modified its input `dy` in place" in report.text


def test_exception_in_the_learners_code_is_shown(tmp_path):
    source = """
    def linear_backward(dy, x, W):
        return dy @ W, x.T @ dy, dy.sum(axis=0)
    """
    report = check_file(_mutant(tmp_path, source))
    assert not report.passed
    assert "ERROR: your function raised ValueError" in report.text


def test_wrong_number_of_outputs(tmp_path):
    report = check_file(_mutant(tmp_path, "def linear_backward(dy, x, W):\n    return dy @ W.T, x.T @ dy\n"))
    assert "must return 3 value(s) (dx, dW, db), got 2 values" in report.text


def test_file_without_an_exercise_function(tmp_path):
    report = check_file(_mutant(tmp_path, "def something_else():\n    pass\n"))
    assert not report.passed
    assert "defines no function named relu_backward" in report.text


def test_missing_file_names_the_path(tmp_path):
    report = check_file(tmp_path / "nowhere.py")
    assert not report.passed
    assert f"no such exercise file: {tmp_path / 'nowhere.py'}" in report.text


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scratchnet.gradcheck", *args], capture_output=True, text=True, timeout=300
    )


def test_cli_exit_status():
    passed = _cli(str(EXERCISE_DIR / "solutions" / "linear_backward.py"))
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "PASSED" in passed.stdout
    stub, solution = EXERCISE_DIR / "linear_backward.py", EXERCISE_DIR / "solutions" / "relu_backward.py"
    failed = _cli(str(stub), str(solution))
    assert failed.returncode == 1
    assert "NOT IMPLEMENTED" in failed.stdout and "relu_backward" in failed.stdout
    listing = _cli("--list")
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in EXERCISES)
