"""The one launch helper that every layer uses on ``gpu`` and ``sim``.

CuPy's ``RawKernel`` checks nothing: a Python ``int`` goes to the kernel as a 64-bit ``long long`` and a
``float`` as a ``double``, strides and views are ignored, and any mismatch corrupts memory silently. So
:class:`Kernel` reads the kernel's C signature from the ``.cu`` source and, before each launch,

* checks the argument count,
* checks that each array lives on the right device, is C-contiguous and has the pointer's element type,
* casts each scalar to exactly the declared C type (``np.int32`` for ``int``, ``np.float32`` for ``float``),
  refusing values that do not fit,
* checks CUDA's grid, block and shared-memory limits (:mod:`.limits`; static plus dynamic shared
  memory), which a GPU would otherwise report
  as a bare "invalid configuration argument",

and :meth:`Kernel.launch_1d` computes the grid for the common "one thread per element" mapping.
"""

from __future__ import annotations

import functools

import numpy as np

from scratchnet._cuda.limits import cdiv, check_launch, dim3
from scratchnet._cuda.signature import KernelSignature
from scratchnet.errors import KernelLaunchError


class Kernel:
    def __init__(self, device, raw, signature: KernelSignature):
        self.device = device
        self.raw = raw  # cupy.RawKernel, or the simulator's kernel with the same call interface
        self.signature = signature
        self.name = signature.name

    def __repr__(self) -> str:
        params = ", ".join(f"{p.c_type} {p.name}" for p in self.signature.params)
        return f"<kernel {self.name}({params}) on {self.device.name}>"

    def __call__(self, grid, block, args, shared_mem: int = 0) -> None:
        """Launch like CuPy: ``kernel(grid, block, args, shared_mem=0)``."""
        params = self.signature.params
        if len(args) != len(params):
            raise KernelLaunchError(f"{self.name} takes {len(params)} arguments, got {len(args)}")
        grid, block = dim3(grid, f"{self.name}: grid"), dim3(block, f"{self.name}: block")
        if shared_mem < 0:
            raise KernelLaunchError(f"{self.name}: shared_mem must be >= 0, got {shared_mem}")
        check_launch(self.name, grid, block, int(shared_mem), self.static_shared_bytes)
        converted = tuple(self._convert(p, a) for p, a in zip(params, args, strict=True))
        self.raw(grid, block, converted, shared_mem=int(shared_mem))
        self.device.launches[self.name] += 1

    @functools.cached_property
    def static_shared_bytes(self) -> int:
        """Bytes of the kernel's own ``__shared__`` arrays, as compiled (0 where the raw kernel has none)."""
        return int(getattr(self.raw, "static_shared_bytes", 0))

    def launch_1d(self, n: int, args, block: int = 256, shared_mem: int = 0) -> None:
        """One thread per element ``i < n``: grid = ceil(n / block) blocks of ``block`` threads."""
        if n <= 0:
            return
        self((cdiv(n, block),), (block,), args, shared_mem=shared_mem)

    def _convert(self, param, value):
        where = f"{self.name}: argument '{param.name}' ({param.c_type})"
        if param.pointer:
            if not self.device.is_array(value):
                raise KernelLaunchError(
                    f"{where} needs a {self.device.name} array, got {type(value).__name__}"
                )
            if value.dtype != param.dtype:
                raise KernelLaunchError(f"{where} needs dtype {param.dtype}, got {value.dtype}")
            if not value.flags.c_contiguous:
                raise KernelLaunchError(f"{where} needs a C-contiguous array (kernels ignore strides)")
            return value
        if isinstance(value, np.ndarray) or hasattr(value, "__cuda_array_interface__"):
            raise KernelLaunchError(f"{where} is a scalar, got an array")
        if param.dtype.kind in "iu":
            if not float(value).is_integer():
                raise KernelLaunchError(f"{where} is an integer, got {value!r}")
            info = np.iinfo(param.dtype)
            if not info.min <= int(value) <= info.max:
                raise KernelLaunchError(f"{where}: {value} does not fit in {param.dtype}")
            return param.dtype.type(int(value))
        return param.dtype.type(value)
