"""Build a ``.cu`` source into a shared library the simulator can load, with a cache.

The library is two C++ translation units. ``module.cpp`` is generated here::

    ... definitions of the extern __shared__ (dynamic shared memory) arrays ...
    #include "relu.cu"        // the kernel file, unmodified; cuda_sim.h is force-included (-include) first
    ... per kernel, a function running one CUDA thread (it unpacks void** args into typed parameters) and
    ... one describing its parameter types as the compiler deduced them
    ... the kernel table that runtime.cpp reads

``runtime.cpp`` (the scheduler and the C interface that launcher.py calls) is the other, so that a macro of
the kernel file (``#define T 16``) cannot reach it. ``#include <cooperative_groups.h>`` resolves to the
simulator's own version in ``include/``.

Which kernels a source has is read by :func:`scan`, from the source preprocessed with ``__global__`` kept as
a marker (see :mod:`scratchnet._cuda.signature`); their parameter types by loading the built library once
and asking it (``sim_kernel_signature``), stored next to it.

Builds are cached under ``$SCRATCHNET_CACHE/sim`` (else ``$XDG_CACHE_HOME/scratchnet/sim``, else
``~/.cache/scratchnet/sim``), keyed by a hash of everything that affects the result: the source, the kernel
names, the headers it may include (the simulator's, and ``kernels/*.cuh``), the simulator's sources, the
compiler command and its version. Files appear in the cache by an atomic rename, so processes building the
same module at once never see half-written files.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import string
import subprocess
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from scratchnet._cuda import sources
from scratchnet._cuda.limits import MAX_SHARED_BYTES
from scratchnet._cuda.signature import (
    KernelSignature,
    ScannedKernel,
    scan_kernels,
    signature_from_description,
)
from scratchnet._paths import cache_root
from scratchnet.errors import DeviceError
from scratchnet.sim.checks import CHECK_FLAGS, INSTRUMENTED

HERE = Path(__file__).resolve().parent
HEADER = HERE / "cuda_sim.h"
INCLUDE = HERE / "include"  # cooperative_groups.h and the CUDA headers a kernel file may include
RUNTIME = HERE / "runtime.cpp"
CACHE_FORMAT = 5  # bump when what build() stores in the cache changes

# -O2 because the layer tests (float64 finite differences included) run every kernel many times.
# Warnings that correct CUDA code triggers on a host compiler (comparing threadIdx.x, an unsigned int, with
# an int size) are switched off; the rest are shown.
CXX_FLAGS = [
    *("-std=c++17", "-O2", "-fPIC", "-shared", "-pthread", "-fvisibility=hidden"),
    *("-Wall", "-Wno-sign-compare"),
]

# extern __shared__ float smem[];   (also `extern float __shared__ smem[];`, any element type, and with
# __align__(16), __align__(sizeof(T)) or alignas(16) among the words), at file scope or inside a kernel: both
# placements name the one array the wrapper defines.
_ALIGN_ATTRIBUTE = r"(?:__align__|alignas)\s*\((?:[^()]|\([^()]*\))*\)"
_ALIGNMENT = rf"(?:{_ALIGN_ATTRIBUTE}\s*)?"
_EXTERN_SHARED = re.compile(r"extern\s+(?P<words>(?:[\w\s:<>,]|\((?:[^()]|\([^()]*\))*\))*?)\[\s*\]")
_EXTERN_SHARED_START = re.compile(r'\bextern\b(?=[^;{}"]*?\b__shared__\b)')
_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


class CompileError(DeviceError):
    """The host C++ compiler rejected a kernel file; the message holds the compiler's output."""


class SimCompilerWarning(UserWarning):
    """The host C++ compiler printed warnings for a kernel file."""


def find_compiler() -> str:
    """The host C++ compiler: ``$CXX``, else g++ (Linux) or clang++ (macOS), else ``c++``."""
    if os.environ.get("CXX"):
        path = shutil.which(os.environ["CXX"])
        if path is None:
            raise DeviceError(f"$CXX is {os.environ['CXX']!r}, which is not an executable on the PATH")
        return path
    preferred = ["clang++", "g++"] if platform.system() == "Darwin" else ["g++", "clang++"]
    for name in [*preferred, "c++"]:
        path = shutil.which(name)
        if path:
            return path
    raise DeviceError(
        "the CUDA simulator needs a C++ compiler and found none (looked for g++, clang++, c++); "
        "install one, e.g. `sudo apt install g++` or `xcode-select --install`"
    )


