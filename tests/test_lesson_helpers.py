"""The helpers the lesson notebooks call besides ``check``: ``claim`` (a hidden cell's verdict on the prose
beside a demo), ``pin_blas_threads`` (the first cell of every lesson) and ``lesson_seed`` (the seed of a
lesson's demos)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from scratchnet.exercises import claim, lesson_seed, pin_blas_threads

ROOT = Path(__file__).resolve().parent.parent


def test_claim_prints_one_line_and_never_raises(capsys):
    claim("falls", True, "loss 2.3 -> 0.4")
    claim("rises", 0 > 1, "loss 0.4 -> 0.5")
    assert capsys.readouterr().out.splitlines() == [
        "claim falls: holds (loss 2.3 -> 0.4)",
        "claim rises: FAILS (loss 0.4 -> 0.5)",
    ]


def _blas_threads_after_pinning(setting: str | None) -> str:
    """What a fresh Python prints when it calls pin_blas_threads() under `setting`, then its BLAS threads."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.pop("SCRATCHNET_BLAS_THREADS", None)
    if setting is not None:
        env["SCRATCHNET_BLAS_THREADS"] = setting
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    program = (
        "import numpy, threadpoolctl\n"
        "from scratchnet.exercises import pin_blas_threads\n"
        "pin_blas_threads()\n"
        "info = threadpoolctl.threadpool_info()\n"
        "print(sorted({pool['num_threads'] for pool in info if pool['user_api'] == 'blas'}))"
    )
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_pin_blas_threads_one_unless_told_otherwise():
    unset, two = _blas_threads_after_pinning(None), _blas_threads_after_pinning("2")
    assert unset.startswith("BLAS threads: 1.") and unset.endswith("[1]\n"), unset
    assert two.startswith("BLAS threads: 2 (SCRATCHNET_BLAS_THREADS)") and two.endswith("[2]\n"), two
    untouched = _blas_threads_after_pinning("default")
    assert untouched.startswith("BLAS threads: the BLAS library's default"), untouched


@pytest.mark.parametrize("setting", ["0", "two", "-1", "1.5"])
def test_pin_blas_threads_names_a_bad_setting(monkeypatch, setting):
    monkeypatch.setenv("SCRATCHNET_BLAS_THREADS", setting)
    with pytest.raises(ValueError, match=f"SCRATCHNET_BLAS_THREADS is '{setting}'"):
        pin_blas_threads()


def test_lesson_seed_is_zero_unless_told_otherwise(monkeypatch, capsys):
    monkeypatch.delenv("SCRATCHNET_LESSON_SEED", raising=False)
    assert lesson_seed() == 0
    assert capsys.readouterr().out == ""  # the learner's lesson says nothing about a seed it did not choose
    monkeypatch.setenv("SCRATCHNET_LESSON_SEED", " 2 ")
    assert lesson_seed() == 2
    assert capsys.readouterr().out == "seed: 2 (SCRATCHNET_LESSON_SEED)\n"


@pytest.mark.parametrize("setting", ["", "one", "-1", "1.5"])
def test_lesson_seed_names_a_bad_setting(monkeypatch, setting):
    monkeypatch.setenv("SCRATCHNET_LESSON_SEED", setting)
    with pytest.raises(ValueError, match="SCRATCHNET_LESSON_SEED is"):
        lesson_seed()


def _collected(*options: str) -> list[str]:
    """The test ids `pytest --collect-only` lists for tests/test_lessons.py with `options`."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *options]
    done = subprocess.run([*command, "tests/test_lessons.py"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_the_lessons_on_other_seeds_run_only_when_named():
    """CI's plain run and -m lessons leave out the half-hour seed runs; -m lesson_seeds selects only them."""
    seeds = "test_claims_hold_on_every_seed_and_thread_count"
    for options in ((), ("-m", "lessons"), ("-m", "slow")):
        assert not [test for test in _collected(*options) if seeds in test], options
    selected = _collected("-m", "lesson_seeds")
    assert selected and all(seeds in test for test in selected)
    assert any("15_transfer_learning.ipynb-2-2" in test for test in selected)  # seed 2, two BLAS threads
