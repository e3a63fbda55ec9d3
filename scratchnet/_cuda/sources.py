"""Where the ``.cu`` sources live, the header they share, and the ``#define`` constants Python reads.

Kernel files include ``kernels/common.cuh`` (``#include "common.cuh"``): every compiler gets
:func:`kernel_dir` as an include directory, and every cache of compiled kernels keys on
:func:`header_digest` as well as on the source, so that editing the header rebuilds what includes it.

A kernel written for a fixed block size (``#define REDUCE_THREADS 256``) and the Python code that launches
it must agree on that number. Rather than copy it, Python reads it from the source::

    cuda_defines("reduce.cu")["REDUCE_THREADS"]   # 256

so changing the ``#define`` changes the launch too.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import operator
import re
from pathlib import Path

from scratchnet.errors import DeviceError

_PACKAGE = Path(__file__).resolve().parent.parent  # scratchnet/


def kernel_dir() -> Path:
    """The folder holding the ``.cu`` sources: inside the installed package, or ``kernels/`` in a checkout."""
    installed = _PACKAGE / "kernels"
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / "kernels"
    if checkout.is_dir():
        return checkout
    raise DeviceError(f"cannot find the CUDA sources: looked in {installed} and {checkout}")


def kernel_source(filename: str) -> str:
    """The text of ``kernels/<filename>``, with a clear error when it does not exist."""
    path = kernel_dir() / filename
    if not path.is_file():
        raise DeviceError(f"no CUDA source {path}")
    return path.read_text()


def header_digest() -> str:
    """A SHA-256 of the shared headers (``kernels/*.cuh``): names and contents."""
    digest = hashlib.sha256()
    for path in sorted(kernel_dir().glob("*.cuh")):
        digest.update(f"{path.name}\0{path.read_text()}\0".encode())
    return digest.hexdigest()


# `#define NAME value  // comment`: a constant, not a function-like macro `#define F(x) ...`.
_DEFINE = re.compile(r"^\s*#\s*define\s+([A-Za-z_]\w*)[ \t]+(.+?)\s*(?://.*)?$", re.M)
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU])\b")
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}


@functools.cache
def cuda_defines(filename: str) -> dict[str, int]:
    """The integer ``#define`` constants of ``kernels/<filename>``, e.g. ``{"TILE": 16}`` (see
    :func:`parse_defines`)."""
    return parse_defines(kernel_source(filename), f"kernels/{filename}")


def parse_defines(source: str, where: str = "the source") -> dict[str, int]:
    """The integer ``#define`` constants of a CUDA source.

    Values may be integer literals (``256``, ``0x9E37...ULL``) or ``+ - * /`` expressions of literals and
    earlier constants (``(V5_BM / V5_TM) * 2``); C's integer ``/`` is Python's ``//`` for these positive
    values. Any other ``#define`` is an error, so a constant Python relies on can never be misread.
    """
    defines: dict[str, int] = {}
    for name, text in _DEFINE.findall(source):
        expression = _INT_SUFFIX.sub(r"\1", text).replace("/", "//")
        try:
            defines[name] = _evaluate(ast.parse(expression, mode="eval").body, defines)
        except (SyntaxError, ValueError) as e:
            raise ValueError(f"{where}: cannot read #define {name} {text} ({e})") from None
    return defines


def _evaluate(node: ast.AST, known: dict[str, int]) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in known:
        return known[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left, known), _evaluate(node.right, known))
    raise ValueError("not an integer expression of literals and earlier #defines")


# `__global__ __launch_bounds__(V4_THREADS) void gemm_v4_blocktile_1d(`
_LAUNCH_BOUNDS = re.compile(r"__launch_bounds__\s*\(\s*(\w+)\s*\)\s*void\s+(\w+)")
DEFAULT_BLOCK = 256  # the block size of every launch without __launch_bounds__ (launch_1d's default too)


def launch_bounds(filename: str) -> dict[str, int]:
    """The most threads per block each kernel of ``kernels/<filename>`` is launched with: its
    ``__launch_bounds__`` (a literal or a ``#define``), else :data:`DEFAULT_BLOCK`. Keyed by base name."""
    source = kernel_source(filename)
    defines = cuda_defines(filename)
    bounds = {name: DEFAULT_BLOCK for name in re.findall(r"__global__[^(]*?(\w+)\s*\(", source)}
    for value, name in _LAUNCH_BOUNDS.findall(source):
        bounds[name] = int(value) if value.isdigit() else defines[value]
    return bounds
