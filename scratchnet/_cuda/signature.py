"""Read the C signatures of the ``__global__`` kernels in a ``.cu`` source.

Both launchers use this: the ``gpu``/``sim`` launch helper (``_cuda/launch.py``) casts every scalar to
the C type the kernel declares, and the simulator refuses a launch whose arguments do not match. Only the
two forms the project's kernels use are recognised::

    extern "C" __global__ void relu_forward_f32(const float* x, float* y, long long n)

    template <typename T>
    __global__ void relu_forward(const T* x, T* y, long long n)   // looked up as relu_forward<float>, ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# C scalar type -> NumPy dtype of the same size (what CuPy passes for a NumPy scalar of that dtype).
C_TYPES: dict[str, np.dtype] = {
    "bool": np.dtype(np.bool_),
    "char": np.dtype(np.int8),
    "signed char": np.dtype(np.int8),
    "unsigned char": np.dtype(np.uint8),
    "short": np.dtype(np.int16),
    "unsigned short": np.dtype(np.uint16),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "unsigned": np.dtype(np.uint32),
    "long long": np.dtype(np.int64),
    "long long int": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
    "size_t": np.dtype(np.uint64),
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
}
TEMPLATE_TYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}
# The C spelling of each dtype, to build template name expressions such as "relu_forward<float>".
C_NAME_OF_DTYPE = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_KERNEL = re.compile(
    r"(?P<template>template\s*<\s*typename\s+(?P<tparam>\w+)\s*>\s*)?"
    r"(?P<externc>extern\s+\"C\"\s+)?"
    r"__global__\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+"
    r"(?P<name>\w+)\s*\((?P<params>[^)]*)\)",
    re.S,
)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``dtype`` is the scalar type, or the element type when ``pointer``."""

    name: str
    dtype: np.dtype
    pointer: bool
    const: bool
    c_type: str  # as written after template substitution, e.g. "const float*"


@dataclass(frozen=True)
class KernelSignature:
    name: str  # the name to look up: "relu_forward<float>" for a template instance
    base_name: str
    params: tuple[Param, ...]
    extern_c: bool


def _parse_param(text: str, tparam: str | None, tvalue: str | None) -> Param:
    text = " ".join(text.replace("*", " * ").split())
    tokens = [t for t in text.split() if t not in ("__restrict__", "__restrict", "restrict")]
    const = "const" in tokens
    tokens = [t for t in tokens if t != "const"]
    pointer = tokens.count("*")
    tokens = [t for t in tokens if t != "*"]
    if pointer > 1 or len(tokens) < 2:
        raise ValueError(f"unsupported kernel parameter {text!r}: use 'T* name' or 'T name'")
    name, base = tokens[-1], " ".join(tokens[:-1])
    if tparam is not None and base == tparam:
        base = tvalue
    if base not in C_TYPES:
        raise ValueError(f"unsupported C type {base!r} in kernel parameter {text!r}")
    c_type = ("const " if const else "") + base + ("*" if pointer else "")
    return Param(name=name, dtype=C_TYPES[base], pointer=bool(pointer), const=const, c_type=c_type)


def parse_kernels(source: str) -> dict[str, KernelSignature]:
    """All kernels in ``source``, keyed by the name to look them up by.

    A template kernel appears once per floating type: ``"name<float>"`` and ``"name<double>"``.
    """
    source = _COMMENTS.sub(" ", source)
    found: dict[str, KernelSignature] = {}
    for m in _KERNEL.finditer(source):
        raw_params = [p for p in m["params"].split(",") if p.strip() and p.strip() != "void"]
        base_name = m["name"]
        if m["template"]:
            for tvalue in TEMPLATE_TYPES:
                params = tuple(_parse_param(p, m["tparam"], tvalue) for p in raw_params)
                name = f"{base_name}<{tvalue}>"
                found[name] = KernelSignature(name, base_name, params, extern_c=False)
        else:
            params = tuple(_parse_param(p, None, None) for p in raw_params)
            found[base_name] = KernelSignature(base_name, base_name, params, extern_c=bool(m["externc"]))
    return found
