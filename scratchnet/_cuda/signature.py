"""The C signature of every ``__global__`` kernel of a ``.cu`` source, as the compiler compiled it.

A launch must pass each argument as exactly the C type the kernel was compiled with (CuPy passes a Python
``int`` as ``long long`` whatever the kernel declares), so both devices need each kernel's parameter types.
Reading them from the source text with a regular expression breaks on real CUDA code: typedefs (``uint``,
``floatX``, ``int64_t``), macros, several or non-type template parameters, ``__launch_bounds__`` in its
two positions, struct and ``float4*`` parameters, default arguments. So the types come from a compiler:

1. **Which kernels.** The source is preprocessed by the host C++ compiler with the simulator's header
   (``scratchnet/sim/cuda_sim.h``), which, in this pass, turns ``__global__`` into a marker. The scan
   (:func:`scan_kernels`) then only has to find, after each marker, the function name and, before it,
   ``extern "C"`` and a ``template <...>`` head: macros are expanded, comments gone.
2. **Their types.** The kernels are compiled by the simulator's build (cached by a hash of the source),
   whose generated wrapper records, for each kernel or name expression, the parameter types the C++
   compiler deduced (``sim_rt::describe`` in ``cuda_sim.h``): typedefs, templates and ``decltype`` are
   resolved by the compiler, not guessed.

Both devices use this one path: the ``gpu`` device needs the host C++ compiler for it too (once per source,
cached). The alternative, compiling with NVRTC and demangling the lowered names, would tie the signatures to
the GPU toolchain yet says nothing for ``extern "C"`` kernels (their symbols are not mangled), and the
simulator would still need its own reading; one compiler for both keeps ``sim`` and ``gpu`` in agreement.

A template with exactly one type parameter (``template <typename T>``) is listed as ``name<float>`` and
``name<double>``; other templates (several or non-type parameters) only as the name expressions a caller
passes, e.g. ``parse_kernels(source, ["sgemm<64, 8>"])``.

This module is the model (the C types, a kernel's parameters, reading the compiled description); the
compiler pass itself is the simulator's build, :func:`scratchnet.sim.parse_kernels`, and
:func:`scratchnet.device.load_kernels` joins the two, so that this toolchain imports no simulator.
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
# The canonical C name of each scalar dtype by kind and size ("i4"), for c_type and messages (``long`` and
# ``long long`` are both int64).
C_NAME_OF_KIND = {
    "b1": "bool",
    "i1": "signed char",
    "u1": "unsigned char",
    "i2": "short",
    "u2": "unsigned short",
    "i4": "int",
    "u4": "unsigned int",
    "i8": "long long",
    "u8": "unsigned long long",
    "f4": "float",
    "f8": "double",
}

MARKER = "__scratchnet_kernel__"  # what __global__ becomes in the scan pass (cuda_sim.h)


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``dtype`` is the scalar type, or the element type when ``pointer``.

    A CUDA vector type counts as its element (a ``float4*`` takes a float32 array, ``lanes`` = 4); any other
    struct has a ``void`` dtype of its size (``np.dtype("V8")``) and ``lanes`` = 1.
    """

    name: str
    dtype: np.dtype
    pointer: bool
    const: bool
    c_type: str  # e.g. "const float*", "long long", "float4*", "Params"
    lanes: int = 1


@dataclass(frozen=True)
class KernelSignature:
    name: str  # the name to look up: "relu_forward<float>" for a template instance
    base_name: str
    params: tuple[Param, ...]
    extern_c: bool


@dataclass(frozen=True)
class ScannedKernel:
    """A ``__global__`` function found by :func:`scan_kernels`, before its types are known."""

    base_name: str
    extern_c: bool
    template_params: tuple[str, ...] | None  # None for a non-template
    param_names: tuple[str, ...]

    @property
    def instances(self) -> list[str]:
        """The names to look it up by without a name expression from the caller."""
        if self.template_params is None:
            return [self.base_name]
        single_type = len(self.template_params) == 1 and re.match(
            r"(typename|class)\b(?!.*=)", self.template_params[0]
        )
        return [f"{self.base_name}<{t}>" for t in TEMPLATE_TYPES] if single_type else []


_STRINGS = re.compile(r'"(?:[^"\\\n]|\\.)*"' + r"|'(?:[^'\\\n]|\\.)*'")
_EVENTS = re.compile(rf'extern\s*"C"\s*\{{|[{{}};]|\b{MARKER}\b')
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def _matching(text: str, start: int, opening: str, closing: str) -> int:
    """Index just past the bracket that closes ``text[start]`` (an ``opening``)."""
    depth = 0
    for i in range(start, len(text)):
        depth += (text[i] == opening) - (text[i] == closing)
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced '{opening}' in a kernel declaration")


