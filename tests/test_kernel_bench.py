"""The kernel harness (scratchnet/kernel_bench.py): its report, and the GPU-only timing code driven by a fake
CuPy (no GPU needed)."""

from __future__ import annotations

import numpy as np
import pytest

from scratchnet import kernel_bench


def test_mismatch_report_names_the_first_and_the_worst_wrong_index():
    expected = np.zeros((3, 4))
    out = expected.copy()
    out[1, 2] = 0.5  # first wrong element in C order
    out[2, 0] = -7.0  # the worst
    wrong = np.abs(out - expected) > 1e-6
    text = kernel_bench.describe_mismatches(out, expected, wrong)
    assert text == "2 of 12 wrong; first at (1, 2) = 0.5 (expected 0); worst at (2, 0) = -7 (expected 0)"


def test_mismatch_report_counts_an_unwritten_nan_as_the_worst():
    expected = np.ones(5)
    out = np.array([1.0, 1.5, np.nan, 1.0, 1.0])
    wrong = ~(np.abs(out - expected) <= 1e-6)
    assert "first at (1,)" in (text := kernel_bench.describe_mismatches(out, expected, wrong))
    assert "worst at (2,) = nan" in text


@pytest.mark.sim
def test_report_prints_what_each_version_changed():
    lines = []
    assert kernel_bench.run([kernel_bench.POOL], "sim", np.float32, repeats=1, out=lines.append)
    report = "\n".join(lines)
    for version in kernel_bench.POOL.versions:
        assert f"v{version.number} {version.kernel}" in report and version.about in report
