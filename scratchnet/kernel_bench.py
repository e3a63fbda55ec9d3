"""The old name of :mod:`scratchnet.benchmarks.kernels`.

Kept so that ``python -m scratchnet.kernel_bench`` and old imports keep working.
Imported, this module *is* the real one (so attribute access and monkeypatching reach it); run, it runs
the real command line.
"""

import sys

from scratchnet.benchmarks import kernels as _real

if __name__ == "__main__":
    sys.exit(_real.main())
else:
    sys.modules[__name__] = _real