def _compiler_specific_flags(compiler: str) -> list[str]:
    # __shared__ variables are thread_local (see cuda_sim.h), so `extern __shared__ float s[];` is an
    # `extern thread_local` declaration. For such a variable g++ cannot know whether another translation
    # unit gives it a dynamic initialiser, so each access first calls its "TLS init function" (_ZTH1s), a
    # weak symbol that stays undefined (address 0) because nothing defines it. Outside templates g++ tests
    # the address before the call; for a declaration inside a template kernel (g++ 12 at least) it calls
    # unconditionally: a jump to address 0, the "memory fault" of the usual
    # `extern __shared__ unsigned char smem[];` idiom. -fno-extern-tls-init tells g++ that no extern
    # thread_local variable has a dynamic initialiser (true: they are plain arrays), so it emits no call.
    # clang tests the address in every case, and macOS's TLS scheme has no init functions at all.
    if "clang" in compiler_version(compiler).lower():
        return []
    # __shared__ memory is thread-local, and a library's thread-local variables are found through a call
    # (to __tls_get_addr) each time a kernel needs their address: once per tile of a tiled kernel. On x86-64,
    # TLS descriptors (gnu2) make that call a few instructions instead of a full function call.
    descriptors = ["-mtls-dialect=gnu2"] if platform.machine() in ("x86_64", "AMD64") else []
    return ["-fno-extern-tls-init", *descriptors]


@functools.cache
def compiler_version(compiler: str) -> str:
    result = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def cache_dir() -> Path:
    """Where builds are cached: ``sim/`` under scratchnet's cache folder (``scratchnet._paths``)."""
    return cache_root("SCRATCHNET_CACHE") / "sim"


@dataclass(frozen=True)
class Build:
    """A compiled module: the library, the kernel names in table order, static shared bytes and the
    signature of each kernel."""

    library: Path
    kernel_names: tuple[str, ...]
    static_shared_bytes: dict[str, int]
    signatures: dict[str, KernelSignature]


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def _include_flags() -> list[str]:
    """The simulator's CUDA headers, then kernels/ (the kernel files' shared ``common.cuh``)."""
    return ["-I", str(INCLUDE), "-I", str(sources.kernel_dir())]


def scan(source: str, filename: str | None = None) -> list[ScannedKernel]:
    """The ``__global__`` kernels of ``source`` (cached): preprocessed by the host compiler, so macros and
    comments cannot hide or fake one."""
    compiler = find_compiler()
    command = [compiler, "-E", "-P", "-std=c++17", "-DSCRATCHNET_SIM_SCAN", *_include_flags()]
    command += ["-include", str(HEADER), "-x", "c++", "-"]
    key = _hash(
        CACHE_FORMAT,
        "scan",
        source,
        HEADER.read_text(),
        sources.header_digest(),
        command,
        compiler_version(compiler),
    )
    cached = cache_dir() / f"scan-{key}.json"
    try:
        return [
            ScannedKernel(k[0], k[1], None if k[2] is None else tuple(k[2]), tuple(k[3]))
            for k in json.loads(cached.read_text())
        ]
    except (OSError, ValueError, TypeError, IndexError):
        pass  # not cached yet, or unreadable: scan again
    shown_name = filename or "kernel.cu"
    text = f'#line 1 "{shown_name}"\n{source}'
    result = subprocess.run(command, input=text, capture_output=True, text=True, check=False)
    if result.returncode == 0 and "sim_rt" not in result.stdout:  # not even cuda_sim.h came out
        raise CompileError(
            f"{compiler} did not preprocess {shown_name} (it printed nothing a C++ preprocessor prints); "
            "set $CXX to a C++ compiler (g++ or clang++)"
        )
    if result.returncode != 0:
        raise CompileError(
            f"the host C++ compiler could not preprocess {shown_name}:\n{result.stderr.strip()}"
        )
    try:
        kernels = scan_kernels(result.stdout)
    except ValueError as error:
        raise DeviceError(f"{shown_name}: cannot read the kernel declarations: {error}") from None
    _write_atomically(
        cached, json.dumps([[k.base_name, k.extern_c, k.template_params, k.param_names] for k in kernels])
    )
    return kernels


def _write_atomically(path: Path, text: str) -> None:
    with _writing_cache():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix="tmp-", delete=False) as file:
            file.write(text)
        os.replace(file.name, path)