def _split_top_level(text: str) -> list[str]:
    """Split at the commas outside (), <>, [] and {}."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += (char in "(<[{") - (char in ")>]}")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _param_name(text: str, index: int) -> str:
    """The name of a parameter declaration such as ``const float* __restrict__ x = nullptr``."""
    declarator = text.split("=", 1)[0]
    declarator = re.sub(r"\[[^\]]*\]", "", declarator)
    words = _IDENTIFIER.findall(declarator)
    keywords = {"const", "volatile", "unsigned", "signed", "__restrict", "__restrict__", "restrict", "struct"}
    if len(words) >= 2 and words[-1] not in keywords and not declarator.rstrip().endswith(("*", "&")):
        return words[-1]
    return f"#{index}"


def scan_kernels(preprocessed: str) -> list[ScannedKernel]:
    """The kernels of a source preprocessed with ``__global__`` turned into :data:`MARKER`."""
    code = _STRINGS.sub(lambda m: m[0] if m[0] == '"C"' else '""', preprocessed)
    kernels, extern_c_blocks, statement_start = [], [False], 0
    for event in _EVENTS.finditer(code):
        token = event[0]
        if token == MARKER:
            head = code[statement_start : event.start()]
            after = code[event.end() :]
            call = re.search(r"([A-Za-z_]\w*)\s*\(", after)
            if call is None:
                continue
            open_paren = event.end() + call.end() - 1
            params_text = code[open_paren + 1 : _matching(code, open_paren, "(", ")") - 1]
            params = [p for p in _split_top_level(params_text) if p != "void"]
            template = re.search(r"\btemplate\s*<", head)
            template_params = None
            if template:
                start = head.index("<", template.start())
                template_params = tuple(
                    _split_top_level(head[start + 1 : _matching(head, start, "<", ">") - 1])
                )
                if not template_params:  # template <> : an explicit specialisation, not a new kernel
                    continue
            kernels.append(
                ScannedKernel(
                    base_name=call[1],
                    extern_c=bool(re.search(r'extern\s*"C"', head)) or extern_c_blocks[-1],
                    template_params=template_params,
                    param_names=tuple(_param_name(p, i) for i, p in enumerate(params)),
                )
            )
        elif token == "{" or token.startswith("extern"):
            extern_c_blocks.append(token.startswith("extern") or extern_c_blocks[-1])
            statement_start = event.end()
        elif token == "}":
            if len(extern_c_blocks) > 1:
                extern_c_blocks.pop()
            statement_start = event.end()
        else:
            statement_start = event.end()
    return list({k.base_name: k for k in kernels}.values())  # a declaration and its definition: one kernel


def param_from_description(text: str, name: str) -> Param:
    """A :class:`Param` from the compiled description ``pointer|const|kind|size|lanes|type name``."""
    pointer, const, kind, size, lanes, type_name = text.split("|", 5)
    if pointer == "2":
        raise ValueError(
            f"unsupported kernel parameter '{type_name}** {name}': a pointer to a pointer cannot be passed "
            "from Python; pass one flat array and offsets"
        )
    key = f"{kind}{size}"
    if kind == "V" or (lanes != "1" and pointer == "0"):  # a struct, or a vector type, by value
        dtype = np.dtype(f"V{int(size) * int(lanes)}")
    else:
        dtype = np.dtype(bool) if kind == "b" else np.dtype(key)
    spelled = C_NAME_OF_KIND.get(key, type_name) if lanes == "1" and kind != "V" else type_name
    c_type = ("const " if const == "1" else "") + spelled + ("*" if pointer == "1" else "")
    return Param(
        name=name, dtype=dtype, pointer=pointer == "1", const=const == "1", c_type=c_type, lanes=int(lanes)
    )


def signature_from_description(name: str, description: str, scanned: ScannedKernel | None) -> KernelSignature:
    """The signature of kernel ``name`` from the compiled description of its parameters (``;``-separated)."""
    items = [d for d in description.split(";") if d]
    names = list(scanned.param_names) if scanned and len(scanned.param_names) == len(items) else []
    names = names or [f"#{i}" for i in range(len(items))]
    params = tuple(param_from_description(d, n) for d, n in zip(items, names, strict=True))
    base_name = name.split("<", 1)[0].strip()
    return KernelSignature(name, base_name, params, extern_c=bool(scanned and scanned.extern_c))
