"""Kept importable as ``scratchnet.sim.nvrtc``: the NVRTC check lives in :mod:`scratchnet._cuda.nvrtc`."""

from scratchnet._cuda.nvrtc import (  # noqa: F401
    CompileResult,
    NvrtcError,
    compile_source,
    find_library,
    supported_archs,
    version,
)