@contextlib.contextmanager
def _writing_cache():
    """A cache folder that cannot be written becomes a DeviceError that names it and the way out (rather
    than an OSError that a training run would take for its own run folder's)."""
    try:
        yield
    except OSError as error:
        if not str(error.filename or "").startswith(str(cache_dir())):
            raise
        raise DeviceError(
            f"the simulator cannot write its build cache {cache_dir()} ({error.strerror or error}); "
            "set SCRATCHNET_CACHE to a writable folder"
        ) from None


def kernel_names(scanned: list[ScannedKernel], name_expressions: list[str]) -> list[str]:
    """The kernels to build, sorted: every non-template kernel of the source, then each name expression."""
    names = [k.base_name for k in scanned if k.template_params is None]
    return sorted(set(names) | set(name_expressions))


def dynamic_shared_arrays(source: str) -> list[tuple[str, str]]:
    """``(element type, name)`` of each distinct ``extern __shared__`` array in ``source``.

    The wrapper must define every one of them (an undefined one would only fail when the library loads,
    with a linker message), so a declaration this function cannot read is an error here.
    """
    code = _COMMENTS.sub(lambda comment: " " + "\n" * comment[0].count("\n"), source)  # keeps line numbers
    arrays: dict[str, str] = {}
    for start in _EXTERN_SHARED_START.finditer(code):
        m = _EXTERN_SHARED.match(code, start.start())
        words = re.sub(_ALIGN_ATTRIBUTE, " ", m["words"]).split() if m else []
        if "__shared__" in words:
            words.remove("__shared__")
        if len(words) < 2 or not words[-1].isidentifier():
            line = code.count("\n", 0, start.start()) + 1
            text = code[start.start() :].split(";", 1)[0].strip()
            raise DeviceError(
                f"line {line}: cannot read the dynamic shared memory declaration '{text}'; the simulator "
                "reads `extern __shared__ [__align__(N)] <type> <name>[];`"
            )
        element, name = " ".join(words[:-1]), words[-1]
        plain = " ".join(w for w in words[:-1] if w not in ("const", "volatile"))
        if re.search(rf"\btemplate\s*<[^>]*\b(?:class|typename)\s+{re.escape(plain)}\b", code):
            raise DeviceError(
                f"extern __shared__ array '{name}' has the template parameter '{plain}' as its element type; "
                "the simulator (like nvcc, for more than one instance) needs one type: declare `extern "
                f"__shared__ unsigned char {name}[];` and cast the pointer"
            )
        if arrays.setdefault(name, element) != element:
            raise DeviceError(
                f"extern __shared__ array '{name}' is declared as both '{arrays[name]}' and '{element}'; "
                "all its declarations name one array (nvcc rejects this too): give them different names"
            )
    return [(element, name) for name, element in arrays.items()]


# A static __shared__ declaration: `__shared__` and everything up to the `;` that ends it (no braces between).
_SHARED_DECLARATION = re.compile(r"\b__shared__\b[^;{}]*;")
# What may stand on the line before a static `__shared__` declaration: `static`, alignment, `volatile`.
_SHARED_PREFIX = re.compile(rf"\s*(?:(?:static|volatile)\s+|{_ALIGNMENT})*")
SHARED_REDZONE_PREFIX = "sim_shared_redzone_"  # cuda_sim.h's SIM_SHARED_REDZONE names its arrays so


def with_shared_redzones(source: str) -> str:
    """``source`` with ``SIM_SHARED_REDZONE(n)`` (cuda_sim.h) before and after each static ``__shared__``
    declaration, on the same lines, for a checked build.

    The compiler lays the arrays out next to each other, so a thread running off the end of one would land
    in its neighbour, a valid address. Between redzones, whichever order the arrays get, it lands in a
    redzone, which memcheck reports with the array's name. Declarations in macros or after other code on
    their line, and dynamic shared memory (``extern __shared__``, guarded by its reservation), are left as
    they are.
    """
    code = _COMMENTS.sub(lambda c: re.sub(r"[^\n]", " ", c[0]), source)  # blanked: positions stay
    insertions: list[tuple[int, str]] = []
    for number, m in enumerate(_SHARED_DECLARATION.finditer(code)):
        line_start = code.rfind("\n", 0, m.start()) + 1
        before = code[line_start : m.start()]
        if _SHARED_PREFIX.fullmatch(before) is None:
            continue  # `extern`, a `#define`, or other code before it on its line: leave it alone
        start = line_start + len(before) - len(before.lstrip())
        insertions += [
            (start, f"SIM_SHARED_REDZONE({2 * number}) "),
            (m.end(), f" SIM_SHARED_REDZONE({2 * number + 1})"),
        ]
    for position, text in sorted(insertions, reverse=True):
        source = source[:position] + text + source[position:]
    return source


