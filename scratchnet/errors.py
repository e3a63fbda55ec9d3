"""The exceptions scratchnet raises on purpose, each with a message that names the problem and a way out."""


class DeviceError(RuntimeError):
    """A device cannot be used: no CuPy, no CUDA GPU, no C++ compiler for the simulator, unknown name."""


class KernelLaunchError(ValueError):
    """A kernel launch whose arguments do not match the kernel's C signature, or break CUDA's limits."""


class DatasetError(RuntimeError):
    """A dataset is missing, corrupt, or cannot be downloaded; the message says where to put the files."""
