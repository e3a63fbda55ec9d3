"""Checkers of the CUDA kernel exercises in the lessons: the learner completes a kernel source string in a
notebook cell, and ``check("relu-kernel", relu_source)`` runs it through :mod:`.kernel_checker`
(compiled with NVRTC, run on the simulator for several shapes and thread orders, the mistake named)."""

from __future__ import annotations

from scratchnet.exercises import Report, register


def _register_kernel_exercise(exercise_id: str, exercise: str, title: str) -> None:
    @register(exercise_id, names=(f"{exercise}_source",), title=title)
    def checker(report: Report, source) -> None:
        # Imported here: the kernel checker imports this package for its Report.
        from scratchnet.exercises.kernel_checker import check_source

        if not isinstance(source, str):
            report.fail(
                f"pass the kernel source as a string (the text of the .cu code), got {type(source).__name__}"
            )
            return
        result = check_source(exercise, source, filename=f"{exercise_id}.cu")
        report.lines, report.hints = result.lines, result.hints
        report.passed, report.not_done = result.passed, result.not_done


for _id, _exercise, _title in (
    ("relu-kernel", "relu", "ReLU forward and backward kernels, one thread per element"),
    ("gemm-naive-kernel", "gemm_naive", "a naive GEMM kernel, one thread per element of C"),
    ("gemm-tiled-kernel", "gemm_tiled", "a shared-memory tiled GEMM kernel"),
    ("softmax-rows-kernel", "softmax_rows", "a block reduction: the row max and sum of a softmax"),
    ("warp-reduce-kernel", "warp_reduce", "a warp reduction with shuffles: each row minus its mean"),
    ("gemm-register-blocked-kernel", "gemm_register_blocked", "a register-blocked GEMM kernel"),
    ("online-softmax-kernel", "online_softmax", "an online softmax: one pass, merged with xor shuffles"),
):
    _register_kernel_exercise(_id, _exercise, _title)