_WRAPPER = string.Template(
    """\
#include "$source_file"

// The dynamic shared memory (extern __shared__ arrays), sized for the largest launch; after the kernel
// file, which defines the element types.
$shared_definitions

// After the kernel file, only names that its macros are unlikely to touch (sim_rt::..., sim_thread_*).
namespace sim_rt {
int dynamic_shared_count() { return $shared_count; }
unsigned char* dynamic_shared_address(int i) {
    switch (i) {$shared_address_cases}
    return nullptr;
}
const char* dynamic_shared_name(int i) {
    switch (i) {$shared_name_cases}
    return "";
}

// One CUDA thread of each kernel, and its parameter types.
$thread_bodies
static const KernelEntry sim_kernel_table[] = {$kernel_entries};
int kernel_count() { return $kernel_count; }
const KernelEntry& kernel_entry(int i) { return sim_kernel_table[i]; }
}  // namespace sim_rt
"""
)


def generate_wrapper(source_file: str, names: list[str], shared: list[tuple[str, str]]) -> str:
    """The module's C++ source; ``names`` are kernel names or name expressions, ``shared`` the
    ``(element type, name)`` of each ``extern __shared__`` array."""
    return _WRAPPER.substitute(
        source_file=source_file,
        shared_definitions="\n".join(
            f"__shared__ {element} {name}[{MAX_SHARED_BYTES} / sizeof({element})] __align__(256);"
            for element, name in shared
        ),
        shared_count=len(shared),
        shared_address_cases="".join(
            f"\n    case {i}: return (unsigned char*){name};" for i, (_, name) in enumerate(shared)
        ),
        shared_name_cases="".join(f'\n    case {i}: return "{name}";' for i, (_, name) in enumerate(shared)),
        thread_bodies="\n".join(
            f"SIM_UNCHECKED static void sim_thread_body_{i}(void** args) {{ invoke(&{name}, args); }}\n"
            f"static std::string sim_thread_describe_{i}() {{ return describe(&{name}); }}"
            for i, name in enumerate(names)
        ),
        kernel_entries=", ".join(
            f"{{sim_thread_body_{i}, sim_thread_describe_{i}}}" for i in range(len(names))
        ),
        kernel_count=len(names),
    )


def build(
    source: str,
    name_expressions: list[str],
    filename: str | None = None,
    checks: frozenset[str] = frozenset(),
    debug: bool = False,
) -> Build:
    """Compile ``source`` (or reuse the cached build) and return where the library is.

    ``checks`` that need instrumentation (:data:`checks.INSTRUMENTED`) make a checked build, ``debug`` a
    ``-O0 -g`` build for gdb; each is its own cache entry.
    """
    compiler = find_compiler()
    scanned = scan(source, filename)
    names = kernel_names(scanned, name_expressions)
    if not names:
        raise DeviceError(f"{filename or 'the source'} has no __global__ kernels to build")
    try:
        shared = dynamic_shared_arrays(source)
    except DeviceError as error:
        raise DeviceError(f"{filename or 'the source'}: {error}") from None
    flags = [*CXX_FLAGS, *_compiler_specific_flags(compiler), *_include_flags(), "-include", str(HEADER)]
    module_flags = [*(["-O0", "-g"] if debug else []), *(CHECK_FLAGS if checks & INSTRUMENTED else [])]
    if checks & INSTRUMENTED:
        source = with_shared_redzones(source)
    key = _hash(
        CACHE_FORMAT,
        source,
        filename,  # compiled into messages and line information
        names,
        HEADER.read_text(),
        sources.header_digest(),  # kernels/common.cuh, which the kernel files include
        RUNTIME.read_text(),
        *[path.read_text() for path in sorted(INCLUDE.rglob("*.h"))],
        compiler,
        flags,
        module_flags,
        compiler_version(compiler),
    )
    directory = cache_dir()
    library, info_file = directory / f"{key}.so", directory / f"{key}.json"
    info = _verified_entry(library, info_file, names)
    if info is None:  # not built yet, or a damaged entry (truncated, emptied, replaced): build it again
        with _writing_cache():
            directory.mkdir(parents=True, exist_ok=True)
            remove_orphan_builds(directory)
            _compile(
                compiler, flags, module_flags, source, names, shared, filename, directory, library, info_file
            )
        info = _verified_entry(library, info_file, names)
        if info is None:
            raise DeviceError(f"the simulator's build cache {directory} does not keep what was written to it")
    if info["compiler_warnings"]:  # shown on every load, not only when the build was made
        warnings.warn(
            f"compiler warnings for {filename or 'kernel.cu'}:\n{info['compiler_warnings']}",
            SimCompilerWarning,
            stacklevel=3,
        )
    by_base_name = {k.base_name: k for k in scanned}
    try:
        signatures = {
            name: signature_from_description(
                name, info["signatures"][name], by_base_name.get(name.split("<")[0].strip())
            )
            for name in names
        }
    except ValueError as error:  # a parameter type that cannot be passed from Python
        raise ValueError(f"{filename or 'the source'}: {error}") from None
    return Build(library, tuple(names), info["static_shared_bytes"], signatures)


def _file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _verified_entry(library: Path, info_file: Path, names: list[str]) -> dict | None:
    """The cache entry's info if the library is exactly the one built (size and SHA-256 recorded at build
    time) and the info is complete; else ``None``. Loading a truncated library would kill the process
    (SIGBUS), so it is never loaded unchecked."""
    try:
        info = json.loads(info_file.read_text())
        valid = (
            isinstance(info, dict)
            and set(names) <= set(info["signatures"])
            and isinstance(info["static_shared_bytes"], dict)
            and isinstance(info["compiler_warnings"], str)
            and library.stat().st_size == info["library_bytes"]
            and _file_digest(library) == info["library_sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if valid else None


def remove_orphan_builds(directory: Path) -> None:
    """Remove the ``build-*`` folders that processes killed mid-build left behind. Each build writes its
    process id into its folder: a folder whose process still runs is spared. Several processes may tidy
    at once (the ranks of a data-parallel run, parallel test runs), so a folder another one has just
    removed is simply gone, not an error."""
    for folder in directory.glob("build-*"):
        try:
            pid = int((folder / "pid").read_text())
            os.kill(pid, 0)  # raises ProcessLookupError when no process has this id any more
            continue
        except ProcessLookupError:
            pass
        except (OSError, ValueError):  # no pid yet (just created) or unreadable: only if old
            try:
                if time.time() - folder.stat().st_mtime < 3600:
                    continue
            except FileNotFoundError:
                continue  # removed by another process meanwhile
        shutil.rmtree(folder, ignore_errors=True)


def parse_kernels(source: str, name_expressions: Sequence[str] = ()) -> dict[str, KernelSignature]:
    """All kernels in ``source`` (plus ``name_expressions``), keyed by the name to look them up by.

    A template kernel with one type parameter appears once per floating type: ``"name<float>"`` and
    ``"name<double>"``; the types as compiled (see :mod:`scratchnet._cuda.signature`). Compiles ``source``
    with the host C++ compiler (cached); a source that does not compile raises :class:`CompileError`, a
    parameter that cannot be passed ``ValueError``.
    """
    scanned = scan(source)
    instances = [name for k in scanned if k.template_params is not None for name in k.instances]
    with warnings.catch_warnings():  # host compiler warnings belong to sim's load_module, not to this pass
        warnings.simplefilter("ignore", SimCompilerWarning)
        signatures = build(source, [*instances, *name_expressions]).signatures
    order = [name for k in scanned for name in k.instances] + list(name_expressions)
    return {name: signatures[name] for name in dict.fromkeys(order)}


def _read_descriptions(library: Path, count: int) -> list[str]:
    """Each kernel's parameter description, from the freshly built library."""
    loaded = ctypes.CDLL(str(library))
    loaded.sim_kernel_signature.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    descriptions = []
    for index in range(count):
        text = ctypes.create_string_buffer(8192)
        loaded.sim_kernel_signature(index, text, len(text))
        descriptions.append(text.value.decode())
    return descriptions


def _runtime_object(compiler: str, flags: list[str], directory: Path) -> Path:
    """runtime.cpp compiled once per compiler and flags (cached), linked into every module."""
    key = _hash(
        CACHE_FORMAT, RUNTIME.read_text(), HEADER.read_text(), compiler, flags, compiler_version(compiler)
    )
    runtime = directory / f"runtime-{key}.o"
    if not runtime.is_file():
        with tempfile.TemporaryDirectory(dir=directory, prefix="build-") as tmp:
            output = Path(tmp) / "runtime.o"
            command = [compiler, *[f for f in flags if f != "-shared"], "-c", "-o", str(output), str(RUNTIME)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise CompileError(
                    f"the host C++ compiler could not build the simulator's runtime:\n"
                    f"$ {' '.join(command)}\n{result.stderr.strip()}"
                )
            os.replace(output, runtime)
    return runtime


def _compile(
    compiler, flags, module_flags, source, names, shared, filename, directory, library, info_file
) -> None:
    shown_name = filename or "kernel.cu"
    with tempfile.TemporaryDirectory(dir=library.parent, prefix="build-") as tmp:
        (Path(tmp) / "pid").write_text(str(os.getpid()))
        # The #line directive makes the compiler's messages name the real file and line.
        (Path(tmp) / "kernel.cu").write_text(f'#line 1 "{shown_name}"\n{source}')
        (Path(tmp) / "module.cpp").write_text(generate_wrapper("kernel.cu", names, shared))
        output, module_object = Path(tmp) / "module.so", Path(tmp) / "module.o"
        runtime = _runtime_object(compiler, flags, directory)
        # Compiled, then linked on its own: the module's flags (-O0 overrides -O2; -fsanitize=thread) reach
        # only the kernel file, and the link pulls in no sanitizer library. The runtime object stays as built.
        compile_command = [compiler, *[f for f in flags if f != "-shared"], *module_flags, "-c"]
        compile_command += ["-o", str(module_object), str(Path(tmp) / "module.cpp")]
        link_command = [compiler, *flags, "-o", str(output), str(module_object), str(runtime)]
        messages = []
        for command in (compile_command, link_command):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise CompileError(
                    f"the host C++ compiler could not build {shown_name} for the CUDA simulator:\n"
                    f"$ {' '.join(command)}\n{result.stderr.strip()}"
                )
            messages.append(result.stderr.strip())
        if not output.is_file():
            raise CompileError(
                f"the host C++ compiler {compiler} reported success but wrote no library for {shown_name}; "
                "set $CXX to a C++ compiler (g++ or clang++)"
            )
        try:
            descriptions = _read_descriptions(output, len(names))
        except OSError as error:
            raise CompileError(
                f"{compiler} built a library for {shown_name} that cannot be loaded ({error}); is it a C++ "
                "compiler? (gcc and clang, unlike g++ and clang++, do not link the C++ runtime): set $CXX "
                "to g++ or clang++"
            ) from None
        info = {
            "library_bytes": output.stat().st_size,
            "library_sha256": _file_digest(output),
            "static_shared_bytes": static_shared_bytes(output, names, {name for _, name in shared}),
            "compiler_warnings": "\n".join(m for m in messages if m),
            "signatures": dict(zip(names, descriptions, strict=True)),
        }
        tmp_info = Path(tmp) / "info.json"
        tmp_info.write_text(json.dumps(info))
        os.replace(output, library)
        os.replace(tmp_info, info_file)


def static_shared_bytes(library: Path, names: list[str], dynamic: set[str]) -> dict[str, int]:
    """Bytes of static ``__shared__`` memory declared inside each kernel, read from the symbol table.

    A ``__shared__`` array inside a kernel is a function-local static, whose symbol demangles to
    ``void tile_kernel<float>(float const*, ...)::tile``: ``nm`` lists it with its size. Shared memory
    declared in ``__device__`` helpers is not attributed to a kernel. Without ``nm`` nothing is measured.
    """
    nm = shutil.which("nm")
    sizes = dict.fromkeys(names, 0)
    if nm is None:
        return sizes
    result = subprocess.run([nm, "-C", "-S", "--defined-only", str(library)], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) != 4 or "::" not in parts[3]:
            continue
        size, symbol = int(parts[1], 16), parts[3]
        owner, _, variable = symbol.rpartition("::")
        if variable in dynamic or variable.startswith(SHARED_REDZONE_PREFIX):
            continue
        for name in names:
            # "void gemm<float>(float const*, ...)" for templates, "gemm" for extern "C" kernels.
            if owner == name or owner.startswith(f"void {name}(") or owner.startswith(f"{name}("):
                sizes[name] += size
    return sizes
